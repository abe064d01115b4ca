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


def wait_until(predicate, timeout: float, what, every: float = 0.05):
    """Poll ``predicate()`` until it returns something truthy, and return that value; a short sleep (``every``)
    between checks. After ``timeout`` seconds: AssertionError naming ``what`` (a string, or a function that makes
    one then, e.g. to show the state last seen) and the predicate's last value when that says more than None or
    False. The one readiness wait of the suites: never a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            last = "" if got is None or got is False else f"; last seen: {got!r:.2000}"
            raise AssertionError(f"{said}: not within {timeout:g} s{last}")
        time.sleep(every)


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
        """The first line matching ``pattern``, waiting for it (up to ``timeout`` s, or until the output ends)."""
        rx = re.compile(pattern)

        def seen() -> re.Match | None:
            return next((m for line in self.lines if (m := rx.search(line))), None)

        with self._cond:  # woken by every new line: no polling
            self._cond.wait_for(lambda: seen() or self.eof, timeout)
            m = seen()
            if m is None:
                raise AssertionError(f"{pattern!r} not seen within {timeout} s; output:\n" + "\n".join(self.lines))
            return m

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


def link_to(port: int, key_file, host: str = "127.0.0.1"):
    """An open client link to a master, for tests that speak the protocol themselves (e.g. to send a bad job)."""
    from mpcluster.config import read_authkey
    from mpcluster.link import Link

    link = Link(host, port, read_authkey(str(key_file)))
    link.open()
    return link


def bad_inputs_through_the_link(link) -> tuple[str, list[str]]:
    """Send what the CLI would never send: a job with a bad task (the master refuses it: its one line is
    returned), and three items on the lesson's task queue that are not ints (our workers give error lines for
    them and carry on: the lines are returned)."""
    import queue as q

    from mpcluster.protocol import RESULT_QUEUE, TASK_QUEUE

    try:
        link.call("submit", {"id": "bad-job", "kind": "square", "tasks": [{"n": 2, "seconds": 1e9}]})
        refusal = ""
    except ValueError as e:
        refusal = str(e)
    tq, rq = getattr(link.manager, TASK_QUEUE)(), getattr(link.manager, RESULT_QUEUE)()
    for item in ("seven", 2.5, [1]):
        tq.put(item)
    lines: list[str] = []

    def three_lines() -> list[str]:
        try:
            lines.append(rq.get(timeout=1))
        except q.Empty:
            pass
        return lines if len(lines) >= 3 else []

    wait_until(three_lines, 60, lambda: f"three error lines on the lesson's result queue (got {lines})")
    return refusal, sorted(lines)


BAD_INPUT_LINES = [
    "error: task 'seven': n must be a whole number, got str 'seven'",
    "error: task 2.5: n must be a whole number, got float 2.5",
    "error: task [1]: n must be a whole number, got list [1]",
]
BAD_JOB_REFUSAL = "task 0: seconds=1000000000.0 is out of range: expected 0 to 3600"
