"""Task kinds, run by name (never pickled functions), and their argument rules.

``validate`` is used twice: by ``submit`` before a job leaves the client (a clear message at submit time) and
by the worker before it runs a task (a task that reached the queue some other way still gets an error result,
never a dead worker).
"""

from __future__ import annotations

import threading
import time

MAX_SECONDS = 3600.0  # simulated work per task; anything longer is a mistake, not a job
MAX_PRIMES_N = 10_000_000  # a sieve this size takes about a second of CPU in pure Python
MAX_SQUARE_N = 10**18

KINDS = ("square", "sleep", "primes")


class TaskError(Exception):
    """A task that cannot run as given: the message becomes the task's error result."""


class Interrupted(Exception):
    """The worker is stopping and handed this task back before it finished."""


def _int(args: dict, name: str, lo: int, hi: int) -> int:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskError(f"{name} must be a whole number, got {type(value).__name__} {value!r:.40}")
    if not lo <= value <= hi:
        raise TaskError(f"{name}={value!r:.40} is out of range: expected {lo} to {hi}")
    return value


def _seconds(args: dict, default: float = 1.0) -> float:
    value = args.get("seconds", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(f"seconds must be a number, got {type(value).__name__} {value!r:.40}")
    if not 0 <= value <= MAX_SECONDS:  # also refuses NaN
        raise TaskError(f"seconds={value!r:.40} is out of range: expected 0 to {MAX_SECONDS:g}")
    return float(value)


def validate(kind: object, args: object) -> dict:
    """Return the task's arguments, normalised, or raise TaskError saying what is wrong."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise TaskError(f"unknown task kind {kind!r:.40}: expected one of {', '.join(KINDS)}")
    if not isinstance(args, dict):
        raise TaskError(f"task arguments must be a dict, got {type(args).__name__}")
    if kind == "square":
        return {"n": _int(args, "n", -MAX_SQUARE_N, MAX_SQUARE_N), "seconds": _seconds(args)}
    if kind == "sleep":
        return {"seconds": _seconds(args)}
    return {"n": _int(args, "n", 0, MAX_PRIMES_N)}


def count_primes(n: int) -> int:
    """How many primes are below n (sieve of Eratosthenes)."""
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return sum(sieve)


def _work(seconds: float, abort: threading.Event | None) -> None:
    if seconds <= 0:
        return
    if abort is None:
        time.sleep(seconds)
    elif abort.wait(seconds):
        raise Interrupted("worker stopping")


def run(kind: str, args: dict, abort: threading.Event | None = None):
    """Run one task and return its value; raises TaskError for bad input, Interrupted when aborted."""
    args = validate(kind, args)
    if kind == "square":
        _work(args["seconds"], abort)
        return args["n"] * args["n"]
    if kind == "sleep":
        _work(args["seconds"], abort)
        return args["seconds"]
    return count_primes(args["n"])


def classic_line(n: int) -> str:
    """The lesson's result string."""
    return "%d * %d = %d" % (n, n, n * n)
