"""The cluster as the master sees it, as one plain dict: what ``status --json``, ``Client.status()`` and the page's
``GET /api/status`` all show. No secrets: no key, no task arguments, no results."""

from __future__ import annotations

import sys

from ..version import __version__
from .registry import SAMPLE_SECONDS


def cluster_status(dispatcher, book, leases, registry, classic, now: float) -> dict:
    """Built with the dispatcher's lock held: O(workers + 20 jobs + 100 events)."""
    queues = {"pending": book.pending(leases), "leased": len(leases), "classic_tasks": 0, "classic_results": 0,
              **(classic.sizes() if classic is not None else {})}
    return {
        "master": {"python": sys.version.split()[0], "version": __version__, "time": now,
                   "started": dispatcher.started, "uptime_s": round(now - dispatcher.started, 1),
                   "lease_seconds": dispatcher.lease_seconds, "heartbeat_seconds": dispatcher.heartbeat_seconds,
                   "restarts": dispatcher.master_restarts, "journal": dispatcher.journal_durable,
                   "sample_seconds": SAMPLE_SECONDS},
        "workers": registry.rows(now, leases.count, dispatcher.lease_seconds),
        "alive": registry.alive(),
        "queues": queues,
        "classic": dict(classic.stats) if classic is not None else {},
        "jobs": book.recent(now),
        "events": list(dispatcher.events.recent),
    }
