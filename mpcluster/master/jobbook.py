"""The book of jobs: every job the master holds, which of them have tasks waiting, acks planned then applied,
requeues (and poisoned tasks), cancellation, restore from the journal, and which finished jobs may be forgotten.

No lock and no clock of its own: the dispatcher holds the lock and passes ``now``.
"""

from __future__ import annotations

from .jobs import (
    KEEP_FINISHED_JOBS,
    KEEP_FINISHED_SECONDS,
    MAX_HELD_TASKS,
    AckPlan,
    Chunk,
    Job,
    JobState,
    Key,
    record_json,
    result_record,
)
from .protocol import CLASSIC_JOB


class JobBook:
    """Every job the master holds, and which of them have tasks waiting (oldest job first)."""

    def __init__(self, max_held: int = MAX_HELD_TASKS) -> None:
        self.jobs: dict[str, Job] = {}
        self.runnable: dict[str, Job] = {}  # running jobs that may have tasks to lease, in submission order
        self.max_held = max_held

    def get(self, job_id: object) -> Job | None:
        return self.jobs.get(job_id) if isinstance(job_id, str) else None

    def pending(self) -> int:
        return sum(j.pending for j in self.runnable.values())

    def held(self) -> int:
        return sum(j.added for j in self.jobs.values())

    def check_room(self, incoming: int) -> None:
        """ValueError with one clear line if ``incoming`` more tasks would exceed what the master may hold."""
        held = self.held()
        if held + incoming > self.max_held:
            raise ValueError(
                f"the master already holds {held} tasks of running or just-finished jobs; with these {incoming} it "
                f"would exceed {self.max_held}: wait for jobs to finish or submit fewer tasks")

    def open(self, c: Chunk, now: float) -> Job:
        job = self.jobs[c.job_id] = Job(c.job_id, c.kind, now, c.task_timeout, c.max_attempts)
        self.runnable[job.id] = job
        return job

    def extend(self, job: Job, n: int, closed: bool, now: float) -> None:
        """Tasks of a chunk the journal now holds; a closed job with every result in is done."""
        job.grow(n)
        job.closed = job.closed or closed
        if job.complete and job.state is JobState.RUNNING:
            job.state, job.finished = JobState.DONE, now
            self.runnable.pop(job.id, None)

    def take(self, n: int, kinds: set[str] | None) -> list[tuple[Job, int]]:
        """Up to n tasks to lease, requeued ones first, from the oldest job whose kind is wanted."""
        out: list[tuple[Job, int]] = []
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
        for job, _ in out:
            job.leased += 1
        return out

    def lease_ended(self, key: Key) -> Job | None:
        job = self.jobs.get(key[0])
        if job is not None:
            job.leased -= 1
        return job

    def requeue(self, ended: list[tuple[Key, str]], redelivery: bool) -> tuple[dict[str, dict], list]:
        """Tasks whose lease ended unacknowledged ((key, holder), in grant order) go back to the front of their
        job's queue, in order: a redelivery (the holder died or was cut off) or handed back (it is stopping).

        A redelivered task whose worker died ``max_attempts`` times is *poisoned*: not queued again. Returns the
        changed job counters (for the journal) and the poisoned (job, task id, holder, attempts)."""
        counters, poisoned, again = {}, [], {}
        for key, holder in ended:
            job = self.lease_ended(key)
            if job is None or job.state is not JobState.RUNNING or job.done[key[1]]:
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

    def plan_ack(self, results: list[dict], worker: str, ip: str, now: float) -> AckPlan:
        """Sort one ack's results into fresh ones (as records), duplicates, classic ones and dropped ones, with the
        journal rows and counters that record them, changing nothing: the journal is written before ``apply``."""
        plan, taken, last = AckPlan(), set(), None
        for r in results:
            job_id, i = r.get("job"), r.get("id")
            if job_id == CLASSIC_JOB and isinstance(i, int):
                plan.classic.append(r)
                continue
            job = last if last is not None and last.id == job_id else self.get(job_id)  # an ack is mostly one job
            last = job
            if job is None or isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < job.added \
                    or job.state is JobState.CANCELLED:
                plan.dropped += 1  # not a task of ours, or of a job forgotten or cancelled since
            elif job.done[i] or (job_id, i) in taken:
                plan.dupes.append((job, worker))
            else:
                taken.add((job_id, i))
                plan.fresh.append((job, result_record(i, worker, ip, r, job.attempts[i] + 1)))
        _rows(plan, now)
        return plan

    def plan_poisoned(self, poisoned: list, now: float) -> AckPlan:
        """Error results for poisoned tasks, recorded like any other result."""
        plan = AckPlan()
        for job, i, holder, attempts in poisoned:
            error = {"type": "PoisonTask", "message": f"its worker died or was cut off {attempts} times while running "
                     f"it (max attempts {job.max_attempts}): given up", "traceback": ""}
            plan.fresh.append((job, result_record(i, holder, "", {"ok": False, "error": error}, attempts)))
            c = plan.counters.setdefault(job.id, {})
            c["poisoned"] = c.get("poisoned", job.poisoned) + 1
        _rows(plan, now)
        return plan

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
            if job.complete and job.state is JobState.RUNNING:
                job.state, job.finished = JobState.DONE, now
                self.runnable.pop(job_id, None)

    def cancel(self, job: Job, now: float) -> dict:
        """Drop a running job's waiting tasks; returns the journal's counters. Leased ones are told to stop."""
        job.state, job.finished = JobState.CANCELLED, now
        job.retry.clear()
        self.runnable.pop(job.id, None)
        return {"state": job.state.value, "finished": now}

    def restore(self, row: dict) -> Job:
        """A job as the journal kept it; a running one counts a master restart and its tasks queue again."""
        job = self.jobs[row["id"]] = Job.from_journal(row)
        if job.state is JobState.RUNNING:
            job.restarts += 1
            self.runnable[job.id] = job
        return job

    def prunable(self, now: float, incoming: int = 0) -> list[Job]:
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

    def newest_with_prefix(self, prefix: str) -> Job | None:
        return max((j for j in self.jobs.values() if j.id.startswith(prefix)), key=lambda j: j.created, default=None)

    def recent(self, now: float, n: int = 20) -> list[dict]:
        return [j.summary(now).as_dict() for j in list(self.jobs.values())[-n:]]


def _rows(plan: AckPlan, now: float) -> None:
    """The journal's rows and counters for a plan's fresh results and duplicates (in the plan)."""
    seq: dict[str, int] = {}
    for job, rec in plan.fresh:
        seq[job.id] = seq.get(job.id, job.n_done) + 1
        text = record_json(rec)  # first: it may turn a non-JSON value into an error
        plan.rows.append((job.id, seq[job.id], rec["id"], rec["worker"], int(rec["ok"]), rec["elapsed"], text))
        if seq[job.id] == job.added and job.closed and job.state is JobState.RUNNING:  # this ack completes it
            plan.counters.setdefault(job.id, {}).update(finished=now, state=JobState.DONE.value)
    for job, _ in plan.dupes:
        c = plan.counters.setdefault(job.id, {})
        c["duplicates_dropped"] = c.get("duplicates_dropped", job.duplicates_dropped) + 1
