"""A submit call checked before anything changes: a job's options and a run of its tasks' arguments, each task's
arguments a JSON object (a built-in kind's checked and normalised here, a user kind's by its worker), refused with
one clear line otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from .. import kinds
from ..protocol import (
    CLASSIC_JOB,
    DEFAULT_MAX_ATTEMPTS,
    ID_RULE,
    MAX_ARGS_BYTES,
    MAX_CHUNK,
    MAX_TASKS_PER_JOB,
    to_json,
    valid_id,
)


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
