"""Helpers shared by the suites: real processes whose output is read with deadlines (never bare sleeps)."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "lesson"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PREFIX = re.compile(r"^[\w.-]+-\d+\s+\|\s?", re.M)


def clean(text: str) -> str:
    """Strip ANSI codes and Compose's `service-1  | ` prefixes from log output."""
    return PREFIX.sub("", ANSI.sub("", text))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_key(path: Path, key: str | None = None) -> Path:
    path.write_text((key or secrets.token_hex(32)) + "\n")
    return path


def last_json(text: str) -> dict:
    lines = [ln for ln in clean(text).strip().splitlines() if ln.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


class Proc:
    """A child process whose combined output is collected by a thread and can be awaited with a deadline."""

    def __init__(self, args: list[str], env: dict | None = None, cwd: Path = ROOT):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.p = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match:
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = end - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(f"{pattern!r} not seen within {timeout} s; output:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.5))

    def wait(self, timeout: float = 30.0) -> int:
        return self.p.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        return self.p.returncode


def mpc(*args: str) -> list[str]:
    return [sys.executable, "-m", "mpcluster", *args]


def run_mpc(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(mpc(*args), cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
