"""The Makefile's job-submitting targets pass every flag a value (an unset variable would leave `--seconds` bare,
and bash's own SECONDS must never be what a target reads)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


@pytest.mark.parametrize("target", ["job", "stack-job", "results JOB=job-1", "cancel JOB=job-1"])
def test_a_targets_command_gives_each_flag_a_value(target):
    env = {k: v for k, v in os.environ.items() if k not in {"TASKS", "KIND", "TASK_SECONDS", "ARGS", "SECONDS"}}
    out = subprocess.run(["make", "-n", "--no-print-directory", *target.split()], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    command = next(line for line in out.splitlines() if "mpcluster" in line or "scripts/stack" in line)
    words = command.replace("\\", " ").split()
    bare = [w for w, after in zip(words, [*words[1:], ""], strict=True)
            if re.fullmatch(r"--[a-z-]+", w) and (after == "" or after.startswith("--"))]
    assert bare == [], f"`make {target}` runs {command!r}"


def test_no_target_reads_bashs_seconds():
    assert "$(SECONDS)" not in (ROOT / "Makefile").read_text()
