"""The dispatcher: the one object in the master that every mpcluster call goes through.

Leases make the lesson's queue safe: taking a task records (task, worker, deadline); a result is acknowledged by
task id; a lease that expires (worker dead, frozen or cut off) or is handed back puts the task back at the front
of the queue. Execution is therefore at-least-once, and recording is exactly-once: the first result per task id
is kept, later ones are counted and dropped. Every call takes and returns lists, so batching costs nothing.

The state lives in small types with no lock and no clock (``jobs.JobBook``, ``leases.LeaseTable``,
``registry.Registry``, ``classic.ClassicBridge``); this facade holds the one lock, reads the one clock (wall time,
injectable, so tests drive it by hand), writes the journal *before* memory changes, and records events.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from . import __version__
from .classic import ClassicBridge
from .jobs import MAX_HELD_TASKS, JobBook, validate_job
from .journal import Journal
from .leases import Key, LeaseTable
from .protocol import CLASSIC_JOB, valid_id
from .registry import SAMPLE_SECONDS, Registry, WorkerState, WorkerStatus

MAX_WAIT = 30.0  # longest long-poll a caller may ask for
CLASSIC_POLL = 0.2  # the lesson's queue does not notify us: an idle long-poll looks at it this often


def _key(k: object) -> Key | None:
    return (k[0], k[1]) if isinstance(k, (list, tuple)) and len(k) == 2 and isinstance(k[0], str) else None


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


class DispatcherBase:
    """The lock, the clock, the state types, and the transitions several remote calls share (call the ``_``
    methods with the lock held). Kept apart from the remote interface, as dask's ``Scheduler(SchedulerState, ...)``
    keeps its state machine apart from its transport."""

    def __init__(self, lease_seconds: float = 10.0, heartbeat_seconds: float = 2.0, journal: Journal | None = None,
                 classic: ClassicBridge | None = None, clock: Callable[[], float] = time.time,
                 max_held_tasks: int = MAX_HELD_TASKS):
        self.lease_seconds, self.heartbeat_seconds = lease_seconds, heartbeat_seconds
        self._journal, self._classic, self._clock = journal, classic, clock
        self._cond = threading.Condition()
        self._book, self._leases, self._registry = JobBook(max_held_tasks), LeaseTable(), Registry()
        self.events = EventLog()
        self.started = clock()
        self.master_restarts = 0
        if journal is not None:
            self._restore(journal)

    def _restore(self, journal: Journal) -> None:
        self.master_restarts = int(journal.get_meta("starts", "0"))
        journal.set_meta("starts", str(self.master_restarts + 1))
        for row in journal.load():
            job = self._book.restore(row)
            if not job.complete:
                journal.update_job(job.id, restarts=job.restarts)
                self._event(f"job {job.id} restored from the journal: {len(job.done)}/{len(job.tasks)} "
                                   f"results kept, {len(job.tasks) - len(job.done)} tasks queued again")

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
            stale = self._leases.held_by(worker_id)
            for key in stale:
                self._leases.release(key)
            self._requeue(stale, redelivery=True)
            self._event(f"worker {worker_id} restarted" +
                               (f": {len(stale)} tasks of its previous run queued again" if stale else ""))
        return t.worker

    def _expire(self, now: float) -> int:
        expired = self._leases.expired(now)
        self._requeue([lease.key for lease in expired], redelivery=True)
        for (job_id, holder), n in Counter((lease.key[0], lease.worker) for lease in expired).items():
            self._event(f"{n} lease{'s' * (n > 1)} of job {job_id} held by {holder} expired: queued again")
        for w in self._registry.silent(now, self.lease_seconds):
            self._event(f"worker {w.id} gone: no heartbeat for {now - w.last_seen:.1f} s")
        return len(expired)

    def _requeue(self, keys: list[Key], redelivery: bool) -> None:
        """Keys whose lease ended unacknowledged go back to the front of their queue, in order; the jobs' counters
        (a redelivery, or handed back) are journaled, best effort: the tasks themselves are safely queued."""
        for key in keys:
            if key[0] == CLASSIC_JOB and self._classic is not None:
                self._classic.requeue(key[1], redelivery)
        counters = self._book.requeue([k for k in keys if k[0] != CLASSIC_JOB], redelivery)
        if counters and self._journal is not None:
            try:
                self._journal.add_results([], counters)
            except Exception as e:
                self._event(f"journal: could not record counters of jobs {', '.join(counters)}: {e}")
        if keys:
            self._cond.notify_all()

    def _take(self, worker: WorkerState, max_n: int, now: float) -> list[dict]:
        # A fair share: leased-but-not-started tasks must not starve the other workers.
        share = max(1, math.ceil(len(self._book.pending) / (self._registry.alive() or 1)))
        taken = self._book.take(min(max_n, share), self._leases.__contains__)
        out = [{"job": job.id, "id": t["id"], "kind": t["kind"], "args": t["args"]} for job, t in taken]
        if not out and self._classic is not None:
            out = self._classic.take(min(max_n, share))
        self._leases.grant([(t["job"], t["id"]) for t in out], worker.id, now + self.lease_seconds)
        return out

    def _prune(self, now: float, incoming: int = 0) -> None:
        """Forget finished jobs the bounds no longer allow: from the journal first, then from memory."""
        for job in self._book.prunable(now, incoming):
            if self._journal is not None:
                self._journal.drop_job(job.id)
            self._book.forget(job.id)


class Dispatcher(DispatcherBase):
    """Exposed through the manager as ``get_dispatcher``; every public method is a remote call."""

    def ping(self) -> dict:
        """Cheap liveness probe (the health check; `doctor` reads the versions and the clock from it)."""
        return {"ok": True, "python": sys.version.split()[0], "version": __version__, "time": self._clock()}

    def submit(self, job: dict) -> str:
        """Accept a whole job ({"id": str, "tasks": [{"id", "kind", "args"}, ...]}); idempotent on the id."""
        job_id, items = validate_job(job)
        with self._cond:
            if self._book.get(job_id) is not None:
                return job_id  # a client retrying after a lost reply: the job is already here
            now = self._clock()
            self._prune(now, incoming=len(items))
            self._book.check_room(len(items))
            if self._journal is not None:
                self._journal.add_job(job_id, now, items)
            self._book.add(job_id, items, now)
            self._cond.notify_all()
        return job_id

    def lease(self, worker: str, max_n: int = 1, wait_s: float = 0.0, info: dict | None = None) -> list[dict]:
        """Long-poll for up to max_n tasks; each comes with a lease that the worker's heartbeats renew."""
        max_n = max(1, min(int(max_n), 10_000))
        with self._cond:
            w = self._touch(worker, info)
            end = self._clock() + max(0.0, min(float(wait_s), MAX_WAIT))
            while True:
                now = self._clock()
                self._expire(now)
                if w.status is WorkerStatus.STOPPING:
                    return []
                out = self._take(w, max_n, now)
                if out or now >= end:
                    return out
                self._cond.wait(min(end - now, CLASSIC_POLL) if self._classic is not None else end - now)
                self._registry.seen(w.id, self._clock())

    def heartbeat(self, worker: str, info: dict | None = None, keys: list | None = None) -> dict:
        """Feed the registry and renew the leases the worker names (the tasks it knows it holds).

        Only named leases are renewed: a lease whose grant never reached the worker (the reply was lost) is not
        named, expires, and its task runs again. The reply carries the master's timings, so a worker need not be
        configured with them.
        """
        with self._cond:
            w = self._touch(worker, info)
            now = self._clock()
            named = [k for k in map(_key, keys if isinstance(keys, list) else ()) if k is not None]
            held = self._leases.renew(w.id, named, now + self.lease_seconds)
            self._expire(now)
            return {"leases": held, "lease_seconds": self.lease_seconds, "heartbeat_seconds": self.heartbeat_seconds}

    def ack(self, worker: str, results: list[dict]) -> dict:
        """Record results; the first per task id wins, later ones are counted as dropped duplicates.

        The journal is written before memory changes: if it fails, nothing is recorded, the worker is told (the
        error travels back as the call's answer), and it sends the same results again later.
        """
        results = [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
        with self._cond:
            w = self._touch(worker, None)
            plan = self._book.plan_ack(results, w.id, w.ip, self._clock())
            if self._journal is not None and (plan.rows or plan.counters):
                self._journal.add_results(plan.rows, plan.counters)
            self._book.apply(plan)
            for job, rec in plan.fresh:
                self._leases.release((job.id, rec["id"]))
                w.done += 1
                w.errors += 0 if rec["ok"] else 1
            for r in plan.classic:
                self._leases.release((CLASSIC_JOB, r["id"]))
            ok = self._classic.complete_all(plan.classic) if self._classic is not None else 0
            w.done += ok
            w.duplicates += len(plan.dupes) + len(plan.classic) - ok
            accepted = len(plan.fresh) + ok
            if accepted:
                self._cond.notify_all()
            return {"accepted": accepted, "dropped": len(results) - accepted}

    def release(self, worker: str, keys: list) -> int:
        """Hand back tasks this worker holds but will not finish (it is stopping): queued again at once."""
        with self._cond:
            self._touch(worker, None)
            mine = []
            for key in map(_key, keys if isinstance(keys, list) else ()):
                lease = self._leases.get(key) if key else None
                if lease is not None and lease.worker == worker:
                    self._leases.release(key)
                    mine.append(key)
            self._requeue(mine, redelivery=False)
            return len(mine)

    def goodbye(self, worker: str) -> int:
        """A worker is leaving: hand back whatever it still holds and mark it left."""
        with self._cond:
            n = self.release(worker, self._leases.held_by(worker))
            if self._registry.leave(worker) is not None:
                self._event(f"worker {worker} left" + (f", handing back {n} tasks" if n else ""))
            return n

    def results(self, job_id: str, cursor: int = 0, wait_s: float = 0.0, limit: int = 5000):
        """Results of a job from ``cursor`` on: (next cursor, [result, ...], summary). Long-polls up to wait_s."""
        with self._cond:
            job = self._book.get(job_id)
            if job is None:
                raise KeyError(f"the master has no job {job_id!r} (it may have restarted without its journal)")
            end = self._clock() + max(0.0, min(float(wait_s), MAX_WAIT))
            while len(job.results) <= cursor and not job.complete:
                now = self._clock()
                self._expire(now)
                if now >= end:
                    break
                self._cond.wait(end - now)
            chunk = job.results[cursor : cursor + max(1, int(limit))]
            return cursor + len(chunk), chunk, job.summary(self._clock()).as_dict()

    def expire(self) -> int:
        """Requeue expired leases, mark silent workers gone, sample each worker's throughput (the master calls
        this twice a second)."""
        with self._cond:
            now = self._clock()
            self._registry.sample(now)
            return self._expire(now)

    def newest_job(self, prefix: str) -> dict | None:
        """The summary of the newest job whose id starts with ``prefix`` (e.g. the demo's), or None."""
        with self._cond:
            job = self._book.newest_with_prefix(prefix)
            return job.summary(self._clock()).as_dict() if job is not None else None

    def drain_events(self) -> list[str]:
        """Events not yet logged (the master's reaper logs them)."""
        with self._cond:
            return self.events.drain()

    def status(self) -> dict:
        """The cluster as the master sees it: registry, queues, jobs (no secrets)."""
        with self._cond:
            now = self._clock()
            self._expire(now)
            queues = {"pending": len(self._book.pending), "leased": len(self._leases), "classic_tasks": 0,
                      "classic_results": 0, **(self._classic.sizes() if self._classic is not None else {})}
            return {
                "master": {"python": sys.version.split()[0], "version": __version__, "time": now,
                           "started": self.started, "uptime_s": round(now - self.started, 1),
                           "lease_seconds": self.lease_seconds, "heartbeat_seconds": self.heartbeat_seconds,
                           "restarts": self.master_restarts, "journal": self._journal is not None,
                           "sample_seconds": SAMPLE_SECONDS},
                "workers": self._registry.rows(now, self._leases.count, self.lease_seconds),
                "alive": self._registry.alive(),
                "queues": queues,
                "classic": dict(self._classic.stats) if self._classic is not None else {},
                "jobs": self._book.recent(now),
                "events": list(self.events.recent),
            }
