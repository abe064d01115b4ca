"""The dispatcher: the one object in the master that every mpcluster call goes through.

Leases make the lesson's queue safe: taking a task records (task, worker, deadline); a result is acknowledged by
task id; a lease that expires (worker dead, frozen or cut off) or is handed back puts the task back at the front
of the queue. Execution is therefore at-least-once, and recording is exactly-once: the first result per task id
is kept, later ones are counted and dropped. Every call takes and returns lists, so batching costs nothing.

This module is the remote interface; ``core.DispatcherCore`` underneath holds the one lock, the one clock, the state
types and the transitions the calls share, writes the journal *before* memory changes, and records events.
"""

from __future__ import annotations

import sys
from collections import Counter

from . import __version__
from . import tasks as kinds
from .core import MAX_WAIT, DispatcherCore, as_key
from .jobs import JobState, validate_chunk
from .protocol import CLASSIC_JOB
from .registry import WorkerStatus


class Dispatcher(DispatcherCore):
    """Exposed through the manager as ``get_dispatcher``; every public method is a remote call."""

    def ping(self) -> dict:
        """Cheap liveness probe (the health check; `doctor` reads the versions and the clock from it)."""
        return {"ok": True, "python": sys.version.split()[0], "version": __version__, "time": self._clock()}

    def responsive(self, timeout: float) -> bool:
        """Whether the dispatcher's lock can be taken within ``timeout`` (the master's check of itself; local)."""
        if not self._cond.acquire(timeout=timeout):
            return False
        self._cond.release()
        return True

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
        lease that the worker's heartbeats renew.

        An empty poll lasts half a lease at most, whatever the caller asks: the master hears from a worker when a
        call starts, so an idle worker that polls again at once is heard well within a lease, and one killed while
        it waits is not taken for alive when its poll ends."""
        max_n = max(1, min(int(max_n), 10_000))
        with self._cond:
            w = self._touch(worker, info)
            offered = kinds if isinstance(kinds, list) else w.info.get("kinds")
            wanted = {k for k in offered if isinstance(k, str)} if isinstance(offered, list) and offered else None
            end = self._clock() + max(0.0, min(float(wait_s), MAX_WAIT, self.lease_seconds / 2))
            while True:
                now = self._clock()
                self._expire(now)
                if w.status is not WorkerStatus.ALIVE:
                    return []
                out = self._take(w, max_n, wanted, now)
                if out or now >= end:
                    return out
                self._cond.wait(end - now)

    def heartbeat(self, worker: str, info: dict | None = None, keys: list | None = None) -> dict:
        """Feed the registry and renew the leases the worker names (the tasks it knows it holds).

        Only named leases are renewed: a lease whose grant never reached the worker (the reply was lost) is not
        named, expires, and its task runs again. Named tasks of cancelled jobs come back in ``cancel``: the worker
        stops them. The reply carries the master's timings, so a worker need not be configured with them.
        """
        with self._cond:
            w = self._touch(worker, info)
            now = self._clock()
            named = [k for k in map(as_key, keys if isinstance(keys, list) else ()) if k is not None]
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
            for job_id, n in Counter(job.id for job, _ in plan.dupes).items():
                self._event(f"{n} late duplicate{'s' * (n > 1)} of job {job_id} from {w.id} dropped")
            return {"accepted": len(plan.fresh) + ok, "dropped": len(results) - len(plan.fresh) - ok}

    def release(self, worker: str, keys: list) -> int:
        """Hand back tasks this worker holds but will not finish (it is stopping): queued again at once."""
        with self._cond:
            self._touch(worker, None)
            mine = []
            for key in map(as_key, keys if isinstance(keys, list) else ()):
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
            return self._status(now)
