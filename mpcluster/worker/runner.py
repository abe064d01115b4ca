"""Running one task: turning whatever it does into a result record, and the task a slot has in hand.

``execute`` runs a task by name and never raises for anything the task does: an exception is an error result with
its type, message and bounded worker-side traceback. ``InHand`` is a slot's task in hand and what other threads
may do to it: the heartbeat thread cancels it (the master said so), the main thread ends it when the stop grace is
over. A slot hands its task to an executor (``executors.py``) and only waits, so any of these, or the task's time
limit, ends the wait at once; a task known to be short runs on the slot's own thread instead (see ``run``).
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Callable, Iterable

from .. import kinds
from ..protocol import Key, key_of


def parse_args(raw: object) -> object:
    """A task's arguments: the protocol sends a JSON object's text (an older master sent the object itself)."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError as e:
        raise kinds.TaskError(f"the task's arguments are not valid JSON ({e})") from None


def execute(task: dict, worker: str = "", ip: str = "", abort: threading.Event | None = None) -> dict:
    """Run one task and return its result record; never raises for anything the task does (error result instead:
    its type, message and bounded worker-side traceback)."""
    started = time.monotonic()
    try:
        value, ok, error = kinds.run(task.get("kind"), parse_args(task.get("args")), abort), True, None
    except (Exception, SystemExit) as e:  # a task must never end its worker, not even with sys.exit()
        value, ok, error = None, False, kinds.error_info(e)
    return {"job": task.get("job"), "id": task.get("id"), "ok": ok, "value": value, "error": error,
            "worker": worker, "ip": ip, "elapsed": round(time.monotonic() - started, 4)}


def failure(task: dict, worker: str, ip: str, kind: str, message: str, elapsed: float) -> dict:
    """An error result the worker makes for a task it had to stop (no traceback: the task did not raise)."""
    return {"job": task.get("job"), "id": task.get("id"), "ok": False, "value": None,
            "error": {"type": kind, "message": message, "traceback": ""}, "worker": worker, "ip": ip,
            "elapsed": round(elapsed, 4)}


class Stopped(enum.Enum):
    """How a task ended without a result of its own."""

    CANCELLED = "cancelled"  # its job was cancelled: no result, no ack
    HANDED_BACK = "handed back"  # the worker is stopping and the grace is over: released to run elsewhere


def _time_limit(value: object) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    return float(value) if ok else None


def _error_type(result: dict) -> str:
    return (result.get("error") or {}).get("type", "")


class InHand:
    """A slot's task in hand (one at a time), run through its executor; other threads may cancel it or end it."""

    def __init__(self, executor, worker: str, ip: str):
        self.executor, self.worker, self.ip = executor, worker, ip
        self._lock = threading.Lock()  # guards the four below: other threads cancel and interrupt
        self._current: Key | None = None
        self._interrupt: Stopped | None = None
        self._cancelled: set[Key] = set()  # cancelled before it started, or after it finished: dropped when met
        self._abort: threading.Event | None = None  # set while a task runs inline, on the slot's own thread
        self._inline_abort = threading.Event()  # reused: making an Event per task costs as much as a no-op task

    # ---- called from other threads ----------------------------------------------------------------------------
    def cancel(self, key: Key) -> None:
        with self._lock:
            if self._current != key:
                self._cancelled.add(key)
                return
            self._stop(Stopped.CANCELLED)

    def grace_over(self) -> None:
        """The stop grace is over: stop the task in hand; it is handed back."""
        with self._lock:
            if self._current is not None and self._interrupt is None:
                self._stop(Stopped.HANDED_BACK)

    def _stop(self, why: Stopped) -> None:  # with the lock held
        self._interrupt = why
        if self._abort is not None:
            self._abort.set()  # a short task running inline: kinds.pause ends it
        self.executor.wake()

    # ---- called from the slot's own thread --------------------------------------------------------------------
    def cancelled_of(self, keys: Iterable[Key]) -> set[Key]:
        """Which of these keys were cancelled (and forget them: they are dropped now)."""
        with self._lock:
            found = set(keys) & self._cancelled
            self._cancelled -= found
        return found

    def run(self, task: dict, short: bool, on_wake: Callable[[], None], stopping: threading.Event) -> dict | Stopped:
        """The task's result (an error result past its time limit), or how it was stopped. ``short``: the slot's
        tasks take less than a hand-over to a helper thread costs, so a thread slot runs this one itself (not with
        a time limit: that needs a thread to abandon). ``on_wake`` runs whenever the wait is woken (the stop)."""
        key, limit = key_of(task), _time_limit(task.get("timeout"))
        inline = short and limit is None and not self.executor.kills
        with self._lock:
            if key in self._cancelled:
                self._cancelled.discard(key)
                return Stopped.CANCELLED
            self._current, self._interrupt = key, None
            if inline:
                self._inline_abort.clear()
                self._abort = self._inline_abort
        try:
            if inline:
                return self._finished(execute(task, self.worker, self.ip, self._abort), stopping)
            return self._elsewhere(task, limit, on_wake, stopping)
        finally:
            with self._lock:
                self._current = self._interrupt = self._abort = None

    def _elsewhere(self, task: dict, limit: float | None, on_wake: Callable[[], None],
                   stopping: threading.Event) -> dict | Stopped:
        self.executor.start(task)
        started = time.monotonic()  # after start: a new child's start-up is not the task's time
        while True:
            with self._lock:
                why = self._interrupt
            if why is not None:
                self.executor.stop()
                return why
            on_wake()
            left = None if limit is None else started + limit - time.monotonic()
            if left is not None and left <= 0:
                self.executor.stop()
                how = "killed" if self.executor.kills else "abandoned (a thread cannot be killed)"
                return failure(task, self.worker, self.ip, "TaskTimeout", f"ran past its {limit:g} s time limit; {how}",
                               time.monotonic() - started)
            result = self.executor.wait(left)
            if result is not None:
                return self._finished(result, stopping)

    def _finished(self, result: dict, stopping: threading.Event) -> dict | Stopped:
        with self._lock:
            why = self._interrupt
        if why is Stopped.CANCELLED:
            return why  # cancelled as it finished: its result is dropped all the same
        if why is Stopped.HANDED_BACK and _error_type(result) == "Interrupted":
            return why  # it ran inline and stopped early because the grace ended: it runs again elsewhere
        if _error_type(result) == "WorkerProcessDied" and stopping.is_set():
            return Stopped.HANDED_BACK  # a stop signal sent to the whole group reached the child too
        return result
