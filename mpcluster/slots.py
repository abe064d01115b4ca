"""A worker's slots: each one a runner thread that leases tasks, runs them one at a time, and acknowledges them.

A slot runs its tasks through an executor (``runner.ThreadExecutor`` or ``runner.ProcessExecutor``) and only
waits for them, so it can stop waiting when the master cancels a task, when the stop grace ends, or when a task
passes its time limit. Each slot talks to the master over its own link (``Worker.link``, a threading.local): a
slot that loses the master reconnects by itself and re-sends the results it could not deliver.

What the slots share is ``Holdings``: the keys of every task they hold (leased, running, or done and not yet
acknowledged), which the worker's heartbeats name so that the master renews exactly those leases.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque

from .protocol import AuthFailed, Unreachable
from .runner import execute, failure

log = logging.getLogger("mpcluster")

Key = tuple[str, int]
TARGET_BATCH_SECONDS = 0.2  # lease about this much work per round trip
LEASE_WAIT = 2.0  # a lease's long poll; a stopping worker's heartbeat ends it early
#: A thread slot whose tasks take less than this on average runs them on its own thread: handing a task to a helper
#: thread costs about 75 us (two thread switches; measured), more than a no-op task, and a task this short is over
#: before a cancel or the end of the grace could make abandoning it worth anything.
INLINE_BELOW = 0.002


class Stopped(enum.Enum):
    """How a task ended without a result of its own."""

    CANCELLED = "cancelled"  # its job was cancelled: no result, no ack
    HANDED_BACK = "handed back"  # the worker is stopping and the grace is over: released to run elsewhere


class MasterRefused(Exception):
    """The master answered a call with an error (e.g. its journal's disk is full): retry later, keep the results."""


def key_of(task: dict) -> Key:
    return (task.get("job"), task.get("id"))


class Holdings:
    """The keys every slot holds, and which slot holds each, behind one lock (the only state slots share)."""

    def __init__(self) -> None:
        self._owner: dict[Key, Slot] = {}
        self._lock = threading.Lock()

    def add(self, keys: list[Key], owner: Slot) -> None:
        with self._lock:
            self._owner.update((k, owner) for k in keys)

    def discard(self, keys: list[Key]) -> None:
        with self._lock:
            for k in keys:
                self._owner.pop(k, None)

    def keys(self) -> list[list]:
        with self._lock:
            return [list(k) for k in self._owner]

    def cancel(self, keys: list) -> int:
        """The master cancelled these (its heartbeat reply said so): each holder stops or drops its task."""
        found = []
        with self._lock:
            for k in keys:
                k = tuple(k) if isinstance(k, (list, tuple)) and len(k) == 2 else None
                owner = self._owner.pop(k, None) if k else None
                if owner is not None:
                    found.append((owner, k))
        for owner, k in found:
            owner.cancel(k)
        return len(found)


def _time_limit(value: object) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    return float(value) if ok else None


class Slot:
    """One runner thread: lease -> run -> ack, with its own link. ``kinds`` is what it leases (None: any kind)."""

    def __init__(self, worker, name: str, executor, kinds: list[str] | None):
        self.w, self.name, self.executor, self.kinds = worker, name, executor, kinds
        self.role = f"worker {worker.id} ({name})"
        self.batch, self.done = 1, 0
        self._avg: float | None = None
        self.queue: deque[dict] = deque()  # leased, not started
        self.outbox: list[dict] = []  # done, not yet acknowledged
        self.link = None  # this thread's link, once it runs (tests look at it)
        self._lock = threading.Lock()  # guards the three below: other threads cancel and interrupt
        self._current: Key | None = None
        self._interrupt: Stopped | None = None
        self._cancelled: set[Key] = set()
        self._abort: threading.Event | None = None  # set while a task runs inline, on this very thread
        self._inline_abort = threading.Event()  # reused: making an Event per task costs as much as a no-op task
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    # ---- called from other threads ----------------------------------------------------------------------------
    def cancel(self, key: Key) -> None:
        with self._lock:
            if self._current != key:
                self._cancelled.add(key)  # not started yet, or done and not acknowledged: dropped when met
                return
            self._stop_current(Stopped.CANCELLED)

    def grace_over(self) -> None:
        """The stop grace is over: stop the task in hand; it is handed back."""
        with self._lock:
            if self._current is not None and self._interrupt is None:
                self._stop_current(Stopped.HANDED_BACK)

    def _stop_current(self, why: Stopped) -> None:  # with the lock held
        self._interrupt = why
        if self._abort is not None:
            self._abort.set()  # a short task running inline: tasks.pause ends it
        self.executor.wake()

    def wake(self) -> None:
        self.executor.wake()

    # ---- the runner thread ------------------------------------------------------------------------------------
    def _main(self) -> None:
        self.link = self.w.link()
        try:
            self._loop(self.link)
        except AuthFailed as e:
            self.w.fail(e)
        except BaseException as e:  # a bug: say so loudly, and stop the worker rather than limp on with a slot less
            log.exception("%s: stopped by an unexpected error", self.role)
            self.w.fail(e)
        finally:
            self._drain(self.link)
            self.executor.close()

    def _loop(self, link) -> None:
        stop = self.w.stop
        self.executor.prepare()
        if link.dispatcher is None and not link.open_with_retry(stop, self.role):
            return
        while not stop.is_set():
            try:
                self._ack(link)
                self._lease(link)
                self._run_queue(link)
                self._ack(link)
            except Unreachable as e:
                if stop.is_set():
                    break
                log.warning("%s: lost the master at %s (%s); reconnecting (%d results kept)",
                            self.role, link.where, e, len(self.outbox))
                if not link.open_with_retry(stop, self.role):
                    break
                log.info("%s: reconnected to master at %s", self.role, link.where)
            except MasterRefused as e:
                log.warning("%s: the master could not take a call (%s); %d results kept, retrying in 1 s",
                            self.role, e, len(self.outbox))
                stop.wait(1.0)

    def _call(self, link, method: str, *args):
        try:
            return link.call(method, *args)
        except (Unreachable, AuthFailed):
            raise
        except Exception as e:  # the master ran the call and it raised: its answer, not our bug
            raise MasterRefused(f"{type(e).__name__}: {str(e)[:200]}") from e

    def _lease(self, link) -> None:
        if self.w.stop.is_set() or self.queue:
            return
        # ``kinds`` is left out when any kind will do, so that a master older than the kinds filter serves us too.
        extra = () if self.kinds is None else (self.kinds,)
        got = self._call(link, "lease", self.w.id, self.batch, LEASE_WAIT, self.w.info(), *extra)
        tasks = [t for t in got or () if isinstance(t, dict)]
        self.w.holdings.add([key_of(t) for t in tasks], self)
        self.queue.extend(tasks)

    def _run_queue(self, link) -> None:
        started, n = time.monotonic(), 0
        while self.queue and not self.w.stop.is_set():
            task = self.queue.popleft()
            outcome = self._run_one(task, link)
            if not self.w.stop.is_set():
                self.executor.prepare()  # a child killed or dead: its successor starts now, not with the next task
            if outcome is Stopped.HANDED_BACK:
                self._hand_back(link, [task])
            elif isinstance(outcome, dict):
                self.outbox.append(outcome)
                n += 1
        self.done += n
        if n:
            self._adapt((time.monotonic() - started) / n)
        if self.queue:  # stopping: what was not started runs elsewhere
            self._hand_back(link, list(self.queue))
            self.queue.clear()

    def _run_one(self, task: dict, link) -> dict | Stopped:
        """The task's result (an error result past its time limit), or how it was stopped."""
        key = key_of(task)
        limit = _time_limit(task.get("timeout"))
        inline = not self.executor.kills and limit is None and self._avg is not None and self._avg < INLINE_BELOW
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
                return self._finished(execute(task, self.w.id, self.w.ip, self._abort))
            return self._run_elsewhere(task, link, limit)
        finally:
            with self._lock:
                self._current = self._interrupt = self._abort = None

    def _run_elsewhere(self, task: dict, link, limit: float | None) -> dict | Stopped:
        """Run the task in the executor, waiting until it ends, is stopped, or passes its time limit."""
        self.executor.start(task)
        started = time.monotonic()  # after start: a new child's start-up is not the task's time
        while True:
            with self._lock:
                why = self._interrupt
            if why is not None:
                self.executor.stop()
                return why
            if self.w.stop.is_set() and self.queue:  # woken by the stop: hand back the rest now, not later
                self._hand_back(link, list(self.queue))
                self.queue.clear()
            left = None if limit is None else started + limit - time.monotonic()
            if left is not None and left <= 0:
                self.executor.stop()
                how = "killed" if self.executor.kills else "abandoned (a thread cannot be killed)"
                return failure(task, self.w.id, self.w.ip, "TaskTimeout",
                               f"ran past its {limit:g} s time limit; {how}", time.monotonic() - started)
            result = self.executor.wait(left)
            if result is not None:
                return self._finished(result)

    def _finished(self, result: dict) -> dict | Stopped:
        with self._lock:
            why = self._interrupt
        if why is Stopped.CANCELLED:
            return why  # cancelled as it finished: its result is dropped all the same
        if why is Stopped.HANDED_BACK and (result.get("error") or {}).get("type") == "Interrupted":
            return why  # it ran inline and stopped early because the grace ended: it runs again elsewhere
        died = (result.get("error") or {}).get("type") == "WorkerProcessDied"
        if died and self.w.stop.is_set():
            return Stopped.HANDED_BACK  # a stop signal sent to the whole group reached the child too
        return result

    def _hand_back(self, link, tasks: list[dict]) -> None:
        keys = [key_of(t) for t in tasks]
        self.w.holdings.discard(keys)
        with self._lock:
            self._cancelled.difference_update(keys)
        try:
            self._call(link, "release", self.w.id, [list(k) for k in keys])
        except (Unreachable, MasterRefused) as e:  # the leases expire on the master (or the goodbye hands them back)
            log.info("%s: could not hand back %d tasks (%s); they run again elsewhere", self.role, len(keys), e)

    def _ack(self, link) -> None:
        with self._lock:
            dropped = {key_of(r) for r in self.outbox} & self._cancelled
            self._cancelled -= dropped
        if dropped:  # cancelled after they finished: the master wants no result
            self.outbox = [r for r in self.outbox if key_of(r) not in dropped]
        if not self.outbox:
            return
        self._call(link, "ack", self.w.id, self.outbox)
        self.w.holdings.discard([key_of(r) for r in self.outbox])
        self.outbox = []

    def _drain(self, link) -> None:
        """On the way out: hand back what was not started, acknowledge what is done (once: the worker tries again
        with what is left before its goodbye)."""
        if link is None:
            return
        try:
            if self.queue:
                self._hand_back(link, list(self.queue))
                self.queue.clear()
            self._ack(link)
        except (Unreachable, MasterRefused, AuthFailed):
            pass
        if self.outbox:
            self.w.keep(self.outbox)
            self.outbox = []

    def _adapt(self, per_task: float) -> None:
        """Batch size from observed task time: about TARGET_BATCH_SECONDS of work per lease, 1 for slow tasks."""
        self._avg = per_task if self._avg is None else 0.7 * self._avg + 0.3 * per_task
        want = int(TARGET_BATCH_SECONDS / max(self._avg, 1e-6))
        self.batch = max(1, min(self.w.batch_max, want, self.batch * 4))
