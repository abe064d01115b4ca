"""Task kinds for the worker's unit tests: imported by the test process and by process-slot children alike
(through kinds.load_modules, as a user's module would be)."""

import os
import signal
import threading
import time

from mpcluster import task

RELEASE = threading.Event()  # t_hang waits for this, whatever the worker says
FINISHED = threading.Event()  # ... and sets this when it is done


@task("t_pid", cpu=True)
def pid() -> int:
    return os.getpid()


@task("t_spin", cpu=True)
def spin(seconds: float) -> int:
    """Burn CPU for ``seconds`` (ignores every request to stop: only a kill ends it early)."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


@task("t_exit", cpu=True)
def exit_now(code: int) -> None:
    os._exit(code)


@task("t_selfkill", cpu=True)
def selfkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task("t_raise")
def raise_it(n: int) -> None:
    raise ValueError(f"bad input {n}")


@task("t_raise_cpu", cpu=True)
def raise_in_child(n: int) -> None:
    raise ValueError(f"bad input {n} in pid {os.getpid()}")


@task("t_set")
def a_set() -> set:
    return {1, 2}


@task("t_sys_exit")
def sys_exit() -> None:
    raise SystemExit(3)


@task("t_hang")
def hang() -> str:
    """A thread task that ignores the abort event (a real one might be stuck in a C call)."""
    RELEASE.wait(30)
    FINISHED.set()
    return "late"


@task("t_thread")
def thread_name() -> str:
    """Which thread ran the task: a slot's own ("thread 1") or a helper ("task")."""
    return threading.current_thread().name
