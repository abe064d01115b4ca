"""Where a slot's task actually runs, so that the slot's own thread can stop waiting for it.

- ``ThreadExecutor`` runs tasks in a helper thread. A thread cannot be killed: a task past its time limit (or
  cancelled) has its abort event set (the built-in kinds stop at once: ``kinds.pause``) and is *abandoned*; its
  helper finishes it in the background, its result is discarded, and the next task gets a new helper.
- ``ProcessExecutor`` runs tasks in one child process (CPU-bound kinds: each child has its own GIL), fed over a
  Pipe one task at a time. Stopping a task kills the child (SIGKILL); a child that dies by itself (segfault,
  os._exit, the OOM killer) gives a ``WorkerProcessDied`` error result. Either way the next task gets a fresh child.

Both: ``start(task)``, ``wait(seconds)`` (the result, or None when the time passed or ``wake`` was called from
another thread), ``stop()`` (abandon or kill the task), ``prepare()``, ``close()``. Every wait is bounded or
wakeable, so a dead child or a stuck task never hangs the worker.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import wait as wait_any

from .. import kinds
from .runner import execute, failure


class _Call:
    """One task handed to a helper thread; ``finished`` is set before ``bell`` rings."""

    def __init__(self, task: dict, bell: threading.Event):
        self.task, self.bell = task, bell
        self.abort = threading.Event()
        self.result: dict | None = None
        self.finished = False


def _helper(inbox: queue.SimpleQueue, worker: str, ip: str) -> None:
    while (call := inbox.get()) is not None:
        call.result = execute(call.task, worker, ip, call.abort)
        call.finished = True
        call.bell.set()


class ThreadExecutor:
    """Runs one task at a time in a helper thread (daemon: an abandoned task never holds up the worker's exit)."""

    kills = False  # a thread cannot be killed, only abandoned

    def __init__(self, worker: str, ip: str = ""):
        self.worker, self.ip = worker, ip
        self._bell = threading.Event()  # rung by the helper when done, and by wake()
        self._inbox: queue.SimpleQueue | None = None
        self._call: _Call | None = None

    def start(self, task: dict) -> None:
        if self._inbox is None:
            self._inbox = queue.SimpleQueue()
            threading.Thread(target=_helper, args=(self._inbox, self.worker, self.ip), name="task",
                             daemon=True).start()
        self._bell.clear()
        self._call = _Call(task, self._bell)
        self._inbox.put(self._call)

    def wait(self, seconds: float | None) -> dict | None:
        """The result, or None if ``seconds`` passed or ``wake`` was called first."""
        self._bell.wait(seconds)
        self._bell.clear()  # then look: a result that rang just before the clear is still seen here
        call = self._call
        if call is not None and call.finished:
            self._call = None
            return call.result
        return None

    def stop(self) -> None:
        """Abandon the running task: ask it to stop (kinds.pause honours this), stop waiting for it, and give the
        next task a new helper; the old one ends after this task and its result is thrown away."""
        call, inbox = self._call, self._inbox
        self._call = self._inbox = None
        if call is not None:
            call.abort.set()
        if inbox is not None:
            inbox.put(None)
        self._bell = threading.Event()  # the abandoned call keeps ringing the old one, which nobody waits on

    def wake(self) -> None:
        self._bell.set()

    def prepare(self) -> None:
        pass  # the helper thread starts with the first task: it costs nothing to speak of

    def close(self) -> None:
        self.stop()


def start_method() -> str:
    """forkserver where there is one (Linux, macOS), else spawn; never fork: a worker has threads (forking a
    threaded process is unsafe, and 3.14 changes the default), and a forked child would inherit the worker's end
    of its own pipe, so it would never see EOF if the worker died."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _child_main(conn, tasks_dir: str, modules: str | None) -> None:
    """A process slot's child: load the user's task modules (the worker already logged any that fail), then run
    tasks one at a time until the worker closes the pipe."""
    # Ctrl-C in a terminal reaches the whole process group: the worker decides when a task stops, not the key.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kinds.load_modules(tasks_dir, modules)
    conn.send("ready")  # the worker starts a task's clock only now: start-up is not the task's time
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(execute(task))


#: How long a new child may take to start and import the task modules before it counts as dead.
CHILD_START_SECONDS = 60.0


class ProcessExecutor:
    """Runs one task at a time in a child process owned by one runner thread (only that thread calls start, wait,
    stop and prepare; other threads only ``wake`` it)."""

    kills = True

    def __init__(self, worker: str, ip: str, tasks_dir: str, modules: str | None,
                 context: multiprocessing.context.BaseContext | None = None):
        self.worker, self.ip = worker, ip
        self._args = (tasks_dir, modules)
        self._ctx = context or multiprocessing.get_context(start_method())
        self._child = self._conn = None
        self._ready = False  # the child said it has loaded the task modules
        self._task: dict | None = None
        self._started = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _spawn(self) -> None:
        ours, theirs = self._ctx.Pipe()
        child = self._ctx.Process(target=_child_main, args=(theirs, *self._args), name="mpcluster-task", daemon=True)
        child.start()
        theirs.close()  # only the child holds its end: if the child dies, our reads see EOF
        self._child, self._conn, self._ready = child, ours, False

    def prepare(self) -> None:
        """Have a child starting (or started) for the next task, so that it starts while the slot does other
        things (acks, leases) rather than when a task waits for it."""
        if self._child is None or not self._child.is_alive():
            self._discard()
            self._spawn()

    def _await_ready(self) -> None:
        if self._ready:
            return
        if self._conn in wait_any([self._conn, self._child.sentinel], CHILD_START_SECONDS):
            try:
                self._ready = self._conn.recv() == "ready"
                return
            except (EOFError, OSError):
                pass
        self._child.kill()  # it died while starting, or never got ready: wait() reports it as dead

    def start(self, task: dict) -> None:
        """Hand the task to the child (started first if need be; its start-up is not the task's time)."""
        self.prepare()
        self._await_ready()
        self._task, self._started = task, time.monotonic()
        try:
            self._conn.send(task)
        except OSError:
            pass  # the child died just now: wait() sees its sentinel and says so

    def wait(self, seconds: float | None) -> dict | None:
        """The result (a dead child's is a WorkerProcessDied error), or None if ``seconds`` passed or ``wake``
        was called first."""
        ready = wait_any([self._conn, self._child.sentinel, self._wake_r], seconds)
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        if self._conn in ready:
            try:
                result = self._conn.recv()
                result.update(worker=self.worker, ip=self.ip)
                self._task = None  # the child is idle again
                return result
            except (EOFError, OSError):
                pass  # it died before answering: see below
        if self._conn in ready or self._child.sentinel in ready:
            self._child.join(5)
            code, task = self._child.exitcode, self._task or {}
            self._discard()
            return failure(task, self.worker, self.ip, "WorkerProcessDied",
                           f"the process running the task died (exit code {code})", time.monotonic() - self._started)
        return None

    def stop(self) -> None:
        """Kill the child running the task (SIGKILL: a task cannot refuse); the next task gets a fresh one."""
        if self._child is not None:
            self._child.kill()
            self._child.join(5)
        self._discard()

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._child is not None and self._child.exitcode is not None:
            self._child.close()
        self._child = self._conn = None
        self._ready, self._task = False, None

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already ringing, or closed

    def close(self) -> None:
        """End the child (asked to leave if idle, killed otherwise) and the wake pipe."""
        if self._child is not None and self._task is None:
            try:
                self._conn.send(None)
                self._child.join(2)
            except OSError:
                pass
        self.stop()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
