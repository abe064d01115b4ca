"""The worker registry on its own: states, sessions and silence, with ``now`` passed in."""

from mpcluster.master.registry import Registry, WorkerStatus


def test_join_touch_and_info():
    r = Registry()
    t = r.touch("w1", {"ip": "10.0.0.3", "python": "3.11.2", "session": "a", "secret": "ignored"}, now=5)
    assert t.joined and not t.restarted and t.back_from is None
    w = r.get("w1")
    assert (w.status, w.ip, w.info, w.first_seen) == (WorkerStatus.ALIVE, "10.0.0.3",
                                                        {"ip": "10.0.0.3", "python": "3.11.2"}, 5)
    assert not r.touch("w1", None, now=6).joined and r.alive() == 1


def test_silent_workers_are_gone_and_come_back_on_any_call():
    r = Registry()
    r.touch("w1", {"session": "a"}, now=0)
    r.touch("w2", {"session": "b"}, now=8)
    assert [w.id for w in r.silent(now=10.5, timeout=10)] == ["w1"]
    assert r.silent(now=10.6, timeout=10) == []  # only newly gone ones are returned
    assert r.get("w1").status is WorkerStatus.GONE and r.alive() == 1
    t = r.touch("w1", None, now=11)
    assert t.back_from is WorkerStatus.GONE and r.get("w1").status is WorkerStatus.ALIVE


def test_a_new_session_is_a_restart_and_only_it_revives_a_worker_that_left():
    r = Registry()
    r.touch("w1", {"session": "a"}, now=0)
    r.leave("w1")
    for info in (None, {}, {"session": "a"}, {"session": "a", "state": "stopping"}):
        t = r.touch("w1", info, now=1)
        assert t.back_from is None and r.get("w1").status is WorkerStatus.LEFT
    t = r.touch("w1", {"session": "b"}, now=2)
    assert t.restarted and t.back_from is WorkerStatus.LEFT and r.get("w1").status is WorkerStatus.ALIVE


def test_stopping_is_reported_by_the_worker_and_rows_are_plain():
    r = Registry()
    r.touch("w1", {"session": "a", "state": "stopping", "ip": "10.0.0.4"}, now=0)
    assert r.get("w1").status is WorkerStatus.STOPPING and r.alive() == 0
    [row] = r.rows(now=1.5, leased=lambda wid: 3, timeout=10)
    assert row["state"] == "stopping" and row["leased"] == 3 and row["last_heartbeat_s"] == 1.5
    assert row["gone_in_s"] == 8.5  # the countdown to "gone" the page shows


def test_throughput_is_sampled_every_five_seconds():
    r = Registry()
    r.touch("w1", None, now=0)
    w = r.get("w1")
    for t, done in ((5, 4), (6, 9), (10, 12), (15, 12)):
        w.done = done
        r.sample(now=t)  # the sample at t=6 is skipped: too soon after t=5
    assert list(w.history) == [4, 8, 0]
