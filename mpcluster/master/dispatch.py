"""What a worker's lease call gets: which tasks, how many. Kept apart from the dispatcher (as locust keeps its
``dispatch.py``) because it is the one policy here likely to change: today the oldest job first, requeued tasks
before fresh ones, and a fair share per slot.
"""

from __future__ import annotations

import math


def hand_out(book, leases, registry, journal, classic, max_n: int, kinds_wanted: set[str] | None) -> list[dict]:
    """Up to ``max_n`` tasks of the kinds wanted (None: any), as they travel to the worker; the caller leases them.

    A fair share per slot: tasks leased but not started must not starve the other workers, so no call takes more
    than the pending tasks divided by the live workers' slots. The lesson's queue is served when no job has work.
    """
    share = max(1, math.ceil(book.pending(leases) / max(1, registry.alive_slots())))
    n = min(max_n, share)
    out = book.tasks_of(book.take(n, kinds_wanted), journal)
    if not out and classic is not None and (kinds_wanted is None or "square" in kinds_wanted):
        out = classic.take(n)
    return out
