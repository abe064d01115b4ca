"""The dispatcher's core: the one lock, the one clock, the state types, and the transitions several remote calls
share (``dispatcher.Dispatcher`` is the remote interface on top). Kept apart as dask keeps its scheduler's state
machine apart from its transport (``Scheduler(SchedulerState, ...)``).

The state lives in small types with no lock and no clock (``jobbook.JobBook``, ``leases.LeaseTable``,
``registry.Registry``, ``classic.ClassicBridge``); the core holds the lock, reads the clock (wall time, injectable,
so tests drive it by hand), writes the journal *before* memory changes, and records events.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from . import __version__
from . import tasks as kinds
from .classic import ClassicBridge
from .jobbook import JobBook
from .jobs import MAX_HELD_TASKS, AckPlan, JobState
from .journal import Journal
from .leases import Key, LeaseTable
from .protocol import CLASSIC_JOB, valid_id
from .registry import SAMPLE_SECONDS, Registry, WorkerState

MAX_WAIT = 30.0  # longest long-poll a caller may ask for


def as_key(k: object) -> Key | None:
    ok = isinstance(k, (list, tuple)) and len(k) == 2 and isinstance(k[0], str) and isinstance(k[1], int)
    return (k[0], k[1]) if ok else None


class EventLog:
    """What happened (joined, gone, restarted, leases expired, jobs restored): new lines for the master's log,
    and the most recent ones with their times for `status` and the page."""

    def __init__(self) -> None:
        self._new: deque[str] = deque(maxlen=1000)
        self.recent: deque[dict] = deque(maxlen=100)

    def add(self, text: str, now: float) -> None:
        self._new.append(text)
        self.recent.append({"t": round(now, 3), "text": text})

    def drain(self) -> list[str]:
        out = list(self._new)
        self._new.clear()
        return out


class DispatcherCore:
    """The lock, the clock, the state types, and the transitions several remote calls share (call the ``_``
    methods with the lock held). Kept apart from the remote interface, as dask's ``Scheduler(SchedulerState, ...)``
    keeps its state machine apart from its transport."""

    def __init__(self, lease_seconds: float = 10.0, heartbeat_seconds: float = 2.0, journal: Journal | None = None,
                 classic: ClassicBridge | None = None, clock: Callable[[], float] = time.time,
                 max_held_tasks: int = MAX_HELD_TASKS):
        self.lease_seconds, self.heartbeat_seconds = lease_seconds, heartbeat_seconds
        self._journal = journal if journal is not None else Journal()  # in memory: nothing survives a restart
        self._classic, self._clock = classic, clock
        self._cond = threading.Condition()
        self._book, self._leases, self._registry = JobBook(max_held_tasks), LeaseTable(), Registry()
        self.events = EventLog()
        self.started = clock()
        self.master_restarts = 0
        if self._journal.durable:
            self._restore()
        if classic is not None:
            classic.on_put(self._wake)  # the lesson's queue wakes idle long polls: no polling it

    def _restore(self) -> None:
        self.master_restarts = int(self._journal.get_meta("starts", "0"))
        self._journal.set_meta("starts", str(self.master_restarts + 1))
        for row in self._journal.load():
            job = self._book.restore(row)
            if job.state is JobState.RUNNING:
                self._journal.update_job(job.id, restarts=job.restarts)
                self._event(f"job {job.id} restored from the journal: {job.n_done}/{job.added} results kept, "
                            f"{job.pending} tasks queued again")

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _event(self, text: str) -> None:
        self.events.add(text, self._clock())

    def _touch(self, worker_id: str, info: dict | None) -> WorkerState:
        if not valid_id(worker_id):
            raise ValueError(f"worker id {worker_id!r:.70} is not valid")
        t = self._registry.touch(worker_id, info, self._clock())
        if t.joined:
            self._event(f"worker {worker_id} joined" + (f" from {t.worker.ip}" if t.worker.ip else ""))
        if t.back_from is not None:
            self._event(f"worker {worker_id} is back after being {t.back_from.value}")
        if t.restarted:
            # Same id, new process: the old one is dead, so what it held will never be acknowledged.
            stale = [(key, worker_id) for key in self._leases.held_by(worker_id)]
            for key, _ in stale:
                self._leases.release(key)
            self._requeue(stale, redelivery=True)
            self._event(f"worker {worker_id} restarted" +
                        (f": {len(stale)} tasks of its previous run queued again" if stale else ""))
        if t.stopping:
            self._cond.notify_all()  # its long polls end now
        return t.worker

    def _expire(self, now: float) -> int:
        expired = self._leases.expired(now)
        self._requeue([(lease.key, lease.worker) for lease in expired], redelivery=True)
        for (job_id, holder), n in Counter((lease.key[0], lease.worker) for lease in expired).items():
            self._event(f"{n} lease{'s' * (n > 1)} of job {job_id} held by {holder} expired: queued again")
        for w in self._registry.silent(now, self.lease_seconds):
            self._event(f"worker {w.id} gone: no heartbeat for {now - w.last_seen:.1f} s")
        return len(expired)

    def _requeue(self, ended: list[tuple[Key, str]], redelivery: bool) -> None:
        """Leases that ended unacknowledged: their tasks go back to the front of their queue, in order. The jobs'
        counters are journaled best effort (the tasks themselves are safely queued); poisoned tasks are failed."""
        for key, _ in ended:
            if key[0] == CLASSIC_JOB and self._classic is not None:
                self._classic.requeue(key[1], redelivery)
        counters, poisoned = self._book.requeue([e for e in ended if e[0][0] != CLASSIC_JOB], redelivery)
        try:
            if counters:
                self._journal.add_results([], counters)
            if poisoned:
                self._record(self._book.plan_poisoned(poisoned, self._clock()))
                for job, i, _, attempts in poisoned:
                    self._event(f"task {job.id}/{i} failed: its worker died {attempts} times running it")
        except Exception as e:  # noqa: BLE001 - the journal's disk is full, say: retry the poisoned ones later
            self._event(f"journal: could not record counters or poisoned tasks ({e})")
            for job, i, _, _ in poisoned:
                job.retry.appendleft(i)
        if ended:
            self._cond.notify_all()

    def _record(self, plan: AckPlan) -> None:
        """Journal first (if it raises, nothing changed), then memory."""
        if plan.rows or plan.counters:
            self._journal.add_results(plan.rows, plan.counters)
        self._book.apply(plan, self._clock())
        for job, rec in plan.fresh:
            if self._leases.release((job.id, rec["id"])) is not None:
                self._book.lease_ended((job.id, rec["id"]))
        if plan.fresh:
            self._cond.notify_all()

    def _take(self, worker: WorkerState, max_n: int, kinds_wanted: set[str] | None, now: float) -> list[dict]:
        # A fair share per slot: leased-but-not-started tasks must not starve the other workers.
        share = max(1, math.ceil(self._book.pending() / max(1, self._registry.alive_slots())))
        n, out = min(max_n, share), []
        taken = self._book.take(n, kinds_wanted)
        by_job: dict[str, list[int]] = {}
        for job, i in taken:
            by_job.setdefault(job.id, []).append(i)
        for job_id, ids in by_job.items():
            job, args = self._book.get(job_id), self._journal.task_args(job_id, ids)
            out += [{"job": job_id, "id": i, "kind": job.kind, "args": args[i], "timeout": job.task_timeout,
                     "attempt": job.attempts[i] + 1} for i in ids]
        if not out and self._classic is not None and (kinds_wanted is None or "square" in kinds_wanted):
            out = self._classic.take(n)
        self._leases.grant([(t["job"], t["id"]) for t in out], worker.id, now + self.lease_seconds)
        return out

    def _prune(self, now: float, incoming: int = 0) -> None:
        """Forget finished jobs the bounds no longer allow: from the journal first, then from memory."""
        for job in self._book.prunable(now, incoming):
            self._journal.drop_job(job.id)
            self._book.forget(job.id)

    def _job(self, job_id: str):
        job = self._book.get(job_id)
        if job is None:
            raise KeyError(f"the master has no job {job_id!r:.80} (it may have been forgotten, or the master "
                           "restarted without its journal)")
        return job

    def _no_such_kind(self, kind: str) -> str:
        offered = sorted(self._registry.offered_kinds() | set(kinds.BUILTIN))
        return (f"no live worker offers task kind {kind!r} ({self._registry.alive()} workers alive offer "
                f"{', '.join(offered)}): workers import it from MPC_TASKS_DIR (MPC_TASK_MODULES); put its module "
                "there and restart them")

    def _status(self, now: float) -> dict:
        """The cluster as the master sees it: registry, queues, jobs, events (no secrets). Lock held."""
        queues = {"pending": self._book.pending(), "leased": len(self._leases), "classic_tasks": 0,
                  "classic_results": 0, **(self._classic.sizes() if self._classic is not None else {})}
        return {
            "master": {"python": sys.version.split()[0], "version": __version__, "time": now,
                       "started": self.started, "uptime_s": round(now - self.started, 1),
                       "lease_seconds": self.lease_seconds, "heartbeat_seconds": self.heartbeat_seconds,
                       "restarts": self.master_restarts, "journal": self._journal.durable,
                       "sample_seconds": SAMPLE_SECONDS},
            "workers": self._registry.rows(now, self._leases.count, self.lease_seconds),
            "alive": self._registry.alive(),
            "queues": queues,
            "classic": dict(self._classic.stats) if self._classic is not None else {},
            "jobs": self._book.recent(now),
            "events": list(self.events.recent),
        }
