"""The lease table: which worker holds which task, until when.

A lease is what makes the lesson's queue safe: a task handed to a worker is recorded with a deadline; the worker's
heartbeats renew the leases it names; a lease nobody renews expires and its task goes back to the queue.

No lock and no clock of its own: the dispatcher holds the lock and passes ``now`` (as rq's
``registry.cleanup(timestamp)`` does), so the tests drive time by hand. Expiry costs O(log n) per lease through a
heap of deadlines, not a scan of every lease on every call: one heap entry per grant or renewal *call* (a batch of
keys), so the heap grows with the calls of one lease period, not with the tasks. Each worker's leases are a set of
their own, and the table counts each job's leases (the one count of a job's tasks in flight).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

from ..protocol import Key


@dataclass
class Lease:
    key: Key
    worker: str
    deadline: float
    seq: int  # grant order: leases that expire together go back to the queue in the order they were granted


class LeaseTable:
    def __init__(self) -> None:
        self._by_key: dict[Key, Lease] = {}
        self._by_worker: dict[str, set[Key]] = {}
        self._per_job: Counter[str] = Counter()
        # (deadline, n, keys): a grant or renewal pushes one entry for its batch; when an entry surfaces, only the
        # keys whose lease still ends by then expire (a renewed lease has a later entry of its own)
        self._heap: list[tuple[float, int, tuple[Key, ...]]] = []
        self._pushes = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: Key) -> bool:
        return key in self._by_key

    def get(self, key: Key) -> Lease | None:
        return self._by_key.get(key)

    def _push(self, deadline: float, keys: tuple[Key, ...]) -> None:
        if keys:
            self._pushes += 1
            heapq.heappush(self._heap, (deadline, self._pushes, keys))

    def grant(self, keys: list[Key], worker: str, deadline: float) -> None:
        """Lease a batch of tasks to one worker."""
        mine = self._by_worker.setdefault(worker, set())
        for key in keys:
            self._seq += 1
            if key in self._by_key:  # leased again before its old lease ended: one lease per task
                self.release(key)
            self._by_key[key] = Lease(key, worker, deadline, self._seq)
            mine.add(key)
            self._per_job[key[0]] += 1
        self._push(deadline, tuple(keys))

    def renew(self, worker: str, keys, deadline: float) -> int:
        """Extend the leases among ``keys`` that ``worker`` holds; the others are ignored. Returns how many."""
        mine = self._by_worker.get(worker, ())
        renewed = []
        for key in keys:
            if key in mine:
                lease = self._by_key[key]
                lease.deadline = max(lease.deadline, deadline)
                renewed.append(lease.key)
        self._push(deadline, tuple(renewed))
        return len(renewed)

    def release(self, key: Key) -> Lease | None:
        lease = self._by_key.pop(key, None)
        if lease is not None:
            held = self._by_worker[lease.worker]
            held.discard(key)
            if not held:
                del self._by_worker[lease.worker]
            self._per_job[key[0]] -= 1
            if not self._per_job[key[0]]:
                del self._per_job[key[0]]
        return lease

    def expired(self, now: float) -> list[Lease]:
        """Remove and return every lease whose deadline has passed, in grant order."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            for key in heapq.heappop(self._heap)[2]:
                lease = self._by_key.get(key)
                if lease is not None and lease.deadline <= now:
                    out.append(self.release(key))
        out.sort(key=lambda lease: lease.seq)
        return out

    def held_by(self, worker: str) -> list[Key]:
        """The keys a worker holds, in grant order."""
        return sorted(self._by_worker.get(worker, ()), key=lambda k: self._by_key[k].seq)

    def count(self, worker: str) -> int:
        """How many leases ``worker`` holds."""
        return len(self._by_worker.get(worker, ()))

    def of_job(self, job_id: str) -> int:
        """How many tasks of ``job_id`` are leased right now."""
        return self._per_job.get(job_id, 0)
