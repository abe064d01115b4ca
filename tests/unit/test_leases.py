"""The lease table on its own: time is whatever the test passes as ``now``."""

import heapq

from mpcluster.master import leases
from mpcluster.master.leases import LeaseTable


def test_grant_renew_and_expire_in_grant_order():
    t = LeaseTable()
    t.grant([("j", 0), ("j", 1), ("j", 2)], "w1", deadline=10)
    t.grant([("k", 0)], "w2", deadline=12)
    assert len(t) == 4 and ("j", 1) in t and t.count("w1") == 3
    assert t.renew("w1", [("j", 2), ("k", 0), ("nope", 9)], deadline=20) == 1  # k/0 is w2's: not renewed
    assert t.expired(9.9) == []
    gone = t.expired(12)
    assert [lease.key for lease in gone] == [("j", 0), ("j", 1), ("k", 0)]  # grant order, across workers
    assert [lease.worker for lease in gone] == ["w1", "w1", "w2"]
    assert t.held_by("w1") == [("j", 2)] and t.held_by("w2") == []
    assert [lease.key for lease in t.expired(20)] == [("j", 2)]
    assert len(t) == 0


def test_a_released_then_regranted_key_expires_by_its_new_deadline():
    t = LeaseTable()
    t.grant([("j", 0)], "w1", deadline=10)
    assert t.release(("j", 0)).worker == "w1"
    assert t.release(("j", 0)) is None
    t.grant([("j", 0)], "w2", deadline=30)
    assert t.expired(10) == []  # the old heap entry surfaces and is skipped
    assert [(lease.key, lease.worker) for lease in t.expired(30)] == [(("j", 0), "w2")]


class CountingHeapq:
    """The heapq module as the lease table sees it, counting the entries pushed onto and popped off its heap."""

    def __init__(self):
        self.pushed = self.popped = 0

    def heappush(self, heap, item):
        self.pushed += 1
        heapq.heappush(heap, item)

    def heappop(self, heap):
        self.popped += 1
        return heapq.heappop(heap)


def test_the_heap_grows_with_calls_not_with_tasks(monkeypatch):
    counting = CountingHeapq()
    monkeypatch.setattr(leases, "heapq", counting)
    t = LeaseTable()
    keys = [("j", i) for i in range(1000)]
    t.grant(keys, "w1", deadline=10)
    for step in range(1, 6):
        assert t.renew("w1", keys, deadline=10 + step) == 1000
    assert counting.pushed == 6  # one entry per grant or renewal call, not one per task
    assert t.expired(14) == []
    assert counting.popped == 5  # the five outdated entries (deadlines 10 to 14) are gone; the renewed leases stay
    assert len(t.expired(15)) == 1000
    assert counting.popped == 6  # one entry ends a thousand leases
