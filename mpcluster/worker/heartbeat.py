"""The worker's heartbeat: one thread, its own link, every ``heartbeat_seconds`` (the master's setting, learned
from its replies), naming every task the slots hold so that the master renews exactly those leases, and stopping
the tasks whose jobs the master says were cancelled.

It keeps going while a stopping worker finishes its tasks, so their leases do not expire under them, and ends
with the goodbye.
"""

from __future__ import annotations

import logging
import threading

from ..link import Link
from ..protocol import AuthFailed, Unreachable

log = logging.getLogger("mpcluster")


class Heartbeat:
    def __init__(self, worker, seconds: float):
        """``worker`` gives ``id``, ``info()``, ``holdings``, ``link()`` and ``leaving`` (the end of heartbeats)."""
        self.w, self.seconds = worker, seconds
        self.lease_seconds = 2 * seconds  # the master's, once a reply has said it (it keeps heartbeats <= half)

    @property
    def poll_seconds(self) -> float:
        """How long a slot's idle long poll lasts: half a lease (at most 5 s). The master hears from a worker when
        a call starts, and an idle slot polls again at once, so that keeps an idle worker alive without heartbeats."""
        return max(0.5, min(5.0, self.lease_seconds / 2))

    def start(self) -> None:
        threading.Thread(target=self._run, name="heartbeat", daemon=True).start()

    def once(self, link: Link, purpose: str) -> None:
        """One heartbeat from the calling thread, now (the heartbeat thread keeps its own pace); trouble is one
        line. Raises AuthFailed: a key the master refuses is the caller's to decide about."""
        for attempt in (1, 2):  # this link may have gone stale while idle: reopen it once
            try:
                if link.dispatcher is None:
                    link.open()
                self.heard(link.call("heartbeat", self.w.id, self.w.info(), self.w.holdings.keys()))
                return
            except Unreachable as e:
                if attempt == 2:
                    log.warning("worker %s: could not %s the master (%s)", self.w.id, purpose, e)
            except AuthFailed:
                raise
            except Exception as e:  # an error answer: go on without it
                log.warning("worker %s: could not %s the master (%s: %s)", self.w.id, purpose, type(e).__name__,
                            str(e)[:200])
                return

    def heard(self, reply: object) -> None:
        if not isinstance(reply, dict):
            return
        if isinstance(reply.get("heartbeat_seconds"), (int, float)):
            self.seconds = max(0.05, float(reply["heartbeat_seconds"]))  # the master's settings
        lease = reply.get("lease_seconds")
        self.lease_seconds = max(2 * self.seconds, float(lease) if isinstance(lease, (int, float)) else 0.0)
        cancel = reply.get("cancel")
        if isinstance(cancel, list) and cancel:
            n = self.w.holdings.cancel(cancel)
            if n:
                log.info("worker %s: the master cancelled %d of the tasks held here; stopping them", self.w.id, n)

    def _run(self) -> None:
        link = self.w.link()
        said = ""
        while not self.w.leaving.is_set():
            # Idle, the slots' long polls (each half a lease at most) already keep the master hearing from this
            # worker: a beat would renew nothing, so it is skipped, which cuts an idle cluster's calls to the master
            # by more than half. Whatever is held is named at every beat. If the slots stop calling, the beats
            # resume within half a lease and one beat: the master still hears within a lease.
            if self.w.holdings.idle_and_heard(self.lease_seconds / 2):
                self.w.leaving.wait(self.seconds)
                continue
            try:
                if link.dispatcher is None:
                    link.open()
                self.heard(link.call("heartbeat", self.w.id, self.w.info(), self.w.holdings.keys()))
                said = ""
            except Unreachable:
                pass  # the slots notice too; this link is reopened at the next beat
            except Exception as e:  # an error answer, or our key refused: one line per kind of trouble
                if str(e) != said:
                    log.warning("worker %s: heartbeat failed: %s: %s", self.w.id, type(e).__name__, str(e)[:200])
                    said = str(e)
            self.w.leaving.wait(self.seconds)
