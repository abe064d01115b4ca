"""The package's version, in one place: ``pyproject.toml`` reads it from here (setuptools' dynamic version), and
so do the master, the workers and the doctor (a module of its own, so reading it imports nothing else)."""

__version__ = "0.2.0"
