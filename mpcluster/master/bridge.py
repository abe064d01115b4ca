"""The master's bridge from the lesson's two queues to leases: our workers lease the items a lesson client puts on
``get_task_queue`` through the dispatcher, so an item taken by a worker that dies goes back on the queue, and
their results go on ``get_result_queue`` as the lesson's strings.

No lock and no clock of its own: the dispatcher holds both.
"""

from __future__ import annotations

import json
import queue

from ..classic import LESSON_SECONDS, error_line, result_line
from ..protocol import CLASSIC_JOB


class NotifyingQueue(queue.Queue):
    """The lesson's task queue, telling the master when something is put on it, so idle long polls wake on a put
    instead of looking at the queue over and over."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list = []

    def put(self, item, block=True, timeout=None) -> None:
        super().put(item, block, timeout)
        for listener in self._listeners:  # after the put: the queue's own lock is free again
            listener()


class ClassicBridge:
    """The master's bridge from the lesson's queues to leases (no lock, no clock: the dispatcher holds both)."""

    def __init__(self, tasks: queue.Queue, results: queue.Queue, seconds: float = LESSON_SECONDS):
        self.tasks, self.results, self.seconds = tasks, results, seconds
        self._taken: dict[int, object] = {}  # lease id -> the item taken from the lesson's queue
        self._seq = 0
        self.stats = {"done": 0, "redeliveries": 0, "duplicates_dropped": 0}

    def on_put(self, listener) -> None:
        """Call ``listener()`` after every put on the lesson's task queue (when it is a NotifyingQueue)."""
        if isinstance(self.tasks, NotifyingQueue):
            self.tasks._listeners.append(listener)

    def take(self, n: int) -> list[dict]:
        """Up to n items from the lesson's task queue, as tasks for our workers (never blocks)."""
        out = []
        while len(out) < n:
            try:
                item = self.tasks.get_nowait()
            except queue.Empty:
                break
            self._seq += 1
            self._taken[self._seq] = item
            args = json.dumps({"n": item, "seconds": self.seconds}) if _jsonable(item) else json.dumps({"n": repr(item)})
            out.append({"job": CLASSIC_JOB, "id": self._seq, "kind": "square", "args": args, "timeout": None,
                        "attempt": 1})
        return out

    def requeue(self, lease_id: int, redelivery: bool) -> None:
        """Back on the lesson's queue, where any worker (the lesson's own too) can take it."""
        item = self._taken.pop(lease_id, None)
        if item is not None:
            self.tasks.put(item)
            self.stats["redeliveries"] += redelivery

    def complete(self, lease_id: int, result: dict) -> bool:
        """Put the lesson's line for a result on the result queue; False for a late duplicate (not put twice)."""
        item = self._taken.pop(lease_id, None)
        if item is None:
            self.stats["duplicates_dropped"] += 1
            return False
        self.stats["done"] += 1
        ok = result.get("ok") and isinstance(item, int)
        error = result.get("error")
        self.results.put(result_line(item) if ok else error_line(item, error.get("message", error)
                                                                  if isinstance(error, dict) else error))
        return True

    def complete_all(self, results: list[dict]) -> int:
        """``complete`` each result; returns how many were not late duplicates."""
        return sum(self.complete(r["id"], r) for r in results)

    def sizes(self) -> dict:
        return {"classic_tasks": self.tasks.qsize(), "classic_results": self.results.qsize()}


def _jsonable(item: object) -> bool:
    try:
        json.dumps(item)
        return True
    except (TypeError, ValueError):
        return False
