"""Task kinds for the worker's unit tests: imported by the test process and by process-slot children alike
(through kinds.load_modules, as a user's module would be)."""

import os
import signal
import threading
import time

from mpcluster import kinds, task

RELEASE = threading.Event()  # t_hang waits for this, whatever the worker says
FINISHED = threading.Event()  # ... and sets this when it is done
PAUSES: list[str] = []  # how each t_pause task ended: "Interrupted", or "slept" when its time was up
PAUSE_ENDED = threading.Event()  # set when a t_pause task ends, either way
MEETING = threading.Barrier(4)  # t_meet: four tasks at once pass it, fewer break it


@task("t_pid", cpu=True)
def pid() -> int:
    return os.getpid()


@task("t_spin", cpu=True)
def spin(seconds: float, pidfile: str = "") -> int:
    """Burn CPU for ``seconds`` (ignores every request to stop: only a kill ends it early). With ``pidfile``, first
    append this process's pid to it: the sign, seen from outside the child, that the task has started."""
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
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


@task("t_pause")
def pause(seconds: float) -> str:
    """Wait as the built-in kinds do (``kinds.pause``, which the worker's stop ends early); say how it ended."""
    try:
        kinds.pause(seconds)
        PAUSES.append("slept")
    except kinds.Interrupted:
        PAUSES.append("Interrupted")
        raise
    finally:
        PAUSE_ENDED.set()
    return "slept"


@task("t_meet")
def meet(seconds: float) -> float:
    """Wait until four t_meet tasks run at once (BrokenBarrierError if they never do), then pause ``seconds``."""
    MEETING.wait(30)
    kinds.pause(seconds)
    return seconds
