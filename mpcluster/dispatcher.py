"""The dispatcher: the one object in the master that every mpcluster call goes through.

Leases make the lesson's queue safe: taking a task records (task, worker, deadline); a result is acknowledged by
task id; a lease that expires (worker dead, frozen or cut off) or is handed back puts the task back at the front
of the queue. Execution is therefore at-least-once, and recording is exactly-once: the first result per task id
is kept, later ones are counted and dropped. Every call takes and returns lists, so batching costs nothing.

The state lives in small types with no lock and no clock (``jobbook.JobBook``, ``leases.LeaseTable``,
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
from . import tasks as kinds
from .classic import ClassicBridge
from .jobbook import JobBook
from .jobs import MAX_HELD_TASKS, AckPlan, JobState, validate_chunk
from .journal import Journal
from .leases import Key, LeaseTable
from .protocol import CLASSIC_JOB, valid_id
from .registry import SAMPLE_SECONDS, Registry, WorkerState, WorkerStatus

MAX_WAIT = 30.0  # longest long-poll a caller may ask for


def _key(k: object) -> Key | None:
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


class DispatcherBase:
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


class Dispatcher(DispatcherBase):
    """Exposed through the manager as ``get_dispatcher``; every public method is a remote call."""

    def ping(self) -> dict:
        """Cheap liveness probe (the health check; `doctor` reads the versions and the clock from it)."""
        return {"ok": True, "python": sys.version.split()[0], "version": __version__, "time": self._clock()}

    def submit(self, job: dict) -> str:
        """Accept a job, or a chunk of one: ``{"id", "kind", "tasks": [args, ...], "first": 0, "more": False,
        "task_timeout": None, "max_attempts": 3}``. Idempotent: a chunk sent again after a lost reply is skipped."""
        c = validate_chunk(job)
        with self._cond:
            now = self._clock()
            j = self._book.get(c.job_id)
            if j is None:
                if c.first:
                    raise ValueError(f"the master has no job {c.job_id!r}: its first chunk must start at task 0")
                if c.kind not in kinds.BUILTIN and c.kind not in self._registry.offered_kinds():
                    raise ValueError(self._no_such_kind(c.kind))
                self._prune(now, incoming=len(c.args))
                self._book.check_room(len(c.args))
                self._journal.add_job(c.job_id, c.kind, now, c.task_timeout, c.max_attempts)
                j = self._book.open(c, now)
            if j.state is JobState.CANCELLED:
                raise ValueError(f"job {c.job_id} was cancelled: it takes no more tasks")
            if j.closed and c.first + len(c.args) > j.added:
                raise ValueError(f"job {c.job_id} is closed (its last chunk arrived): it takes no more tasks")
            if c.first > j.added:
                raise ValueError(f"job {c.job_id} has {j.added} tasks; a chunk must start there, not at {c.first}")
            fresh = c.args[j.added - c.first:]  # a chunk sent again after a lost reply adds only what is new
            if fresh or (not c.more and not j.closed):
                self._book.check_room(len(fresh))
                done = j.n_done == j.added + len(fresh) and not c.more
                extra = {"state": JobState.DONE.value, "finished": now} if done else {}
                self._journal.add_tasks(j.id, j.added, fresh, closed=not c.more, counters=extra)
                self._book.extend(j, len(fresh), closed=not c.more, now=now)
                self._cond.notify_all()
        return c.job_id

    def _no_such_kind(self, kind: str) -> str:
        offered = sorted(self._registry.offered_kinds() | set(kinds.BUILTIN))
        return (f"no live worker offers task kind {kind!r} ({self._registry.alive()} workers alive offer "
                f"{', '.join(offered)}): workers import it from MPC_TASKS_DIR (MPC_TASK_MODULES); put its module "
                "there and restart them")

    def cancel(self, job_id: str) -> dict:
        """Cancel a job: waiting tasks are dropped, leased ones are told to stop at their worker's next heartbeat,
        results that still arrive are dropped. Returns the job's summary (state ``cancelled``)."""
        with self._cond:
            job = self._job(job_id)
            now = self._clock()
            if job.state is JobState.RUNNING:
                self._journal.update_job(job.id, state=JobState.CANCELLED.value, finished=now)
                self._book.cancel(job, now)
                self._event(f"job {job.id} cancelled: {job.n_done}/{job.added} results kept")
                self._cond.notify_all()
            return job.summary(now).as_dict()

    def lease(self, worker: str, max_n: int = 1, wait_s: float = 0.0, info: dict | None = None,
              kinds: list | None = None) -> list[dict]:
        """Long-poll for up to max_n tasks of the ``kinds`` named (None: any the worker offers); each comes with a
        lease that the worker's heartbeats renew."""
        max_n = max(1, min(int(max_n), 10_000))
        with self._cond:
            w = self._touch(worker, info)
            offered = kinds if isinstance(kinds, list) else w.info.get("kinds")
            wanted = {k for k in offered if isinstance(k, str)} if isinstance(offered, list) and offered else None
            end = self._clock() + max(0.0, min(float(wait_s), MAX_WAIT))
            while True:
                now = self._clock()
                self._expire(now)
                if w.status is not WorkerStatus.ALIVE:
                    return []
                out = self._take(w, max_n, wanted, now)
                if out or now >= end:
                    return out
                self._cond.wait(end - now)
                self._registry.seen(w.id, self._clock())

    def heartbeat(self, worker: str, info: dict | None = None, keys: list | None = None) -> dict:
        """Feed the registry and renew the leases the worker names (the tasks it knows it holds).

        Only named leases are renewed: a lease whose grant never reached the worker (the reply was lost) is not
        named, expires, and its task runs again. Named tasks of cancelled jobs come back in ``cancel``: the worker
        stops them. The reply carries the master's timings, so a worker need not be configured with them.
        """
        with self._cond:
            w = self._touch(worker, info)
            now = self._clock()
            named = [k for k in map(_key, keys if isinstance(keys, list) else ()) if k is not None]
            cancel = []
            for key in named:
                job = self._book.get(key[0])
                if job is not None and job.state is JobState.CANCELLED:
                    cancel.append(list(key))
                    lease = self._leases.get(key)
                    if lease is not None and lease.worker == w.id:
                        self._leases.release(key)
                        self._book.lease_ended(key)
            held = self._leases.renew(w.id, named, now + self.lease_seconds)
            self._expire(now)
            return {"leases": held, "lease_seconds": self.lease_seconds, "heartbeat_seconds": self.heartbeat_seconds,
                    "cancel": cancel}

    def ack(self, worker: str, results: list[dict]) -> dict:
        """Record results; the first per task id wins, later ones are counted as dropped duplicates.

        The journal is written before memory changes: if it fails, nothing is recorded, the worker is told (the
        error travels back as the call's answer), and it sends the same results again later.
        """
        results = [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
        with self._cond:
            w = self._touch(worker, None)
            plan = self._book.plan_ack(results, w.id, w.ip, self._clock())
            self._record(plan)
            w.done += len(plan.fresh)
            w.errors += sum(1 for _, rec in plan.fresh if not rec["ok"])
            for r in plan.classic:
                self._leases.release((CLASSIC_JOB, r["id"]))
            ok = self._classic.complete_all(plan.classic) if self._classic is not None else 0
            w.done += ok
            w.duplicates += len(plan.dupes) + len(plan.classic) - ok
            return {"accepted": len(plan.fresh) + ok, "dropped": len(results) - len(plan.fresh) - ok}

    def release(self, worker: str, keys: list) -> int:
        """Hand back tasks this worker holds but will not finish (it is stopping): queued again at once."""
        with self._cond:
            self._touch(worker, None)
            mine = []
            for key in map(_key, keys if isinstance(keys, list) else ()):
                lease = self._leases.get(key) if key else None
                if lease is not None and lease.worker == worker:
                    self._leases.release(key)
                    mine.append((key, worker))
            self._requeue(mine, redelivery=False)
            return len(mine)

    def goodbye(self, worker: str) -> int:
        """A worker is leaving: hand back whatever it still holds and mark it left."""
        with self._cond:
            n = self.release(worker, [list(k) for k in self._leases.held_by(worker)])
            if self._registry.leave(worker) is not None:
                self._event(f"worker {worker} left" + (f", handing back {n} tasks" if n else ""))
            return n

    def results(self, job_id: str, cursor: int = 0, wait_s: float = 0.0, limit: int = 5000):
        """A job's results from ``cursor`` on, in arrival order: (next cursor, [record's JSON text, ...], summary).
        Long-polls up to wait_s while there is nothing new and the job runs."""
        with self._cond:
            job = self._job(job_id)
            cursor = max(0, int(cursor))
            end = self._clock() + max(0.0, min(float(wait_s), MAX_WAIT))
            while job.n_done <= cursor and job.state is JobState.RUNNING:
                now = self._clock()
                self._expire(now)
                if now >= end:
                    break
                self._cond.wait(end - now)
            chunk = self._journal.results(job.id, cursor, max(1, min(int(limit), 50_000)))
            return cursor + len(chunk), chunk, job.summary(self._clock()).as_dict()

    def job(self, job_id: str) -> dict:
        """One job's summary."""
        with self._cond:
            return self._job(job_id).summary(self._clock()).as_dict()

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
        """The cluster as the master sees it: registry, queues, jobs, events (no secrets)."""
        with self._cond:
            now = self._clock()
            self._expire(now)
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
