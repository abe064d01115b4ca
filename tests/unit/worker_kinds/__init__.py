"""The folder of task modules the worker's unit tests use, as MPC_TASKS_DIR would name a user's folder."""

import sys
from pathlib import Path

from mpcluster import kinds

DIR = str(Path(__file__).resolve().parent)
MODULES = "unit_kinds"


def load():
    """Import the test kinds into this process (as a worker does at start) and return their module."""
    assert kinds.load_modules(DIR, MODULES) == []
    return sys.modules["unit_kinds"]
