"""The book of jobs: every job the master holds, which of them have tasks waiting, acks planned then applied,
requeues (and poisoned tasks), cancellation, restore from the journal, and which finished jobs may be forgotten.

No lock and no clock of its own: the dispatcher holds the lock and passes ``now``.
"""

from __future__ import annotations

from ..protocol import Key
from .jobs import JobState, JobStatus
from .leases import LeaseTable
from .records import AckPlan
from .submission import Chunk

#: Tasks the journal holds for running and finished jobs together (about 200 bytes each on disk).
MAX_HELD_TASKS = 3_000_000
#: Finished jobs kept at most (oldest forgotten first) ...
KEEP_FINISHED_JOBS = 50
#: ... but a finished job stays readable at least this long, whatever the bounds say: its client may be reading.
KEEP_FINISHED_SECONDS = 60.0


class JobBook:
    """Every job the master holds, and which of them have tasks waiting (oldest job first)."""

    def __init__(self, max_held: int = MAX_HELD_TASKS) -> None:
        self.jobs: dict[str, JobState] = {}
        self.runnable: dict[str, JobState] = {}  # running jobs that may have tasks to lease, in submission order
        self.max_held = max_held

    def get(self, job_id: object) -> JobState | None:
        return self.jobs.get(job_id) if isinstance(job_id, str) else None

    def pending(self, leases: LeaseTable) -> int:
        """Tasks waiting to be leased, over every running job."""
        return sum(j.pending(leases.of_job(j.id)) for j in self.runnable.values())

    def held(self) -> int:
        return sum(j.added for j in self.jobs.values())

    def check_room(self, incoming: int) -> None:
        """ValueError with one clear line if ``incoming`` more tasks would exceed what the master may hold."""
        held = self.held()
        if held + incoming > self.max_held:
            raise ValueError(
                f"the master already holds {held} tasks of running or just-finished jobs; with these {incoming} it "
                f"would exceed {self.max_held}: wait for jobs to finish or submit fewer tasks")

    def open(self, c: Chunk, now: float) -> JobState:
        job = self.jobs[c.job_id] = JobState(c.job_id, c.kind, now, c.task_timeout, c.max_attempts)
        self.runnable[job.id] = job
        return job

    def fresh_of(self, job: JobState, c: Chunk) -> list[str]:
        """The tasks of a chunk that the job does not have yet (a chunk sent again after a lost reply adds only
        what is new); ValueError with one clear line if the job takes no more, or the chunk does not fit."""
        if job.status is JobStatus.CANCELLED:
            raise ValueError(f"job {c.job_id} was cancelled: it takes no more tasks")
        if job.closed and c.first + len(c.args) > job.added:
            raise ValueError(f"job {c.job_id} is closed (its last chunk arrived): it takes no more tasks")
        if c.first > job.added:
            raise ValueError(f"job {c.job_id} has {job.added} tasks; a chunk must start there, not at {c.first}")
        return c.args[job.added - c.first:]

    def is_cancelled(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.status is JobStatus.CANCELLED

    def extend(self, job: JobState, n: int, closed: bool, now: float) -> None:
        """Tasks of a chunk the journal now holds; a closed job with every result in is done."""
        job.grow(n)
        job.closed = job.closed or closed
        if job.complete and job.status is JobStatus.RUNNING:
            job.status, job.finished = JobStatus.DONE, now
            self.runnable.pop(job.id, None)

    def take(self, n: int, kinds: set[str] | None) -> list[tuple[JobState, int]]:
        """Up to n tasks to lease, requeued ones first, from the oldest job whose kind is wanted."""
        out: list[tuple[JobState, int]] = []
        for job in list(self.runnable.values()):
            if len(out) >= n:
                break
            if kinds is not None and job.kind not in kinds:
                continue
            while job.retry and len(out) < n:
                i = job.retry[0]
                if job.done[i]:  # a late result arrived since it was requeued
                    job.retry.popleft()
                elif job.attempts[i]:
                    # A task whose worker died holding it goes out alone: if it is what kills workers, it takes
                    # no innocent batch-mates down with it (and their attempts stay honest).
                    if not out:
                        out.append((job, job.retry.popleft()))
                    n = len(out)
                    break
                else:
                    out.append((job, job.retry.popleft()))
            i = job.next_fresh
            while len(out) < n and i < job.added:
                i = job.done.find(0, i, job.added)  # restored jobs have done tasks among the fresh ones
                if i < 0:
                    i = job.added
                    break
                out.append((job, i))
                i += 1
            job.next_fresh = i
        return out

    def tasks_of(self, taken: list[tuple[JobState, int]], journal) -> list[dict]:
        """The tasks ``take`` chose, as they travel to a worker (their arguments read from the journal)."""
        by_job: dict[str, list[int]] = {}
        for job, i in taken:
            by_job.setdefault(job.id, []).append(i)
        out = []
        for job_id, ids in by_job.items():
            job, args = self.jobs[job_id], journal.task_args(job_id, ids)
            out += [{"job": job_id, "id": i, "kind": job.kind, "args": args[i], "timeout": job.task_timeout,
                     "attempt": job.attempts[i] + 1} for i in ids]
        return out

    def requeue(self, ended: list[tuple[Key, str]], redelivery: bool) -> tuple[dict[str, dict], list]:
        """Tasks whose lease ended unacknowledged ((key, holder), in grant order) go back to the front of their
        job's queue, in order: a redelivery (the holder died or was cut off) or handed back (it is stopping).

        A redelivered task whose worker died ``max_attempts`` times is *poisoned*: not queued again. Returns the
        changed job counters (for the journal) and the poisoned (job, task id, holder, attempts)."""
        counters, poisoned, again = {}, [], {}
        for key, holder in ended:
            job = self.jobs.get(key[0])
            if job is None or job.status is not JobStatus.RUNNING or job.done[key[1]]:
                continue
            i = key[1]
            if redelivery:
                job.attempts[i] = min(255, job.attempts[i] + 1)
                job.redeliveries += 1
                job.tally_of(holder).redeliveries += 1
                c = counters.setdefault(job.id, {})
                c.update(redeliveries=job.redeliveries, per_worker=job.per_worker_json())
                if job.attempts[i] >= job.max_attempts:
                    poisoned.append((job, i, holder, job.attempts[i]))
                    continue
            else:
                job.handed_back += 1
                counters.setdefault(job.id, {})["handed_back"] = job.handed_back
            again.setdefault(job.id, []).append(i)
        for job_id, ids in again.items():
            self.jobs[job_id].retry.extendleft(reversed(ids))
        return counters, poisoned

    def apply(self, plan: AckPlan, now: float) -> None:
        for job, rec in plan.fresh:
            job.done[rec["id"]] = 1
            job.n_done += 1
            t = job.tally_of(rec["worker"])
            t.tasks += 1
            t.seconds += rec["elapsed"] or 0.0
            if not rec["ok"]:
                job.errors += 1
                t.errors += 1
        for job, worker in plan.dupes:
            job.duplicates_dropped += 1
            job.tally_of(worker).duplicates_dropped += 1
        for job_id, values in plan.counters.items():
            job = self.jobs[job_id]
            job.poisoned = values.get("poisoned", job.poisoned)
            if job.complete and job.status is JobStatus.RUNNING:
                job.status, job.finished = JobStatus.DONE, now
                self.runnable.pop(job_id, None)

    def cancel(self, job: JobState, now: float) -> dict:
        """Drop a running job's waiting tasks; returns the journal's counters. Leased ones are told to stop."""
        job.status, job.finished = JobStatus.CANCELLED, now
        job.retry.clear()
        self.runnable.pop(job.id, None)
        return {"state": job.status.value, "finished": now}

    def restore_all(self, rows: list[dict]) -> list[JobState]:
        """Every job the journal kept (``Journal.load()``); returns the running ones, queued again."""
        return [job for job in map(self.restore, rows) if job.status is JobStatus.RUNNING]

    def restore(self, row: dict) -> JobState:
        """A job as the journal kept it; a running one counts a master restart and its tasks queue again."""
        job = self.jobs[row["id"]] = JobState.from_journal(row)
        if job.status is JobStatus.RUNNING:
            job.restarts += 1
            self.runnable[job.id] = job
        return job

    def prunable(self, now: float, incoming: int = 0) -> list[JobState]:
        """Finished jobs to forget, oldest first, while there are too many or they hold too many tasks."""
        finished = sorted((j for j in self.jobs.values() if j.finished is not None), key=lambda j: j.finished)
        held, kept, out = self.held() + incoming, len(finished), []
        for job in finished:
            if kept <= KEEP_FINISHED_JOBS and held <= self.max_held:
                break
            if now - job.finished < KEEP_FINISHED_SECONDS:
                break
            out.append(job)
            kept -= 1
            held -= job.added
        return out

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        self.runnable.pop(job_id, None)

    def newest_with_prefix(self, prefix: str) -> JobState | None:
        return max((j for j in self.jobs.values() if j.id.startswith(prefix)), key=lambda j: j.created, default=None)

    def recent(self, now: float, n: int = 20) -> list[dict]:
        return [j.summary(now).as_dict() for j in list(self.jobs.values())[-n:]]
