"""Task kinds: functions registered by name with ``@mpcluster.task("name")``, run by name on the workers.

A task travels as its kind's *name* and its arguments as a JSON object; a worker looks the name up in the kinds
it imported and calls the function with the arguments as keyword arguments. No function is ever unpickled from
the wire. The return value (a JSON value) is the result; an exception is an error result with its type, message
and the worker-side traceback.

The built-in kinds (the lesson's ``square``, ``sleep`` for I/O-bound and ``primes`` for CPU-bound work) use the
same mechanism, plus an argument check that ``submit`` and the master run before a job is accepted. User kinds
live in modules in ``MPC_TASKS_DIR`` (``./tasks`` in the repo, mounted read-only into every worker), imported
at worker start (``MPC_TASK_MODULES``, default: every module there).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import ID_RULE, MAX_RESULT_BYTES, MAX_TRACEBACK_CHARS, valid_id

MAX_SECONDS = 3600.0  # simulated work per task; anything longer is a mistake, not a job
MAX_PRIMES_N = 10_000_000  # a sieve this size takes about a second of CPU in pure Python
MAX_SQUARE_N = 10**18


class TaskError(Exception):
    """A task that cannot run as given: the message becomes the task's error result."""


class Interrupted(Exception):
    """The worker is stopping (or the job was cancelled) and this task was stopped before it finished."""


@dataclass(frozen=True)
class Kind:
    name: str
    fn: Callable
    cpu: bool  # CPU-bound: runs in the worker's processes when it has some (threads would share one GIL)
    check: Callable[[dict], dict] | None  # normalises arguments or raises TaskError (built-ins: before submit)
    module: str


KINDS: dict[str, Kind] = {}
_local = threading.local()  # the abort event of the task running in this thread


def task(name: str, *, cpu: bool = False, check: Callable[[dict], dict] | None = None) -> Callable:
    """Register a function as a task kind::

        @mpcluster.task("wordcount")
        def wordcount(text: str) -> dict: ...

    Its arguments (a JSON object) arrive as keyword arguments; its return value must be a JSON value. Mark
    CPU-bound functions ``cpu=True``: a worker with ``MPC_WORKER_PROCESSES`` runs them in processes.
    """
    if not valid_id(name):
        raise ValueError(f"task kind {name!r:.60} is not a valid name: expected {ID_RULE}")

    def register(fn: Callable) -> Callable:
        known = KINDS.get(name)
        if known is not None and (known.module, known.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"task kind {name!r} is registered twice: by {known.module}.{known.fn.__qualname__} "
                             f"and by {fn.__module__}.{fn.__qualname__}")
        KINDS[name] = Kind(name, fn, cpu, check, fn.__module__)
        return fn

    return register


def pause(seconds: float) -> None:
    """Sleep like ``time.sleep``, but end early (raising Interrupted) when the worker stops this task."""
    abort = getattr(_local, "abort", None)
    if seconds <= 0:
        return
    if abort is None:
        time.sleep(seconds)
    elif abort.wait(seconds):
        raise Interrupted("the task was stopped")


# ---- the built-in kinds ----------------------------------------------------------------------------------------

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


def _only(args: dict, *names: str) -> None:
    extra = sorted(set(args) - set(names))
    if extra:
        raise TaskError(f"unexpected argument {extra[0]!r}: expected {', '.join(names)}")


def _check_square(args: dict) -> dict:
    _only(args, "n", "seconds")
    return {"n": _int(args, "n", -MAX_SQUARE_N, MAX_SQUARE_N), "seconds": _seconds(args)}


def _check_sleep(args: dict) -> dict:
    _only(args, "seconds")
    return {"seconds": _seconds(args)}


def _check_primes(args: dict) -> dict:
    _only(args, "n")
    return {"n": _int(args, "n", 0, MAX_PRIMES_N)}


@task("square", check=_check_square)
def square(n: int, seconds: float = 1.0) -> int:
    """The lesson's task: n * n after ``seconds`` of simulated work."""
    pause(seconds)
    return n * n


@task("sleep", check=_check_sleep)
def sleep(seconds: float = 1.0) -> float:
    """I/O-bound work stood in for by waiting: threads help here."""
    pause(seconds)
    return seconds


@task("primes", cpu=True, check=_check_primes)
def primes(n: int) -> int:
    """CPU-bound work: how many primes are below n (only processes or more hosts help here: the GIL)."""
    return count_primes(n)


BUILTIN = ("square", "sleep", "primes")


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


# ---- checking and running ----------------------------------------------------------------------------------------

def lookup(name: object) -> Kind:
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise TaskError(f"unknown task kind {name!r:.40}: this worker offers {', '.join(sorted(KINDS))}")
    return kind


def validate(name: object, args: object) -> dict:
    """The task's arguments, normalised, or TaskError saying what is wrong (the kind must be known here)."""
    kind = lookup(name)
    if not isinstance(args, dict):
        raise TaskError(f"task arguments must be a JSON object, got {type(args).__name__}")
    if kind.check is not None:
        return kind.check(args)
    signature = inspect.signature(kind.fn).replace(return_annotation=inspect.Signature.empty)
    try:
        signature.bind(**args)
    except TypeError as e:
        raise TaskError(f"the arguments do not fit {name}{signature}: {e}") from None
    return args


def run(name: str, args: dict, abort: threading.Event | None = None):
    """Run one task and return its value (checked to be JSON); TaskError for bad input or a non-JSON value,
    Interrupted when ``abort`` is set while it waits in ``pause``. Any other exception is the task's own."""
    args = validate(name, args)
    _local.abort = abort
    try:
        value = KINDS[name].fn(**args)
    finally:
        _local.abort = None
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise TaskError(f"the task returned a {type(value).__name__}, which is not a JSON value ({e})") from None
    if size > MAX_RESULT_BYTES:
        raise TaskError(f"the task returned {size} bytes of JSON; at most {MAX_RESULT_BYTES} are kept: return less")
    return value


def error_info(e: BaseException) -> dict:
    """An exception as an error result: its type, its message, and the worker-side traceback (bounded)."""
    tb = "" if isinstance(e, (TaskError, Interrupted)) else "".join(traceback.format_exception(e))
    if len(tb) > MAX_TRACEBACK_CHARS:
        tb = "...\n" + tb[-MAX_TRACEBACK_CHARS:]
    return {"type": type(e).__name__, "message": str(e)[:1000], "traceback": tb}


def load_modules(tasks_dir: str, modules: str | None) -> list[str]:
    """Import the user's task modules: ``modules`` is a comma-separated list (None: every ``*.py`` in
    ``tasks_dir`` not starting with ``_``). Returns one clear line per module that failed; the rest load."""
    problems = []
    names = [m.strip() for m in modules.split(",") if m.strip()] if modules else None
    if not os.path.isdir(tasks_dir):
        if names:
            problems.append(f"MPC_TASK_MODULES={modules!r}: MPC_TASKS_DIR={tasks_dir!r} is not a folder")
        return problems
    if names is None:
        names = sorted(f[:-3] for f in os.listdir(tasks_dir) if f.endswith(".py") and not f.startswith("_"))
    if tasks_dir not in sys.path:
        sys.path.insert(0, tasks_dir)
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001 - a user's module may raise anything, even SystemExit
            message, where = (str(e).splitlines() or [""])[0], ""
            # where in the user's file (not in the library it called) it went wrong
            frames = [f for f in traceback.extract_tb(e.__traceback__)
                      if os.path.abspath(f.filename).startswith(os.path.abspath(tasks_dir))]
            if frames:
                where = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})"
            if isinstance(e, SyntaxError):
                message, where = e.msg, f" ({os.path.basename(e.filename or name)}, line {e.lineno})"
            if isinstance(e, ModuleNotFoundError):
                where = ""
            problems.append(f"cannot import task module {name!r} from {tasks_dir}: {type(e).__name__}: "
                            f"{message}{where}")
    return problems
