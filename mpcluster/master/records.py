"""Results as the master records them: the stored form of a result (JSON values only) and the plan one
acknowledgement makes before anything changes (the journal is written first, then memory)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol import CLASSIC_JOB, MAX_TRACEBACK_CHARS, to_json
from .jobs import JobState, JobStatus


@dataclass
class AckPlan:
    """What one ack will change, computed before anything changes (the journal is written first)."""

    fresh: list[tuple[JobState, dict]] = field(default_factory=list)  # (job, record)
    dupes: list[tuple[JobState, str]] = field(default_factory=list)  # (job, worker)
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
                 "traceback": str(e.get("traceback") or "")[: MAX_TRACEBACK_CHARS + 10]}
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


def plan_ack(book, results: list[dict], worker: str, ip: str, now: float) -> AckPlan:
    """Sort one ack's results into fresh ones (as records), duplicates, classic ones and dropped ones, with the
    journal rows and counters that record them, changing nothing: the journal is written before
    ``JobBook.apply``. ``book`` finds each result's job."""
    plan, taken, last = AckPlan(), set(), None
    for r in results:
        job_id, i = r.get("job"), r.get("id")
        if job_id == CLASSIC_JOB and isinstance(i, int):
            plan.classic.append(r)
            continue
        job = last if last is not None and last.id == job_id else book.get(job_id)  # an ack is mostly one job
        last = job
        if job is None or isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < job.added \
                or job.status is JobStatus.CANCELLED:
            plan.dropped += 1  # not a task of ours, or of a job forgotten or cancelled since
        elif job.done[i] or (job_id, i) in taken:
            plan.dupes.append((job, worker))
        else:
            taken.add((job_id, i))
            plan.fresh.append((job, result_record(i, worker, ip, r, job.attempts[i] + 1)))
    _rows(plan, now)
    return plan

def plan_poisoned(poisoned: list, now: float) -> AckPlan:
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


def _rows(plan: AckPlan, now: float) -> None:
    """The journal's rows and counters for a plan's fresh results and duplicates (in the plan)."""
    seq: dict[str, int] = {}
    for job, rec in plan.fresh:
        seq[job.id] = seq.get(job.id, job.n_done) + 1
        text = record_json(rec)  # first: it may turn a non-JSON value into an error
        plan.rows.append((job.id, seq[job.id], rec["id"], rec["worker"], int(rec["ok"]), rec["elapsed"], text))
        if seq[job.id] == job.added and job.closed and job.status is JobStatus.RUNNING:  # this ack completes it
            plan.counters.setdefault(job.id, {}).update(finished=now, state=JobStatus.DONE.value)
    for job, _ in plan.dupes:
        c = plan.counters.setdefault(job.id, {})
        c["duplicates_dropped"] = c.get("duplicates_dropped", job.duplicates_dropped) + 1
