"""Jobs: what was submitted, what is pending, what came back, and when a finished job may be forgotten.

A job is a list of tasks with ids; its results arrive in any order and are kept in arrival order, so a client
reads them with a cursor and resumes after a reconnection. The first result per task id counts.

No lock and no clock of its own: the dispatcher holds the lock and passes ``now`` (wall-clock seconds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from . import tasks as kinds
from .protocol import CLASSIC_JOB, ID_RULE, valid_id

#: Memory bounds (measured: up to ~2 kB per task and its result in the master, whose limit is 1 GB).
MAX_TASKS_PER_JOB = 200_000
#: Tasks of unfinished jobs plus finished jobs still kept for their readers.
MAX_HELD_TASKS = 300_000
#: Finished jobs kept at most (oldest forgotten first) ...
KEEP_FINISHED_JOBS = 50
#: ... but a finished job stays readable at least this long, whatever the bounds say: its client may be reading.
KEEP_FINISHED_SECONDS = 60.0

Key = tuple[str, int]


@dataclass
class JobSummary:
    """A job as `submit`, `status` and the journal's readers see it."""

    job: str
    kind: str
    state: str  # running | done
    tasks: int
    done: int
    errors: int
    complete: bool
    redeliveries: int
    duplicates_dropped: int
    handed_back: int
    master_restarts: int
    workers: dict[str, int]
    seconds: float
    created: float
    finished: float | None
    rate: float  # results per second so far
    eta_s: float | None  # at that rate, until the last result

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Job:
    id: str
    tasks: dict[int, dict]  # task id -> {"id", "kind", "args"}
    created: float
    finished: float | None = None
    results: list[dict] = field(default_factory=list)  # in arrival order: a reader's cursor indexes this
    done: set[int] = field(default_factory=set)
    redeliveries: int = 0
    duplicates_dropped: int = 0
    handed_back: int = 0
    restarts: int = 0
    errors: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)
    kind: str = ""  # the tasks' kind, or "mixed"

    def __post_init__(self) -> None:
        kinds = {t["kind"] for t in self.tasks.values()}
        self.kind = kinds.pop() if len(kinds) == 1 else "mixed"

    def add(self, record: dict) -> None:
        self.done.add(record["id"])
        self.results.append(record)
        self.errors += 0 if record.get("ok") else 1
        w = record.get("worker", "?")
        self.per_worker[w] = self.per_worker.get(w, 0) + 1

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.tasks)

    def summary(self, now: float) -> JobSummary:
        seconds = max(0.0, (self.finished or now) - self.created)
        done, total = len(self.done), len(self.tasks)
        rate = done / seconds if seconds > 0 else 0.0
        return JobSummary(
            job=self.id, kind=self.kind,
            state="done" if self.complete else "running", tasks=total, done=done, errors=self.errors,
            complete=self.complete, redeliveries=self.redeliveries, duplicates_dropped=self.duplicates_dropped,
            handed_back=self.handed_back, master_restarts=self.restarts, workers=dict(self.per_worker),
            seconds=round(seconds, 3), created=round(self.created, 3), finished=self.finished,
            rate=round(rate, 2), eta_s=round((total - done) / rate, 1) if rate > 0 and done < total else None)


@dataclass
class AckPlan:
    fresh: list[tuple[Job, dict]] = field(default_factory=list)
    dupes: list[Job] = field(default_factory=list)
    classic: list[dict] = field(default_factory=list)
    rows: list[tuple[str, int, int, dict]] = field(default_factory=list)  # (job, task id, seq, record)
    counters: dict[str, dict] = field(default_factory=dict)  # job -> {column: value}


def result_record(job_id: str, task_id: int, worker: str, ip: str, r: dict) -> dict:
    """The stored form of a result: plain values only, so it journals and travels to any client."""
    ok, value, error = bool(r.get("ok")), r.get("value"), r.get("error")
    if ok and not isinstance(value, (int, float, str, type(None))):
        ok, value, error = False, None, f"the worker returned a {type(value).__name__}, not a plain value"
    if isinstance(value, str):
        value = value[:1000]
    elapsed = r.get("elapsed")
    return {"job": job_id, "id": task_id, "ok": ok, "value": value if ok else None,
            "error": None if ok else str(error)[:500], "worker": worker, "ip": str(r.get("ip") or ip)[:64],
            "elapsed": elapsed if isinstance(elapsed, (int, float)) else None}


def validate_job(job: object) -> tuple[str, list[dict]]:
    """A submitted job's id and normalised tasks; ValueError with one clear line if it is not acceptable."""
    if not isinstance(job, dict):
        raise ValueError(f"a job must be a dict with 'id' and 'tasks', got {type(job).__name__}")
    job_id, items = job.get("id"), job.get("tasks")
    if not valid_id(job_id) or job_id == CLASSIC_JOB:
        raise ValueError(f"job id {job_id!r:.70} is not valid: expected {ID_RULE}")
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
        try:
            args = kinds.validate(t.get("kind"), t.get("args", {}))
        except kinds.TaskError as e:
            raise ValueError(f"task {tid}: {e}") from None
        out.append({"id": tid, "kind": t["kind"], "args": args})
    return job_id, out


class JobBook:
    """Every job the master holds, and the queue of pending task keys (oldest job first)."""

    def __init__(self, max_held: int = MAX_HELD_TASKS) -> None:
        self.jobs: dict[str, Job] = {}
        self.pending: deque[Key] = deque()
        self.max_held = max_held

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def held(self) -> int:
        return sum(len(j.tasks) for j in self.jobs.values())

    def check_room(self, incoming: int) -> None:
        """ValueError with one clear line if ``incoming`` more tasks would exceed what the master may hold."""
        held = self.held()
        if held + incoming > self.max_held:
            raise ValueError(
                f"the master already holds {held} tasks of running or just-finished jobs; with these {incoming} it "
                f"would exceed {self.max_held}: wait for jobs to finish or submit fewer tasks")

    def add(self, job_id: str, items: list[dict], now: float) -> Job:
        job = self.jobs[job_id] = Job(job_id, {t["id"]: t for t in items}, now)
        self.pending.extend((job_id, t["id"]) for t in items)
        return job

    def restore(self, row: dict) -> Job:
        """A job as the journal kept it; an unfinished one counts a master restart and its tasks queue again."""
        job = Job(row["id"], {t["id"]: t for t in row["tasks"]}, row["created"], finished=row["finished"],
                  redeliveries=row["redeliveries"], duplicates_dropped=row["duplicates_dropped"],
                  handed_back=row["handed_back"], restarts=row["restarts"])
        for rec in row["results"]:
            job.add(rec)
        self.jobs[job.id] = job
        if not job.complete:
            job.restarts += 1
            self.pending.extend((job.id, tid) for tid in job.tasks if tid not in job.done)
        return job

    def plan_ack(self, results: list[dict], worker: str, ip: str, now: float) -> AckPlan:
        """Sort one ack's results into fresh ones (as records), duplicates and classic ones, and the journal rows
        and counters that record them, without changing anything: the journal is written before ``apply``."""
        plan, taken = AckPlan(), set()
        for r in results:
            key = (r.get("job"), r.get("id"))
            if not isinstance(key[0], str) or isinstance(key[1], bool) or not isinstance(key[1], int):
                continue  # not a result of any task
            job = self.jobs.get(key[0])
            if key[0] == CLASSIC_JOB:
                plan.classic.append(r)
            elif job is None or key[1] not in job.tasks:
                continue  # not a task of ours (a job forgotten since): nothing to record
            elif key[1] in job.done or key in taken:
                plan.dupes.append(job)
            else:
                taken.add(key)
                plan.fresh.append((job, result_record(job.id, key[1], worker, ip, r)))
        seq: dict[str, int] = {}
        for job, rec in plan.fresh:
            seq[job.id] = seq.get(job.id, len(job.results)) + 1
            plan.rows.append((job.id, rec["id"], seq[job.id], rec))
            if seq[job.id] == len(job.tasks) and job.finished is None:  # this ack completes the job
                plan.counters.setdefault(job.id, {})["finished"] = now
        for job in plan.dupes:
            c = plan.counters.setdefault(job.id, {})
            c["duplicates_dropped"] = c.get("duplicates_dropped", job.duplicates_dropped) + 1
        return plan

    def apply(self, plan: AckPlan) -> None:
        for job, rec in plan.fresh:
            job.add(rec)
        for job_id, values in plan.counters.items():
            job = self.jobs[job_id]
            job.finished = values.get("finished", job.finished)
            job.duplicates_dropped = values.get("duplicates_dropped", job.duplicates_dropped)

    def take(self, n: int, leased: Callable[[Key], bool]) -> list[tuple[Job, dict]]:
        """Up to n pending tasks, skipping keys already done or leased (a requeued task can be both)."""
        out = []
        while self.pending and len(out) < n:
            key = self.pending.popleft()
            job = self.jobs.get(key[0])
            if job is None or key[1] in job.done or leased(key):
                continue
            out.append((job, job.tasks[key[1]]))
        return out

    def requeue(self, keys: list[Key], redelivery: bool) -> dict[str, dict]:
        """Put keys back at the front of the queue, keeping their order, and count each as a redelivery (its lease
        expired) or as handed back (its worker is stopping). Returns the changed counters, for the journal."""
        self.pending.extendleft(reversed(keys))
        name, changed = ("redeliveries" if redelivery else "handed_back"), {}
        for job_id, _ in keys:
            job = self.jobs.get(job_id)
            if job is not None:
                setattr(job, name, getattr(job, name) + 1)
                changed[job_id] = {name: getattr(job, name)}
        return changed

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
            held -= len(job.tasks)
        return out

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def newest_with_prefix(self, prefix: str) -> Job | None:
        return max((j for j in self.jobs.values() if j.id.startswith(prefix)), key=lambda j: j.created, default=None)

    def recent(self, now: float, n: int = 20) -> list[dict]:
        return [j.summary(now).as_dict() for j in list(self.jobs.values())[-n:]]
