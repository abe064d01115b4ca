"""Jobs: what was submitted, what is pending, what came back, and when a finished job may be forgotten.

A job is one task kind and a list of argument sets; task ids are their positions (0, 1, 2, ...). It arrives in
chunks (so no single call carries a million tasks) and is *closed* by its last chunk. Memory holds two bytes per
task (done, attempts) and a queue position; the arguments and results live in the journal. Results arrive in any
order and are numbered in arrival order, so a reader follows a job with a cursor and resumes after a reconnection.
The first result per task counts.

No lock and no clock of its own: the dispatcher holds the lock and passes ``now`` (wall-clock seconds).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from enum import Enum

from . import tasks as kinds
from .protocol import CLASSIC_JOB, ID_RULE, valid_id

#: Most tasks in one job.
MAX_TASKS_PER_JOB = 1_000_000
#: Most tasks in one submit call: a bigger job comes in several.
MAX_CHUNK = 50_000
#: Tasks the journal holds for running and finished jobs together (about 200 bytes each on disk).
MAX_HELD_TASKS = 3_000_000
#: One task's arguments as JSON text at most (they are stored and sent to a worker).
MAX_ARGS_BYTES = 64 * 1024
#: Finished jobs kept at most (oldest forgotten first) ...
KEEP_FINISHED_JOBS = 50
#: ... but a finished job stays readable at least this long, whatever the bounds say: its client may be reading.
KEEP_FINISHED_SECONDS = 60.0
#: A task whose lease ended with its worker dead this many times fails instead of killing the next worker.
DEFAULT_MAX_ATTEMPTS = 3

Key = tuple[str, int]

#: JSON text as stored and sent: compact, and strict (NaN and infinities are not JSON). One encoder for all calls:
#: json.dumps with options would build a new one each time, which costs more than the encoding of a small task.
to_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class JobState(Enum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass
class Tally:
    """One worker's part in one job."""

    tasks: int = 0
    seconds: float = 0.0  # summed task times
    errors: int = 0
    redeliveries: int = 0  # leases that expired while it held them
    duplicates_dropped: int = 0  # its late results, dropped

    def shown(self) -> dict:
        """As status and summaries show it: summed seconds to the millisecond (a sum of floats is 0.8017000000000001)."""
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@dataclass
class JobSummary:
    """A job as `submit`, `status` and the page see it."""

    job: str
    kind: str
    state: str
    tasks: int
    done: int
    errors: int
    complete: bool
    redeliveries: int
    duplicates_dropped: int
    handed_back: int
    poisoned: int
    master_restarts: int
    workers: dict[str, int]
    per_worker: dict[str, dict]
    seconds: float
    created: float
    finished: float | None
    rate: float  # results per second so far
    eta_s: float | None  # at that rate, until the last result
    task_timeout: float | None
    max_attempts: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Job:
    id: str
    kind: str
    created: float
    task_timeout: float | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    added: int = 0  # tasks received so far
    closed: bool = False  # the last chunk arrived
    state: JobState = JobState.RUNNING
    finished: float | None = None
    done: bytearray = field(default_factory=bytearray)  # done[i] == 1 once task i's result is recorded
    attempts: bytearray = field(default_factory=bytearray)  # times task i's worker died holding it (max 255)
    n_done: int = 0  # == number of results recorded == the last result's sequence number
    errors: int = 0
    next_fresh: int = 0  # tasks [next_fresh, added) were never leased (those done since a restore are skipped)
    retry: deque = field(default_factory=deque)  # requeued ids, leased before fresh ones (done ones are skipped)
    leased: int = 0  # tasks of this job under a lease right now
    redeliveries: int = 0
    duplicates_dropped: int = 0
    handed_back: int = 0
    restarts: int = 0
    poisoned: int = 0
    tally: dict[str, Tally] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        """Tasks waiting to be leased (neither done nor leased)."""
        return self.added - self.n_done - self.leased if self.state is JobState.RUNNING else 0

    @property
    def complete(self) -> bool:
        return self.closed and self.n_done == self.added

    def grow(self, n: int) -> None:
        self.added += n
        self.done.extend(bytes(n))
        self.attempts.extend(bytes(n))

    def summary(self, now: float) -> JobSummary:
        seconds = max(0.0, (self.finished or now) - self.created)
        rate = self.n_done / seconds if seconds > 0 else 0.0
        left = self.added - self.n_done
        return JobSummary(
            job=self.id, kind=self.kind, state=self.state.value, tasks=self.added, done=self.n_done,
            errors=self.errors, complete=self.complete, redeliveries=self.redeliveries,
            duplicates_dropped=self.duplicates_dropped, handed_back=self.handed_back, poisoned=self.poisoned,
            master_restarts=self.restarts, workers={w: t.tasks for w, t in self.tally.items() if t.tasks},
            per_worker={w: t.shown() for w, t in self.tally.items()}, seconds=round(seconds, 3),
            created=round(self.created, 3), finished=self.finished, rate=round(rate, 2),
            eta_s=round(left / rate, 1) if rate > 0 and left and self.state is JobState.RUNNING else None,
            task_timeout=self.task_timeout, max_attempts=self.max_attempts)

    def tally_of(self, worker: str) -> Tally:
        t = self.tally.get(worker)
        if t is None:
            t = self.tally[worker] = Tally()
        return t

    @classmethod
    def from_journal(cls, row: dict) -> Job:
        """A job from ``Journal.load()``'s row: its columns, the ids done, and per-worker figures."""
        job = cls(row["id"], row["kind"], row["created"], row["task_timeout"], row["max_attempts"],
                  closed=bool(row["closed"]), state=JobState(row["state"]), finished=row["finished"],
                  redeliveries=row["redeliveries"], duplicates_dropped=row["duplicates_dropped"],
                  handed_back=row["handed_back"], restarts=row["restarts"], poisoned=row["poisoned"])
        job.grow(row["added"])
        for i in row["done_ids"]:
            job.done[i] = 1
        job.n_done = len(row["done_ids"])
        for worker, counts in json.loads(row["per_worker"] or "{}").items():
            t = job.tally_of(worker)
            t.redeliveries, t.duplicates_dropped = counts.get("redeliveries", 0), counts.get("duplicates_dropped", 0)
        for worker, n, seconds, errors in row["by_worker"]:
            t = job.tally_of(worker)
            t.tasks, t.seconds, t.errors = n, seconds, errors
            job.errors += errors
        return job

    def per_worker_json(self) -> str:
        return json.dumps({w: asdict(t) for w, t in self.tally.items()})


@dataclass
class Chunk:
    """One validated submit call: a job's options (first chunk) and a run of tasks' arguments as JSON text."""

    job_id: str
    kind: str
    first: int
    args: list[str]
    more: bool
    task_timeout: float | None
    max_attempts: int


def validate_chunk(job: object) -> Chunk:
    """A submit call's job dict as a Chunk; ValueError with one clear line if it is not acceptable.

    ``{"id": str, "kind": str, "tasks": [args, ...], "first": int = 0, "more": bool = False,
    "task_timeout": float | None, "max_attempts": int = 3}``: arguments are JSON objects; a built-in kind's
    arguments are checked (and normalised) here, a user kind's by its worker.
    """
    if not isinstance(job, dict):
        raise ValueError(f"a job must be a dict with 'id', 'kind' and 'tasks', got {type(job).__name__}")
    job_id, kind, items = job.get("id"), job.get("kind"), job.get("tasks")
    first, more = job.get("first", 0), job.get("more", False)
    timeout, attempts = job.get("task_timeout"), job.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if not valid_id(job_id) or job_id == CLASSIC_JOB:
        raise ValueError(f"job id {job_id!r:.70} is not valid: expected {ID_RULE}")
    if not valid_id(kind):
        raise ValueError(f"task kind {kind!r:.70} is not valid: expected {ID_RULE}")
    if not isinstance(items, list) or len(items) > MAX_CHUNK:
        raise ValueError(f"'tasks' must be a list of at most {MAX_CHUNK} argument objects (send more in chunks)")
    if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= MAX_TASKS_PER_JOB:
        raise ValueError(f"'first' must be a task number from 0 to {MAX_TASKS_PER_JOB}, got {first!r:.40}")
    if first + len(items) > MAX_TASKS_PER_JOB:
        raise ValueError(f"a job has at most {MAX_TASKS_PER_JOB} tasks; this one would have {first + len(items)}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout <= 86400):
        raise ValueError(f"task_timeout={timeout!r:.40} is not valid: expected seconds from 0 to 86400 (or none)")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
        raise ValueError(f"max_attempts={attempts!r:.40} is not valid: expected a whole number from 1 to 100")
    return Chunk(job_id, kind, first, [_args_text(kind, first + i, a) for i, a in enumerate(items)],
                 bool(more), None if timeout is None else float(timeout), attempts)


def _args_text(kind: str, tid: int, args: object) -> str:
    if not isinstance(args, dict):
        raise ValueError(f"task {tid}: arguments must be a JSON object, got {type(args).__name__}")
    if kind in kinds.BUILTIN:
        try:
            args = kinds.validate(kind, args)
        except kinds.TaskError as e:
            raise ValueError(f"task {tid}: {e}") from None
    try:
        text = to_json(args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"task {tid}: arguments are not JSON ({e})") from None
    if len(text) > MAX_ARGS_BYTES:
        raise ValueError(f"task {tid}: arguments are {len(text)} bytes of JSON; at most {MAX_ARGS_BYTES} are allowed")
    return text


@dataclass
class AckPlan:
    """What one ack will change, computed before anything changes (the journal is written first)."""

    fresh: list[tuple[Job, dict]] = field(default_factory=list)  # (job, record)
    dupes: list[tuple[Job, str]] = field(default_factory=list)  # (job, worker)
    classic: list[dict] = field(default_factory=list)
    dropped: int = 0  # results of unknown or cancelled jobs
    rows: list = field(default_factory=list)  # journal.ResultRow
    counters: dict[str, dict] = field(default_factory=dict)  # job -> {column: value}


def result_record(task_id: int, worker: str, ip: str, r: dict, attempt: int) -> dict:
    """The stored form of a result: JSON values only, so it journals and travels to any client (``record_json``
    checks the value when it encodes the record)."""
    ok, value, error = bool(r.get("ok")), r.get("value"), r.get("error")
    if not ok:
        e = error if isinstance(error, dict) else {"type": "Error", "message": str(error)}
        error = {"type": str(e.get("type", "Error"))[:100], "message": str(e.get("message", ""))[:1000],
                 "traceback": str(e.get("traceback") or "")[: kinds.MAX_TRACEBACK_CHARS + 10]}
    elapsed = r.get("elapsed")
    return {"id": task_id, "ok": ok, "value": value if ok else None, "error": None if ok else error,
            "worker": worker, "ip": str(r.get("ip") or ip)[:64], "attempt": attempt,
            "elapsed": round(elapsed, 6) if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool)
            else None}



def record_json(rec: dict) -> str:
    """A result record as JSON text; a value that is not JSON becomes an error result saying so (in ``rec`` too)."""
    try:
        return to_json(rec)
    except (TypeError, ValueError):
        rec.update(ok=False, error={"type": "TaskError", "message": f"the worker returned a "
                                    f"{type(rec['value']).__name__}, not a JSON value", "traceback": ""}, value=None)
        return to_json(rec)
