"""What happened in the cluster, in words: workers joined, gone, restarted; leases expired; jobs restored,
cancelled; late duplicates dropped. New lines go to the master's log; the most recent ones, with their times, go to
`status` and the page."""

from __future__ import annotations

from collections import deque

#: Lines not yet logged, at most (the master's reaper drains them twice a second).
MAX_NEW = 1000
#: Lines kept for `status` and the page.
MAX_RECENT = 100


class EventLog:
    def __init__(self) -> None:
        self._new: deque[str] = deque(maxlen=MAX_NEW)
        self.recent: deque[dict] = deque(maxlen=MAX_RECENT)

    def add(self, text: str, now: float) -> None:
        self._new.append(text)
        self.recent.append({"t": round(now, 3), "text": text})

    def drain(self) -> list[str]:
        out = list(self._new)
        self._new.clear()
        return out
