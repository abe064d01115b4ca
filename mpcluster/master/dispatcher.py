"""The dispatcher: the one object in the master that every mpcluster call goes through.

Leases make the lesson's queue safe: taking a task records (task, worker, deadline); a result is acknowledged by
task id; a lease that expires (worker dead, frozen or cut off) or is handed back puts the task back at the front
of the queue. Execution is therefore at-least-once, and recording is exactly-once: the first result per task id
is kept, later ones are counted and dropped. Every call takes and returns lists, so batching costs nothing.

The state lives in small types with no lock and no clock (``JobBook``, ``LeaseTable``, ``Registry``,
``ClassicBridge``, ``EventLog``); the dispatcher *has* them, holds the one lock, reads the one clock (wall time,
injectable, so tests drive it by hand) and speaks the protocol (``protocol.py`` describes each call). What changes
the journal goes through its ``Recorder``, journal first, then memory. Each transition happens in one place: a
lease ends unacknowledged in ``Recorder.requeue`` and acknowledged in ``Recorder.record``; a worker is heard in
``_touch``; a task is handed out in ``dispatch.hand_out``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

from ..protocol import CLASSIC_JOB, parse_key, valid_id
from ..version import __version__
from .bridge import ClassicBridge
from .dispatch import hand_out
from .events import EventLog
from .jobbook import MAX_HELD_TASKS, JobBook
from .jobs import JobState, JobStatus
from .journal import Journal
from .leases import LeaseTable
from .recorder import Recorder
from .records import plan_ack
from .registry import Registry, WorkerState, WorkerStatus
from .status import cluster_status
from .submission import validate_chunk

MAX_WAIT = 30.0  # longest long-poll a caller may ask for


class Dispatcher:
    """Exposed through the manager as ``get_dispatcher``; every public method is a remote call."""

    def __init__(self, lease_seconds: float = 10.0, heartbeat_seconds: float = 2.0, journal: Journal | None = None,
                 classic: ClassicBridge | None = None, clock: Callable[[], float] = time.time,
                 max_held_tasks: int = MAX_HELD_TASKS):
        self.lease_seconds, self.heartbeat_seconds = lease_seconds, heartbeat_seconds
        self._journal = journal if journal is not None else Journal()  # in memory: nothing survives a restart
        self._classic, self._clock = classic, clock
        self._cond = threading.Condition()
        self._book, self._leases, self._registry = JobBook(max_held_tasks), LeaseTable(), Registry()
        self.events = EventLog()
        self._recorder = Recorder(self._journal, self._book, self._leases, classic, self._event, self._cond.notify_all)
        self.started = clock()
        self.journal_durable = self._journal.durable
        self.master_restarts = self._recorder.restore() if self._journal.durable else 0
        if classic is not None:
            classic.on_put(self._wake)  # the lesson's queue wakes idle long polls: no polling it

    # ---- the remote interface: clients --------------------------------------------------------------------------
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
                if not self._registry.offers(c.kind):
                    raise ValueError(self._registry.no_such_kind(c.kind))
                j = self._recorder.open_job(c, now)
            self._recorder.add_tasks(j, c, now)
        return c.job_id

    def cancel(self, job_id: str) -> dict:
        """Cancel a job: waiting tasks are dropped, leased ones are told to stop at their worker's next heartbeat,
        results that still arrive are dropped. Returns the job's summary (state ``cancelled``)."""
        with self._cond:
            job, now = self._job(job_id), self._clock()
            self._recorder.cancel(job, now)
            return job.summary(now).as_dict()

    def results(self, job_id: str, cursor: int = 0, wait_s: float = 0.0, limit: int = 5000):
        """A job's results from ``cursor`` on, in arrival order: (next cursor, [record's JSON text, ...], summary).
        Long-polls up to wait_s while there is nothing new and the job runs."""
        with self._cond:
            job = self._job(job_id)
            cursor = max(0, int(cursor))
            self._poll(lambda: job.n_done > cursor or job.status is not JobStatus.RUNNING, wait_s)
            chunk = self._journal.results(job.id, cursor, max(1, min(int(limit), 50_000)))
            return cursor + len(chunk), chunk, job.summary(self._clock()).as_dict()

    def job(self, job_id: str) -> dict:
        """One job's summary."""
        with self._cond:
            return self._job(job_id).summary(self._clock()).as_dict()

    def newest_job(self, prefix: str) -> dict | None:
        """The summary of the newest job whose id starts with ``prefix`` (e.g. the demo's), or None."""
        with self._cond:
            job = self._book.newest_with_prefix(prefix)
            return job.summary(self._clock()).as_dict() if job is not None else None

    def status(self) -> dict:
        """The cluster as the master sees it: registry, queues, jobs, events (no secrets)."""
        with self._cond:
            now = self._clock()
            self._expire(now)
            return cluster_status(self, self._book, self._leases, self._registry, self._classic, now)

    # ---- the remote interface: workers --------------------------------------------------------------------------
    def lease(self, worker: str, max_n: int = 1, wait_s: float = 0.0, info: dict | None = None,
              kinds: list | None = None) -> list[dict]:
        """Long-poll for up to max_n tasks of the ``kinds`` named (None: any the worker offers). An empty poll lasts
        half a lease at most, whatever the caller asks: the master hears from a worker when a call starts, so one
        killed while it waits is not taken for alive when its poll ends."""
        max_n = max(1, min(int(max_n), 10_000))
        with self._cond:
            w = self._touch(worker, info)
            offered = kinds if isinstance(kinds, list) else w.info.get("kinds")
            wanted = {k for k in offered if isinstance(k, str)} if isinstance(offered, list) and offered else None
            out: list[dict] = []

            def granted() -> bool:
                out.extend(self._take(w, max_n, wanted) if w.status is WorkerStatus.ALIVE else ())
                return bool(out) or w.status is not WorkerStatus.ALIVE

            self._poll(granted, min(float(wait_s), self.lease_seconds / 2))
            return out

    def heartbeat(self, worker: str, info: dict | None = None, keys: list | None = None) -> dict:
        """Renew the leases the worker names (a lease whose grant never reached it is not named, and expires);
        named tasks of cancelled jobs come back in ``cancel``. The reply carries the master's timings."""
        with self._cond:
            w, now = self._touch(worker, info), self._clock()
            named = [k for k in map(parse_key, keys if isinstance(keys, list) else ()) if k is not None]
            cancel = [k for k in named if self._book.is_cancelled(k[0])]
            for key in cancel:
                lease = self._leases.get(key)
                if lease is not None and lease.worker == w.id:
                    self._leases.release(key)
            held = self._leases.renew(w.id, named, now + self.lease_seconds)
            self._expire(now)
            return {"leases": held, "lease_seconds": self.lease_seconds, "heartbeat_seconds": self.heartbeat_seconds,
                    "cancel": [list(k) for k in cancel]}

    def ack(self, worker: str, results: list[dict]) -> dict:
        """Record results; the first per task id wins, later ones are counted as dropped duplicates. The journal
        is written first: if it fails, nothing is recorded and the error is the call's answer (sent again later)."""
        results = [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
        with self._cond:
            w = self._touch(worker, None)
            plan = plan_ack(self._book, results, w.id, w.ip, self._clock())
            self._recorder.record(plan, self._clock())
            for r in plan.classic:
                self._leases.release((CLASSIC_JOB, r["id"]))
            ok = self._classic.complete_all(plan.classic) if self._classic is not None else 0
            self._registry.credit(w, plan, ok)
            for job_id, n in Counter(job.id for job, _ in plan.dupes).items():
                self._event(f"{n} late duplicate{'s' * (n > 1)} of job {job_id} from {w.id} dropped")
            return {"accepted": len(plan.fresh) + ok, "dropped": len(results) - len(plan.fresh) - ok}

    def release(self, worker: str, keys: list) -> int:
        """Hand back tasks this worker holds but will not finish (it is stopping): queued again at once."""
        with self._cond:
            self._touch(worker, None)
            return self._hand_back(worker, [k for k in map(parse_key, keys if isinstance(keys, list) else ()) if k])

    def goodbye(self, worker: str) -> int:
        """A worker is leaving: hand back whatever it still holds and mark it left."""
        with self._cond:
            self._touch(worker, None)
            n = self._hand_back(worker, self._leases.held_by(worker))
            if self._registry.leave(worker) is not None:
                self._event(f"worker {worker} left" + (f", handing back {n} tasks" if n else ""))
            return n

    # ---- the master's own calls (not over the wire, but harmless if they are) ------------------------------------
    def responsive(self, timeout: float) -> bool:
        """Whether the dispatcher's lock can be taken within ``timeout`` (the master's check of itself)."""
        if not self._cond.acquire(timeout=timeout):
            return False
        self._cond.release()
        return True

    def expire(self) -> int:
        """Requeue expired leases, mark silent workers gone, sample each worker's throughput (twice a second)."""
        with self._cond:
            now = self._clock()
            self._registry.sample(now)
            return self._expire(now)

    def drain_events(self) -> list[str]:
        """Events not yet logged (the master's reaper logs them)."""
        with self._cond:
            return self.events.drain()

    # ---- transitions (the lock held) -----------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _event(self, text: str) -> None:
        self.events.add(text, self._clock())

    def _poll(self, ready: Callable[[], bool], wait_s: float) -> None:
        """A long poll: until ``ready()`` (checked after expiring leases) or ``wait_s`` (at most MAX_WAIT) passed."""
        end = self._clock() + max(0.0, min(wait_s, MAX_WAIT))
        while True:
            now = self._clock()
            self._expire(now)
            if ready() or now >= end:
                return
            self._cond.wait(end - now)

    def _job(self, job_id: str) -> JobState:
        job = self._book.get(job_id)
        if job is None:
            raise KeyError(f"the master has no job {job_id!r:.80} (it may have been forgotten, or the master "
                           "restarted without its journal)")
        return job

    def _touch(self, worker_id: str, info: dict | None) -> WorkerState:
        """A call from a worker: the registry hears it; a new process under a known id means the old one is dead,
        so what it held will never be acknowledged and runs again."""
        if not valid_id(worker_id):
            raise ValueError(f"worker id {worker_id!r:.70} is not valid")
        t = self._registry.touch(worker_id, info, self._clock())
        stale = [(key, worker_id) for key in self._leases.held_by(worker_id)] if t.restarted else []
        self._recorder.requeue(stale, True, self._clock())
        for line in t.events(requeued=len(stale)):
            self._event(line)
        if t.stopping:
            self._cond.notify_all()  # its long polls end now
        return t.worker

    def _expire(self, now: float) -> int:
        expired = self._leases.expired(now)
        self._recorder.requeue([(lease.key, lease.worker) for lease in expired], True, now)
        for (job_id, holder), n in Counter((lease.key[0], lease.worker) for lease in expired).items():
            self._event(f"{n} lease{'s' * (n > 1)} of job {job_id} held by {holder} expired: queued again")
        for w in self._registry.silent(now, self.lease_seconds):
            self._event(f"worker {w.id} gone: no heartbeat for {now - w.last_seen:.1f} s")
        return len(expired)

    def _hand_back(self, worker: str, keys: list) -> int:
        mine = [(key, worker) for key in keys if (lease := self._leases.get(key)) is not None and lease.worker == worker]
        self._recorder.requeue(mine, False, self._clock())
        return len(mine)

    def _take(self, worker: WorkerState, max_n: int, kinds_wanted: set[str] | None) -> list[dict]:
        out = hand_out(self._book, self._leases, self._registry, self._journal, self._classic, max_n, kinds_wanted)
        self._leases.grant([(t["job"], t["id"]) for t in out], worker.id, self._clock() + self.lease_seconds)
        return out
