"""The wire protocol every role shares: the manager's typeids, the names that travel, the task key, the limits,
and the errors a connection can end in. Nothing here opens a socket (``link.py`` does, for clients and workers).

Records on the wire are plain dicts, lists, strs and numbers, so any Python >= 3.11 on either end can read them.
The dispatcher's calls a worker makes (each a method on the ``get_dispatcher`` proxy):

``lease(worker, max_n, wait_s, info, kinds)`` -> [task, ...]
    Long-poll up to ``wait_s`` for up to ``max_n`` tasks of the ``kinds`` named (None: any kind). A task:
    ``{"job": str, "id": int, "kind": str, "args": str (a JSON object's text), "timeout": float | None,
    "attempt": int}`` (``attempt`` counts from 1; ``timeout`` is the job's per-task time limit in seconds).
``heartbeat(worker, info, keys)`` -> ``{"leases": int, "lease_seconds": float, "heartbeat_seconds": float,
    "cancel": [[job, id], ...]}``
    Renews the leases named in ``keys`` ([[job, id], ...]: the tasks the worker knows it holds, done or not, until
    acknowledged or handed back) and no others. ``cancel`` lists named keys whose job was cancelled: stop them
    and drop their results. The worker heartbeats every ``heartbeat_seconds`` (the master's setting).
``ack(worker, [result, ...])`` -> ``{"accepted": int, "dropped": int}``
    A result: ``{"job": str, "id": int, "ok": bool, "value": JSON value (ok), "error": {"type": str,
    "message": str, "traceback": str} (not ok), "elapsed": float, "ip": str}``.
``release(worker, [[job, id], ...])`` -> int: hand back tasks not started (a stopping worker).
``goodbye(worker)`` -> int: leaving; hands back whatever is still leased to it.

``info`` is what the worker says about itself: ``{"session": str (one per process), "state": "alive" |
"stopping", "ip", "host", "pid", "python", "version", "mode", "threads": int, "processes": int,
"kinds": [str, ...], "batch": int}``. A heartbeat with ``"state": "stopping"`` also ends the worker's long
polls at once.
"""

from __future__ import annotations

import json
import re

TASK_QUEUE = "get_task_queue"
RESULT_QUEUE = "get_result_queue"
DISPATCHER = "get_dispatcher"
CLASSIC_JOB = "classic"  # job name of tasks drained from the lesson's task queue

# One rule for every name that travels: job ids, worker ids (a hostname, or hostname-pid outside a container) and
# task kinds.
ID_RULE = "1-128 letters, digits, '.', '_' or '-'"
_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")

#: Most tasks in one job.
MAX_TASKS_PER_JOB = 1_000_000
#: Most tasks in one submit call: a bigger job comes in several.
MAX_CHUNK = 50_000
#: One task's arguments as JSON text at most (they are stored and sent to a worker).
MAX_ARGS_BYTES = 64 * 1024
#: A result's JSON text at most this long (it is journaled and travels to the client).
MAX_RESULT_BYTES = 1 << 20
#: How much of a failed task's traceback travels back.
MAX_TRACEBACK_CHARS = 4000
#: A task whose lease ended with its worker dead this many times fails instead of killing the next worker.
DEFAULT_MAX_ATTEMPTS = 3

#: A task's key: (job id, task id). Leases, acks, hand-backs and cancels all name tasks by it.
Key = tuple[str, int]

#: JSON text as stored and sent: compact, and strict (NaN and infinities are not JSON). One encoder for all calls:
#: json.dumps with options would build a new one each time, which costs more than the encoding of a small task.
to_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def parse_key(value: object) -> Key | None:
    """A key as it travels ([job, id] or (job, id)) as a Key, or None when it is not one."""
    ok = (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
          and isinstance(value[1], int) and not isinstance(value[1], bool))
    return (value[0], value[1]) if ok else None


def key_of(record: dict) -> Key:
    """The key of a task or a result record (both carry ``job`` and ``id``)."""
    return (record.get("job"), record.get("id"))


class AuthFailed(Exception):
    """The master refused our key (or we refused its): not worth retrying."""


class Unreachable(Exception):
    """The master could not be reached or went away; the link can be reopened."""
