"""A worker's slots: each one a runner thread that leases tasks, runs them one at a time, and acknowledges them.

A slot runs its tasks through its ``runner.InHand`` and an executor (``executors.ThreadExecutor`` or
``executors.ProcessExecutor``), so it can stop waiting when the master cancels a task, when the stop grace ends,
or when a task passes its time limit. Each slot talks to the master over its own link (``Worker.link``, a
threading.local): a slot that loses the master reconnects by itself and re-sends the results it could not deliver.

What the slots share is ``Holdings``: the keys of every task they hold (leased, running, or done and not yet
acknowledged), which the worker's heartbeats name so that the master renews exactly those leases.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from ..protocol import AuthFailed, Key, Unreachable, key_of, parse_key
from .runner import InHand, Stopped

log = logging.getLogger("mpcluster")

TARGET_BATCH_SECONDS = 0.2  # lease about this much work per round trip
#: A thread slot whose tasks take less than this on average runs them on its own thread: handing a task to a helper
#: thread costs about 75 us (two thread switches; measured), more than a no-op task, and a task this short is over
#: before a cancel or the end of the grace could make abandoning it worth anything.
INLINE_BELOW = 0.002


class MasterRefused(Exception):
    """The master answered a call with an error (e.g. its journal's disk is full): retry later, keep the results."""


class Holdings:
    """The keys every slot holds, and which slot holds each, behind one lock (the only state slots share)."""

    def __init__(self) -> None:
        self._owner: dict[Key, Slot] = {}
        self._lock = threading.Lock()
        self._called = float("-inf")  # when a slot last called the master (time.monotonic)

    def calling(self) -> None:
        """A slot is calling the master now: the master hears from this worker (its registry notes each call)."""
        self._called = time.monotonic()

    def idle_and_heard(self, within: float) -> bool:
        """Nothing held, and a slot called the master less than ``within`` seconds ago: a heartbeat would renew no
        lease and tell the master nothing it did not just hear, so an idle worker can skip it."""
        with self._lock:
            return not self._owner and time.monotonic() - self._called < within

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
            for k in map(parse_key, keys):
                owner = self._owner.pop(k, None) if k else None
                if owner is not None:
                    found.append((owner, k))
        for owner, k in found:
            owner.cancel(k)
        return len(found)


class Slot:
    """One runner thread: lease -> run -> ack, with its own link. ``kinds`` is what it leases (None: every kind the
    worker offers)."""

    def __init__(self, worker, name: str, executor, kinds: list[str] | None):
        self.w, self.name, self.executor, self.kinds = worker, name, executor, kinds
        self.role = f"worker {worker.id} ({name})"
        self.batch, self.done = 1, 0
        self._avg: float | None = None
        self.queue: deque[dict] = deque()  # leased, not started
        self.outbox: list[dict] = []  # done, not yet acknowledged
        self.hand = InHand(executor, worker.id, worker.ip)
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    # ---- called from other threads ----------------------------------------------------------------------------
    def cancel(self, key: Key) -> None:
        self.hand.cancel(key)

    def grace_over(self) -> None:
        self.hand.grace_over()

    def wake(self) -> None:
        self.executor.wake()

    # ---- the runner thread ------------------------------------------------------------------------------------
    def _main(self) -> None:
        link = self.w.link()
        try:
            self._loop(link)
        except AuthFailed as e:
            self.w.fail(e)
        except BaseException as e:  # a bug: say so loudly, and stop the worker rather than limp on with a slot less
            log.exception("%s: stopped by an unexpected error", self.role)
            self.w.fail(e)
        finally:
            self._drain(link)
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
        # ``kinds`` is left out when the slot takes every kind the worker offers (the master reads those from
        # ``info``), so that a master older than the kinds filter serves us too.
        extra = () if self.kinds is None else (self.kinds,)
        self.w.holdings.calling()
        # An idle long poll: Heartbeat.poll_seconds; new tasks, and a stopping worker's heartbeat, end it early.
        got = self._call(link, "lease", self.w.id, self.batch, self.w.heartbeat.poll_seconds, self.w.info(), *extra)
        tasks = [t for t in got or () if isinstance(t, dict)]
        self.w.holdings.add([key_of(t) for t in tasks], self)
        self.queue.extend(tasks)

    def _run_queue(self, link) -> None:
        started, n = time.monotonic(), 0
        while self.queue and not self.w.stop.is_set():
            task = self.queue.popleft()
            short = self._avg is not None and self._avg < INLINE_BELOW
            outcome = self.hand.run(task, short, lambda: self._hand_back_unstarted(link), self.w.stop)
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
        self._hand_back_unstarted(link)  # stopping: what was not started runs elsewhere

    def _hand_back_unstarted(self, link) -> None:
        if self.w.stop.is_set() and self.queue:  # woken by the stop: hand back the rest now, not after the task
            self._hand_back(link, list(self.queue))
            self.queue.clear()

    def _hand_back(self, link, tasks: list[dict]) -> None:
        keys = [key_of(t) for t in tasks]
        self.w.holdings.discard(keys)
        self.hand.cancelled_of(keys)  # marks of cancels for these are moot: the master has them back
        try:
            self._call(link, "release", self.w.id, [list(k) for k in keys])
        except (Unreachable, MasterRefused) as e:  # the leases expire on the master (or the goodbye hands them back)
            log.info("%s: could not hand back %d tasks (%s); they run again elsewhere", self.role, len(keys), e)

    def _ack(self, link) -> None:
        dropped = self.hand.cancelled_of(key_of(r) for r in self.outbox)
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
            self._hand_back_unstarted(link)
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
