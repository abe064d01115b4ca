"""The lesson's protocol in one place: plain ints on ``get_task_queue``, the lesson's strings on
``get_result_queue``.

Three users of it live here:
- ``ClassicBridge``: the master's side. Our workers lease items from the lesson's task queue through the
  dispatcher (so an item taken by a worker that dies goes back on the queue), and their results go on the lesson's
  result queue as the lesson's strings. No lock and no clock: the dispatcher holds both.
- ``serve_lesson_master``: our worker's fallback loop against a plain lesson master (only the two queues).
- ``submit_classic``: the lesson's master loop, run against a running master (``submit --protocol classic``).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import re
import threading
import time

from . import tasks as kinds
from .protocol import CLASSIC_JOB, RESULT_QUEUE, TASK_QUEUE, Link, Unreachable

log = logging.getLogger("mpcluster")

LESSON_SECONDS = 1.0  # the lesson's time.sleep(1)
RESULT_RE = re.compile(r"^(-?\d+) \* (-?\d+) = (-?\d+)$")


def result_line(n: int) -> str:
    """The lesson's result string."""
    return "%d * %d = %d" % (n, n, n * n)


def error_line(item: object, error: object) -> str:
    """What goes on the lesson's result queue when an item could not be squared (the lesson has no errors)."""
    return f"error: task {item!r:.40}: {error}"


def square(item: object, abort: threading.Event | None = None) -> str:
    """The lesson's work on one item: its result line, or an error line. Raises kinds.Interrupted on abort."""
    if not isinstance(item, int) or isinstance(item, bool):
        return error_line(item, "not an int")
    try:
        kinds.run("square", {"n": item, "seconds": LESSON_SECONDS}, abort)
    except kinds.TaskError as e:
        return error_line(item, e)
    return result_line(item)


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


def serve_lesson_master(link: Link, worker_id: str, stop: threading.Event, abort: threading.Event) -> int:
    """Our worker against a plain lesson master: the lesson's loop (get with timeout 1, work, put the string)."""
    log.info("worker %s: the master offers only the lesson's queues: serving it the classic way", worker_id)
    n = None
    while not stop.is_set():
        try:
            task_q, result_q = getattr(link.manager, TASK_QUEUE)(), getattr(link.manager, RESULT_QUEUE)()
            idle_said = False
            while not stop.is_set():
                try:
                    n = task_q.get(timeout=1)
                except queue.Empty:
                    if not idle_said:
                        log.info("task queue is empty.")
                        idle_said = True
                    continue
                idle_said = False
                log.info("run task %s * %s...", n, n)
                result_q.put(square(n, abort))
                n = None
        except kinds.Interrupted:
            try:
                task_q.put(n)  # hand it back to the lesson's queue
            except (OSError, EOFError):
                pass
            break
        except (OSError, EOFError) as e:
            if stop.is_set():
                break
            log.warning("worker %s: lost the classic master at %s (%s); reconnecting", worker_id, link.where, e)
            link.close()
            if not link.open_with_retry(stop, f"worker {worker_id}"):
                break
    log.info("worker exit.")
    return 0


def submit_classic(link: Link, n_tasks: int, seed: int | None, *, as_json: bool, timeout: float,
                   connect_timeout: float) -> int:
    """The lesson's master loop against a running master: ints on the task queue, strings back."""
    stop = threading.Event()
    if not link.open_with_retry(stop, "submit", time.monotonic() + connect_timeout):
        raise Unreachable(f"could not reach the master at {link.where} within {connect_timeout:g} s")
    task_q, result_q = getattr(link.manager, TASK_QUEUE)(), getattr(link.manager, RESULT_QUEUE)()
    rng = random.Random(seed)
    numbers = [rng.randint(0, 10000) for _ in range(n_tasks)]
    started = time.monotonic()
    for n in numbers:
        print("Put task %d..." % n, flush=True)
        task_q.put(n)
    print("Try get results...", flush=True)
    wanted: dict[int, int] = {}
    for n in numbers:
        wanted[n] = wanted.get(n, 0) + 1
    got, errors, wrong, duplicates = 0, 0, 0, 0
    stall = timeout or 30.0  # like the lesson's get(timeout=10), but per stretch without any result
    last = time.monotonic()
    while got + errors < n_tasks and time.monotonic() - last < stall:
        try:
            r = result_q.get(timeout=1)
        except queue.Empty:
            continue
        last = time.monotonic()
        print("Result: %s" % r, flush=True)
        m = RESULT_RE.match(str(r))
        if not m:
            errors += 1
            continue
        n = int(m.group(1))
        if wanted.get(n, 0) == 0:
            duplicates += 1
            continue
        wanted[n] -= 1
        got += 1
        wrong += int(m.group(3)) != n * n
    missing = [n for n, c in wanted.items() for _ in range(c)]
    seconds = time.monotonic() - started
    print(f"classic job: {got}/{n_tasks} results in {seconds:.1f} s, {errors} errors, {len(missing)} missing",
          flush=True)
    if as_json:
        print(json.dumps({"tasks": n_tasks, "results": got, "missing": missing, "duplicates": duplicates,
                          "errors": errors, "wrong": wrong, "workers": {}, "seconds": round(seconds, 3),
                          "protocol": "classic"}), flush=True)
    return 0 if not missing and not errors else 1
