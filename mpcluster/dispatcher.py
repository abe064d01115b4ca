"""The dispatcher: the one object in the master that every mpcluster call goes through.

Leases make the lesson's queue safe: taking a task records (task, worker, deadline); a result is acknowledged by
task id; a lease that expires (worker dead, frozen or cut off) or is handed back puts the task back at the front
of the queue. Execution is therefore at-least-once, and recording is exactly-once: the first result per task id
is kept, later ones are counted and dropped. Every call takes and returns lists, so batching costs nothing.

All state is guarded by one condition variable; the clock is injectable so the lease logic is unit-tested
without sleeping.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from . import tasks as kinds
from .journal import Journal
from .protocol import CLASSIC_JOB

log = logging.getLogger("mpcluster")

JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_WAIT = 30.0
# Memory bounds (measured: up to ~2 kB per task and its result in the master, whose limit is 1 GB):
MAX_TASKS_PER_JOB = 200_000
MAX_HELD_TASKS = 300_000  # tasks of unfinished jobs plus finished jobs still kept for their readers
KEEP_FINISHED_JOBS = 50
KEEP_FINISHED_SECONDS = 60.0  # a finished job stays readable at least this long, whatever the bounds say


@dataclass
class Lease:
    worker: str
    deadline: float


@dataclass
class Worker:
    id: str
    ip: str = ""
    info: dict = field(default_factory=dict)
    first_seen: float = 0.0
    last_seen: float = 0.0
    state: str = "alive"  # alive | stopping | gone | left
    session: str = ""  # one per worker process: a restarted container keeps its hostname but not its session
    done: int = 0
    errors: int = 0
    duplicates: int = 0


@dataclass
class Job:
    id: str
    tasks: dict[int, dict]
    created: float  # wall clock
    results: list[dict] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    finished: float | None = None
    redeliveries: int = 0
    duplicates_dropped: int = 0
    handed_back: int = 0
    restarts: int = 0
    errors: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)

    def add(self, record: dict) -> None:
        self.done.add(record["id"])
        self.results.append(record)
        self.errors += 0 if record.get("ok") else 1
        w = record.get("worker", "?")
        self.per_worker[w] = self.per_worker.get(w, 0) + 1

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.tasks)

    def summary(self) -> dict:
        end = self.finished or time.time()
        return {
            "job": self.id, "tasks": len(self.tasks), "done": len(self.done), "errors": self.errors,
            "complete": self.complete, "redeliveries": self.redeliveries,
            "duplicates_dropped": self.duplicates_dropped, "handed_back": self.handed_back,
            "master_restarts": self.restarts, "workers": dict(self.per_worker),
            "seconds": round(end - self.created, 3),
        }


def check_job(job: object, check_tasks: bool = True) -> tuple[str, list[dict]]:
    """Validate a submitted job; raise ValueError with one clear line if it is not acceptable."""
    if not isinstance(job, dict):
        raise ValueError(f"a job must be a dict with 'id' and 'tasks', got {type(job).__name__}")
    job_id, items = job.get("id"), job.get("tasks")
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id) or job_id == CLASSIC_JOB:
        raise ValueError(f"job id {job_id!r:.70} is not valid: expected 1-64 letters, digits, '.', '_' or '-'")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_TASKS_PER_JOB:
        raise ValueError(f"a job needs a list of 1 to {MAX_TASKS_PER_JOB} tasks")
    out, seen = [], set()
    for t in items:
        if not isinstance(t, dict):
            raise ValueError(f"a task must be a dict with id, kind and args, got {type(t).__name__}")
        tid = t.get("id")
        if isinstance(tid, bool) or not isinstance(tid, int) or not 0 <= tid < 2**62:
            raise ValueError(f"task id {tid!r:.40} is not valid: expected a whole number >= 0")
        if tid in seen:
            raise ValueError(f"task id {tid} appears twice in the job")
        seen.add(tid)
        kind, args = t.get("kind"), t.get("args", {})
        if check_tasks:
            try:
                args = kinds.validate(kind, args)
            except kinds.TaskError as e:
                raise ValueError(f"task {tid}: {e}") from None
        elif not isinstance(kind, str) or not isinstance(args, dict):
            raise ValueError(f"task {tid}: kind must be a str and args a dict")
        out.append({"id": tid, "kind": kind, "args": args})
    return job_id, out


class Dispatcher:
    """Exposed through the manager as ``get_dispatcher``; every public method is a remote call."""

    def __init__(
        self,
        lease_seconds: float = 10.0,
        heartbeat_seconds: float = 2.0,
        journal: Journal | None = None,
        classic_tasks: queue.Queue | None = None,
        classic_results: queue.Queue | None = None,
        clock: Callable[[], float] = time.monotonic,
        classic_seconds: float = 1.0,
    ):
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._journal = journal
        self._classic_tasks = classic_tasks
        self._classic_results = classic_results
        self._classic_seconds = classic_seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._pending: deque[tuple[str, int]] = deque()
        self._leases: dict[tuple[str, int], Lease] = {}
        self._workers: dict[str, Worker] = {}
        self._classic: dict[int, object] = {}  # lease key id -> the item taken from the lesson's queue
        self._classic_seq = 0
        self._classic_stats = {"done": 0, "redeliveries": 0, "duplicates_dropped": 0}
        self.started = time.time()
        self.master_restarts = 0
        self.events: deque[str] = deque(maxlen=200)  # what the master logs: joined, gone, requeued
        if journal is not None:
            self._restore(journal)

    # ---- restore after a restart -------------------------------------------------------------------------
    def _restore(self, journal: Journal) -> None:
        self.master_restarts = int(journal.get_meta("starts", "0"))
        journal.set_meta("starts", str(self.master_restarts + 1))
        for row in journal.load():
            job = Job(row["id"], {t["id"]: t for t in row["tasks"]}, row["created"], finished=row["finished"],
                      redeliveries=row["redeliveries"], duplicates_dropped=row["duplicates_dropped"],
                      handed_back=row["handed_back"], restarts=row["restarts"])
            for record in row["results"]:
                job.add(record)
            self._jobs[job.id] = job
            if not job.complete:
                job.restarts += 1
                journal.update_job(job.id, restarts=job.restarts)
                self._pending.extend((job.id, tid) for tid in job.tasks if tid not in job.done)
                self.events.append(f"job {job.id} restored from the journal: {len(job.done)}/{len(job.tasks)} "
                                   f"results kept, {len(job.tasks) - len(job.done)} tasks queued again")

    # ---- helpers (call with the lock held) ---------------------------------------------------------------
    def _touch(self, worker_id: str, info: dict | None) -> Worker:
        if not isinstance(worker_id, str) or not 0 < len(worker_id) <= 128:
            raise ValueError("worker id must be a non-empty string of at most 128 characters")
        now = self._clock()
        w = self._workers.get(worker_id)
        if w is None:
            w = self._workers[worker_id] = Worker(worker_id, first_seen=now)
            self.events.append(f"worker {worker_id} joined" + (f" from {info.get('ip')}" if info else ""))
        elif w.state == "gone" or (w.state == "left" and info and info.get("session")
                                    and info["session"] != w.session):
            # A worker that said goodbye comes back only as a new process: a retried goodbye, an empty ack or a
            # heartbeat that crossed the goodbye are still the old one, on its way out.
            self.events.append(f"worker {worker_id} is back after being {w.state}")
            w.state = "alive"
        if info and info.get("session") and info["session"] != w.session:
            if w.session:
                # Same id, new process: the old one is dead, so what it held will never be acknowledged.
                stale = [key for key, lease in self._leases.items() if lease.worker == worker_id]
                for key in stale:
                    del self._leases[key]
                    self._requeue(key)
                    self._count_redelivery(key)
                self.events.append(f"worker {worker_id} restarted" +
                                   (f": {len(stale)} tasks of its previous run queued again" if stale else ""))
                if stale:
                    self._cond.notify_all()
            w.session = str(info["session"])
        if info:
            w.info.update({k: v for k, v in info.items() if k in ("ip", "host", "pid", "python", "batch", "mode")})
            w.ip = str(w.info.get("ip", w.ip))
            if info.get("state") == "stopping" and w.state == "alive":
                w.state = "stopping"
        w.last_seen = now
        return w

    def _expire(self, now: float) -> int:
        expired = [key for key, lease in self._leases.items() if lease.deadline <= now]
        for key in reversed(expired):  # requeued at the front, so reversed keeps their order
            lease = self._leases.pop(key)
            self._requeue(key)
            self._count_redelivery(key)
            self.events.append(f"lease of task {key[0]}/{key[1]} held by {lease.worker} expired: queued again")
        for w in self._workers.values():
            if w.state in ("alive", "stopping") and now - w.last_seen > self.lease_seconds:
                w.state = "gone"
                self.events.append(f"worker {w.id} gone: no heartbeat for {now - w.last_seen:.1f} s")
        if expired:
            self._cond.notify_all()
        return len(expired)

    def _count_redelivery(self, key: tuple[str, int]) -> None:
        job = self._jobs.get(key[0])
        if job is not None:
            job.redeliveries += 1
            self._journal_counter(job, "redeliveries")
        elif key[0] == CLASSIC_JOB:
            self._classic_stats["redeliveries"] += 1

    def _journal_counter(self, job: Job, name: str) -> None:
        if self._journal is not None:
            try:
                self._journal.update_job(job.id, **{name: getattr(job, name)})
            except Exception as e:  # a counter only: the task itself is safely back in the queue
                self.events.append(f"journal: could not record {name} of job {job.id}: {e}")

    def _requeue(self, key: tuple[str, int]) -> None:
        if key[0] == CLASSIC_JOB:
            item = self._classic.pop(key[1], None)
            if self._classic_tasks is not None and item is not None:
                self._classic_tasks.put(item)  # back to the lesson's queue, where any worker can take it
        else:
            self._pending.appendleft(key)

    def _alive(self) -> int:
        return sum(1 for w in self._workers.values() if w.state == "alive") or 1

    def _take(self, worker: Worker, max_n: int, now: float) -> list[dict]:
        # A fair share: leased-but-not-started tasks must not starve the other workers.
        share = max(1, math.ceil(len(self._pending) / self._alive()))
        n, out = min(max_n, share), []
        while self._pending and len(out) < n:
            key = self._pending.popleft()
            job = self._jobs.get(key[0])
            if job is None or key[1] in job.done or key in self._leases:
                continue
            task = job.tasks[key[1]]
            self._leases[key] = Lease(worker.id, now + self.lease_seconds)
            out.append({"job": job.id, "id": key[1], "kind": task["kind"], "args": task["args"]})
        if not out and self._classic_tasks is not None:
            while len(out) < max(1, n):
                try:
                    item = self._classic_tasks.get_nowait()
                except queue.Empty:
                    break
                self._classic_seq += 1
                key = (CLASSIC_JOB, self._classic_seq)
                self._classic[key[1]] = item
                self._leases[key] = Lease(worker.id, now + self.lease_seconds)
                out.append({"job": CLASSIC_JOB, "id": key[1], "kind": "square",
                            "args": {"n": item, "seconds": self._classic_seconds}})
        return out

    # ---- the remote interface ----------------------------------------------------------------------------
    def ping(self) -> dict:
        """Cheap liveness probe (the health check; `doctor` reads the versions and the clock from it)."""
        from . import __version__

        return {"ok": True, "python": sys.version.split()[0], "version": __version__, "time": time.time()}

    def submit(self, job: dict, check_tasks: bool = True) -> str:
        """Accept a whole job ({"id": str, "tasks": [{"id", "kind", "args"}, ...]}); idempotent on the id."""
        job_id, items = check_job(job, check_tasks)
        with self._cond:
            if job_id in self._jobs:
                return job_id  # a client retrying after a lost reply: the job is already here
            self._prune(incoming=len(items))
            held = sum(len(j.tasks) for j in self._jobs.values())
            if held + len(items) > MAX_HELD_TASKS:
                raise ValueError(
                    f"the master already holds {held} tasks of running or just-finished jobs; with these "
                    f"{len(items)} it would exceed {MAX_HELD_TASKS}: wait for jobs to finish or submit fewer tasks")
            created = time.time()
            if self._journal is not None:
                self._journal.add_job(job_id, created, items)
            self._jobs[job_id] = Job(job_id, {t["id"]: t for t in items}, created)
            self._pending.extend((job_id, t["id"]) for t in items)
            self._cond.notify_all()
        return job_id

    def lease(self, worker: str, max_n: int = 1, wait_s: float = 0.0, info: dict | None = None) -> list[dict]:
        """Long-poll for up to max_n tasks; each comes with a lease that heartbeats extend."""
        max_n = max(1, min(int(max_n), 10_000))
        with self._cond:
            w = self._touch(worker, info)
            end = self._clock() + max(0.0, min(float(wait_s), MAX_WAIT))
            while True:
                now = self._clock()
                self._expire(now)
                if w.state == "stopping":
                    return []
                out = self._take(w, max_n, now)
                if out or now >= end:
                    return out
                # The lesson's queue does not notify us: look at it again every 0.2 s.
                self._cond.wait(min(end - now, 0.2 if self._classic_tasks is not None else end - now))
                w.last_seen = self._clock()

    def heartbeat(self, worker: str, info: dict | None = None, keys: list | None = None) -> dict:
        """Feed the registry and extend the leases the worker names (the tasks it knows it holds).

        Only named leases are renewed: a lease whose grant never reached the worker (the reply was lost) is not
        named, expires, and its task runs again. The reply carries the master's timings, so a worker need not be
        configured with them.
        """
        with self._cond:
            w = self._touch(worker, info)
            now = self._clock()
            held = 0
            for k in keys if isinstance(keys, list) else ():
                key = tuple(k) if isinstance(k, (list, tuple)) and len(k) == 2 else None
                lease = self._leases.get(key) if key else None
                if lease is not None and lease.worker == w.id:
                    lease.deadline = now + self.lease_seconds
                    held += 1
            self._expire(now)
            return {"leases": held, "lease_seconds": self.lease_seconds, "heartbeat_seconds": self.heartbeat_seconds}

    def ack(self, worker: str, results: list[dict]) -> dict:
        """Record results; the first per task id wins, later ones are counted as dropped duplicates.

        The journal is written before memory changes: if it fails, nothing is recorded, the worker is told,
        and it sends the same results again later.
        """
        with self._cond:
            w = self._touch(worker, None)
            fresh: list[tuple[Job, dict]] = []
            classic, dupes, unknown = [], [], 0
            taken: set[tuple[str, int]] = set()
            for r in results if isinstance(results, list) else ():
                key = (r.get("job"), r.get("id")) if isinstance(r, dict) else (None, None)
                if key[0] == CLASSIC_JOB:
                    classic.append((key, r))
                    continue
                job = self._jobs.get(key[0])
                if job is None or key[1] not in job.tasks:
                    unknown += 1
                elif key[1] in job.done or key in taken:
                    dupes.append(job)
                else:
                    taken.add(key)
                    fresh.append((job, self._record(job, key[1], w, r)))
            rows, counters, seq = [], {}, {}
            for job, record in fresh:
                seq[job.id] = seq.get(job.id, len(job.results)) + 1
                rows.append((job.id, record["id"], seq[job.id], record))
                if seq[job.id] == len(job.tasks) and job.finished is None:  # this ack completes the job
                    counters.setdefault(job.id, {})["finished"] = time.time()
            for job in dupes:
                counters.setdefault(job.id, {})["duplicates_dropped"] = \
                    counters.get(job.id, {}).get("duplicates_dropped", job.duplicates_dropped) + 1
            if self._journal is not None and (rows or counters):
                self._journal.add_results(rows, counters)
            for job, record in fresh:
                self._leases.pop((job.id, record["id"]), None)
                job.add(record)
                w.done += 1
                w.errors += 0 if record["ok"] else 1
            for job_id, values in counters.items():
                job = self._jobs[job_id]
                job.finished = values.get("finished", job.finished)
                job.duplicates_dropped = values.get("duplicates_dropped", job.duplicates_dropped)
            w.duplicates += len(dupes)
            accepted = len(fresh)
            for key, r in classic:
                ok = self._ack_classic(key, r)
                accepted += ok
                w.done += ok
                w.duplicates += not ok
            if accepted:
                self._cond.notify_all()
            return {"accepted": accepted, "dropped": len(results) - accepted if isinstance(results, list) else 0}

    @staticmethod
    def _record(job: Job, task_id: int, w: Worker, r: dict) -> dict:
        """The stored form of a result: plain values only, so it journals and travels to any client."""
        ok, value, error = bool(r.get("ok")), r.get("value"), r.get("error")
        if ok and not isinstance(value, (int, float, str, type(None))):
            ok, value, error = False, None, f"the worker returned a {type(value).__name__}, not a plain value"
        if isinstance(value, str):
            value = value[:1000]
        elapsed = r.get("elapsed")
        return {"job": job.id, "id": task_id, "ok": ok, "value": value if ok else None,
                "error": None if ok else str(error)[:500], "worker": w.id, "ip": str(r.get("ip") or w.ip)[:64],
                "elapsed": elapsed if isinstance(elapsed, (int, float)) else None}

    def _ack_classic(self, key: tuple[str, int], r: dict) -> bool:
        item = self._classic.pop(key[1], None)
        if item is None:
            self._classic_stats["duplicates_dropped"] += 1
            return False
        self._leases.pop(key, None)
        self._classic_stats["done"] += 1
        if self._classic_results is not None:
            if r.get("ok") and isinstance(item, int):
                self._classic_results.put(kinds.classic_line(item))
            else:
                self._classic_results.put(f"error: task {item!r:.40}: {r.get('error')}")
        return True

    def release(self, worker: str, keys: list) -> int:
        """Hand back tasks this worker holds but will not finish (it is stopping): queued again at once."""
        n = 0
        with self._cond:
            self._touch(worker, None)
            for k in reversed(list(keys)):  # requeued at the front, so reversed keeps their order
                key = tuple(k) if isinstance(k, (list, tuple)) and len(k) == 2 else None
                lease = self._leases.get(key) if key else None
                if lease is None or lease.worker != worker:
                    continue
                del self._leases[key]
                self._requeue(key)
                job = self._jobs.get(key[0])
                if job is not None:
                    job.handed_back += 1
                    self._journal_counter(job, "handed_back")
                n += 1
            if n:
                self._cond.notify_all()
        return n

    def goodbye(self, worker: str) -> int:
        """A worker is leaving: hand back whatever it still holds and mark it left."""
        with self._cond:
            held = [key for key, lease in self._leases.items() if lease.worker == worker]
        n = self.release(worker, held)
        with self._cond:
            w = self._workers.get(worker)
            if w is not None:
                w.state = "left"
                self.events.append(f"worker {worker} left" + (f", handing back {n} tasks" if n else ""))
        return n

    def results(self, job_id: str, cursor: int = 0, wait_s: float = 0.0, limit: int = 5000):
        """Results of a job from ``cursor`` on: (next cursor, [result, ...], summary). Long-polls up to wait_s."""
        with self._cond:
            job = self._jobs.get(job_id)
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
            return cursor + len(chunk), chunk, job.summary()

    def expire(self) -> int:
        """Requeue expired leases and mark silent workers gone (the master calls this twice a second)."""
        with self._cond:
            return self._expire(self._clock())

    def has_unfinished(self, prefix: str) -> bool:
        with self._cond:
            return any(j.id.startswith(prefix) and not j.complete for j in self._jobs.values())

    def drain_events(self) -> list[str]:
        with self._cond:
            out = list(self.events)
            self.events.clear()
            return out

    def status(self) -> dict:
        """The cluster as the master sees it: registry, queues, jobs (no secrets)."""
        with self._cond:
            now = self._clock()
            self._expire(now)
            held: dict[str, int] = {}
            for lease in self._leases.values():
                held[lease.worker] = held.get(lease.worker, 0) + 1
            workers = [
                {"id": w.id, "ip": w.ip, "state": w.state, "last_heartbeat_s": round(now - w.last_seen, 2),
                 "leased": held.get(w.id, 0), "done": w.done, "errors": w.errors, "duplicates": w.duplicates,
                 "python": w.info.get("python", ""), "host": w.info.get("host", ""), "mode": w.info.get("mode", "")}
                for w in self._workers.values()
            ]
            return {
                "master": {"python": sys.version.split()[0], "uptime_s": round(time.time() - self.started, 1),
                           "lease_seconds": self.lease_seconds, "heartbeat_seconds": self.heartbeat_seconds,
                           "restarts": self.master_restarts, "journal": self._journal is not None},
                "workers": workers,
                "alive": sum(1 for w in workers if w["state"] == "alive"),
                "queues": {
                    "pending": len(self._pending), "leased": len(self._leases),
                    "classic_tasks": self._classic_tasks.qsize() if self._classic_tasks is not None else 0,
                    "classic_results": self._classic_results.qsize() if self._classic_results is not None else 0,
                },
                "classic": dict(self._classic_stats),
                "jobs": [j.summary() for j in list(self._jobs.values())[-20:]],
            }

    def _prune(self, incoming: int = 0) -> None:
        """Forget finished jobs, oldest first, while there are too many or they hold too many tasks."""
        finished = sorted((j for j in self._jobs.values() if j.finished is not None), key=lambda j: j.finished)
        held = sum(len(j.tasks) for j in self._jobs.values()) + incoming
        kept = len(finished)
        for job in finished:
            if kept <= KEEP_FINISHED_JOBS and held <= MAX_HELD_TASKS:
                break
            if time.time() - job.finished < KEEP_FINISHED_SECONDS:
                break  # its client may still be reading it
            del self._jobs[job.id]
            if self._journal is not None:
                self._journal.drop_job(job.id)
            kept -= 1
            held -= len(job.tasks)
