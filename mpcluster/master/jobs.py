"""Jobs as the master holds them: what was submitted, what came back, and a job's summary.

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

from ..protocol import DEFAULT_MAX_ATTEMPTS


class JobStatus(Enum):
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
class JobState:
    """What the master knows of one job. Not to be confused with ``mpcluster.client.Job``, a client's handle on a
    job it follows. How many of its tasks are leased right now is the lease table's to count, not this record's."""

    id: str
    kind: str
    created: float
    task_timeout: float | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    added: int = 0  # tasks received so far
    closed: bool = False  # the last chunk arrived
    status: JobStatus = JobStatus.RUNNING
    finished: float | None = None
    done: bytearray = field(default_factory=bytearray)  # done[i] == 1 once task i's result is recorded
    attempts: bytearray = field(default_factory=bytearray)  # times task i's worker died holding it (max 255)
    n_done: int = 0  # == number of results recorded == the last result's sequence number
    errors: int = 0
    next_fresh: int = 0  # tasks [next_fresh, added) were never leased (those done since a restore are skipped)
    retry: deque = field(default_factory=deque)  # requeued ids, leased before fresh ones (done ones are skipped)
    redeliveries: int = 0
    duplicates_dropped: int = 0
    handed_back: int = 0
    restarts: int = 0
    poisoned: int = 0
    tally: dict[str, Tally] = field(default_factory=dict)

    def pending(self, leased: int) -> int:
        """Tasks waiting to be leased (neither done nor among the ``leased`` ones the lease table counts)."""
        return self.added - self.n_done - leased if self.status is JobStatus.RUNNING else 0

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
            job=self.id, kind=self.kind, state=self.status.value, tasks=self.added, done=self.n_done,
            errors=self.errors, complete=self.complete, redeliveries=self.redeliveries,
            duplicates_dropped=self.duplicates_dropped, handed_back=self.handed_back, poisoned=self.poisoned,
            master_restarts=self.restarts, workers={w: t.tasks for w, t in self.tally.items() if t.tasks},
            per_worker={w: t.shown() for w, t in self.tally.items()}, seconds=round(seconds, 3),
            created=round(self.created, 3), finished=self.finished, rate=round(rate, 2),
            eta_s=round(left / rate, 1) if rate > 0 and left and self.status is JobStatus.RUNNING else None,
            task_timeout=self.task_timeout, max_attempts=self.max_attempts)

    def tally_of(self, worker: str) -> Tally:
        t = self.tally.get(worker)
        if t is None:
            t = self.tally[worker] = Tally()
        return t

    @classmethod
    def from_journal(cls, row: dict) -> JobState:
        """A job from ``Journal.load()``'s row: its columns, the ids done, and per-worker figures."""
        job = cls(row["id"], row["kind"], row["created"], row["task_timeout"], row["max_attempts"],
                  closed=bool(row["closed"]), status=JobStatus(row["state"]), finished=row["finished"],
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
