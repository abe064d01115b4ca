"""The lease, requeue and dedup logic, with an injected clock (no sleeping)."""

import json
import queue
import threading

import pytest

from mpcluster.master.bridge import ClassicBridge
from mpcluster.master.dispatcher import Dispatcher
from mpcluster.master.journal import Journal
from tests.support import wait_until


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def job(job_id="j1", n=4, seconds=0):
    return {"id": job_id, "kind": "square", "tasks": [{"n": i, "seconds": seconds} for i in range(n)]}


def result(task, worker="w1", value=None):
    n = json.loads(task["args"])["n"]
    return {"job": task["job"], "id": task["id"], "ok": True, "value": n**2 if value is None else value,
            "worker": worker, "ip": "10.0.0.9"}


def read(d, job_id="j1", cursor=0):
    """results() with the records parsed: (cursor, [record, ...], summary)."""
    cursor, chunk, summary = d.results(job_id, cursor)
    return cursor, [json.loads(r) for r in chunk], summary


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def d(clock):
    return Dispatcher(lease_seconds=10, heartbeat_seconds=2, clock=clock)


def test_lease_ack_records_each_result_once(d):
    d.submit(job(n=3))
    got = d.lease("w1", 10)
    assert sorted(t["id"] for t in got) == [0, 1, 2]
    assert d.ack("w1", [result(t) for t in got]) == {"accepted": 3, "dropped": 0}
    cursor, chunk, summary = read(d)
    assert cursor == 3 and sorted(r["value"] for r in chunk) == [0, 1, 4]
    assert summary["complete"] and summary["duplicates_dropped"] == 0 and summary["redeliveries"] == 0


def test_an_expired_lease_is_redelivered_and_the_late_result_dropped(d, clock):
    d.submit(job(n=1))
    [t] = d.lease("w1", 1)
    clock.now += 10.5  # w1 died, froze or was cut off
    assert d.expire() == 1
    [again] = d.lease("w2", 1)
    assert (again["job"], again["id"]) == (t["job"], t["id"])
    assert d.ack("w2", [result(again, "w2")])["accepted"] == 1
    assert d.ack("w1", [result(t, "w1")]) == {"accepted": 0, "dropped": 1}  # the late original
    assert "1 late duplicate of job j1 from w1 dropped" in [e["text"] for e in d.status()["events"]]
    _, chunk, summary = read(d)
    assert [r["worker"] for r in chunk] == ["w2"]
    assert summary["redeliveries"] == 1 and summary["duplicates_dropped"] == 1


def test_first_result_wins_even_from_the_expired_holder(d, clock):
    d.submit(job(n=1))
    [t] = d.lease("w1", 1)
    clock.now += 11
    d.expire()
    [again] = d.lease("w2", 1)
    assert d.ack("w1", [result(t, "w1")])["accepted"] == 1  # the original finished first after all
    assert d.ack("w2", [result(again, "w2")])["dropped"] == 1
    assert d.status()["queues"]["leased"] == 0


def test_heartbeats_keep_a_long_task_leased(d, clock):
    d.submit(job(n=1))
    [t] = d.lease("w1", 1)
    for _ in range(10):  # 50 s of a long task, heartbeating every 5 s and naming the lease
        clock.now += 5
        assert d.heartbeat("w1", {"ip": "10.0.0.9"}, [(t["job"], t["id"])])["leases"] == 1
    assert d.expire() == 0
    assert d.lease("w2", 1) == []


def test_a_heartbeat_renews_only_the_leases_it_names(d, clock):
    d.submit(job(n=2))
    a, b = d.lease("w1", 2)
    clock.now += 6
    reply = d.heartbeat("w1", {}, [(a["job"], a["id"]), ("j1", 99), ("other", 0)])
    assert reply == {"leases": 1, "lease_seconds": 10, "heartbeat_seconds": 2, "cancel": []}
    assert d.heartbeat("w2", {}, [(a["job"], a["id"])])["leases"] == 0  # not w2's to renew
    clock.now += 6  # b was granted 12 s ago and never named: expired; a was renewed 6 s ago
    assert d.expire() == 1
    assert [t["id"] for t in d.lease("w2", 5)] == [b["id"]]


def test_silent_worker_is_marked_gone_and_back_when_it_returns(d, clock):
    d.heartbeat("w1", {"ip": "10.0.0.9"})
    clock.now += 11
    d.expire()
    [w] = d.status()["workers"]
    assert (w["id"], w["state"], w["ip"]) == ("w1", "gone", "10.0.0.9")
    d.heartbeat("w1", {})
    assert d.status()["workers"][0]["state"] == "alive"


def test_handed_back_tasks_are_queued_again_at_the_front(d):
    d.submit(job(n=3))
    held = d.lease("w1", 3)
    assert d.release("w1", [(t["job"], t["id"]) for t in held[1:]]) == 2
    assert d.release("w2", [(held[0]["job"], held[0]["id"])]) == 0  # not w2's to hand back
    again = d.lease("w2", 5) + d.lease("w2", 5)  # a fair share of 2 pending among 2 live workers is 1
    assert sorted(t["id"] for t in again) == [1, 2]
    assert read(d)[2]["handed_back"] == 2


def test_goodbye_hands_back_everything_the_worker_holds(d):
    d.submit(job(n=2))
    d.lease("w1", 2)
    assert d.goodbye("w1") == 2
    assert d.status()["workers"][0]["state"] == "left"
    assert [t["id"] for t in d.lease("w2", 5)] == [0, 1]  # w1 left: w2, the only live worker, gets both, in order


def test_leases_are_a_fair_share_so_slow_tasks_spread(d):
    d.submit(job(n=10, seconds=1))
    for w in ("w1", "w2", "w3"):
        d.heartbeat(w, {})
    first = d.lease("w1", 100)
    assert len(first) == 4  # ceil(10 / 3 live workers), not all 10
    assert len(d.lease("w2", 100)) == 2  # ceil(6 / 3)


def test_resubmitting_the_same_job_id_is_harmless(d):
    assert d.submit(job(n=2)) == "j1"
    assert d.submit(job(n=2)) == "j1"
    assert d.status()["queues"]["pending"] == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"id": "x y", "kind": "square", "tasks": [{"n": 1}]}, "job id 'x y' is not valid"),
        ({"id": "j", "kind": "square", "tasks": "seven"}, "'tasks' must be a list of at most 50000"),
        ({"id": "j", "kind": "square", "tasks": [{"n": 1}] * 50_001}, "'tasks' must be a list of at most 50000"),
        ({"id": "j", "kind": "primes", "tasks": [{"n": 7}, {"n": 10**12}]}, "task 1: n=1000000000000 is out of range"),
        ({"id": "j", "kind": "square", "tasks": [[1, 2]]}, "task 0: arguments must be a JSON object, got list"),
        ({"id": "j", "kind": "nope", "tasks": [{}]}, "no live worker offers task kind 'nope' (0 workers alive offer "
                                                    "primes, sleep, square)"),
        ({"id": "j", "kind": "square", "tasks": [{"n": 1}], "first": 3}, "its first chunk must start at task 0"),
        ({"id": "j", "kind": "square", "tasks": [], "task_timeout": -1}, "task_timeout=-1 is not valid"),
        ({"id": "j", "kind": "square", "tasks": [], "max_attempts": 0}, "max_attempts=0 is not valid"),
        ("not a job", "a job must be a dict"),
    ],
)
def test_bad_jobs_are_refused_at_submit(d, bad, message):
    with pytest.raises(ValueError) as e:
        d.submit(bad)
    assert message in str(e.value)


def test_classic_queue_is_served_with_leases_and_dedup(clock):
    tq, rq = queue.Queue(), queue.Queue()
    d = Dispatcher(10, 2, classic=ClassicBridge(tq, rq), clock=clock)
    tq.put(3344)
    [t] = d.lease("w1", 1)
    assert (t["kind"], json.loads(t["args"])["n"]) == ("square", 3344)
    clock.now += 11
    d.expire()
    assert tq.get_nowait() == 3344  # back on the lesson's queue for anyone to take
    tq.put(3344)
    [t2] = d.lease("w2", 1)
    d.ack("w2", [result(t2, "w2")])
    d.ack("w1", [result(t, "w1")])
    assert rq.get_nowait() == "3344 * 3344 = 11182336" and rq.empty()
    assert d.status()["classic"] == {"done": 1, "redeliveries": 1, "duplicates_dropped": 1}


def test_journal_restores_finished_results_and_requeues_the_rest(tmp_path, clock):
    path = str(tmp_path / "journal.sqlite3")
    d1 = Dispatcher(10, 2, journal=Journal(path), clock=clock)
    d1.submit(job(n=4))
    done = d1.lease("w1", 2)
    d1.ack("w1", [result(t) for t in done])
    d1.lease("w1", 1)  # leased but never finished: the master dies now
    d2 = Dispatcher(10, 2, journal=Journal(path), clock=clock)
    cursor, chunk, summary = read(d2)
    assert sorted(r["id"] for r in chunk) == sorted(t["id"] for t in done)
    assert summary["master_restarts"] == 1 and not summary["complete"]
    rest = d2.lease("w2", 10)
    assert sorted(t["id"] for t in rest) == sorted({0, 1, 2, 3} - {t["id"] for t in done})
    d2.ack("w2", [result(t, "w2") for t in rest])
    d2.ack("w1", [result(t) for t in done])  # a worker re-sending what the old master had recorded
    d3 = Dispatcher(10, 2, journal=Journal(path), clock=clock)
    _, chunk, summary = read(d3)
    assert summary["complete"] and len(chunk) == 4 and summary["duplicates_dropped"] == 2
    assert d3.master_restarts == 2


def test_a_restarted_worker_frees_what_its_previous_run_held(d):
    d.submit(job(n=2))
    d.heartbeat("w1", {"session": "first"})
    held = d.lease("w1", 2, info={"session": "first"})
    assert len(held) == 2
    d.heartbeat("w1", {"session": "second"})  # same hostname, new process: the old one died holding 2 tasks
    assert d.status()["queues"] == {"pending": 2, "leased": 0, "classic_tasks": 0, "classic_results": 0}
    assert read(d)[2]["redeliveries"] == 2


def test_a_heartbeat_crossing_a_goodbye_does_not_revive_the_worker(d):
    d.heartbeat("w1", {"session": "s1"})
    d.goodbye("w1")
    d.heartbeat("w1", {"session": "s1", "state": "stopping"})
    assert d.status()["workers"][0]["state"] == "left"
    d.heartbeat("w1", {"session": "s2"})  # a new process under that id: really back
    assert d.status()["workers"][0]["state"] == "alive"


def test_the_master_bounds_what_it_holds_and_says_so(clock):
    d = Dispatcher(10, 2, clock=clock, max_held_tasks=10)
    d.submit(job("a", n=6))
    with pytest.raises(ValueError) as e:
        d.submit(job("b", n=6))
    assert str(e.value) == ("the master already holds 6 tasks of running or just-finished jobs; with these 6 it "
                            "would exceed 10: wait for jobs to finish or submit fewer tasks")
    tasks = d.lease("w1", 6)
    d.ack("w1", [result(t) for t in tasks])
    clock.now += 61  # a finished job stays readable for a minute, then may be forgotten
    d.submit(job("b", n=6))  # job a is finished: forgotten to make room
    with pytest.raises(KeyError):
        read(d, "a")
    assert read(d, "b")[2]["tasks"] == 6


def test_a_just_finished_job_stays_readable(clock):
    d = Dispatcher(10, 2, clock=clock, max_held_tasks=10)
    d.submit(job("a", n=6))
    d.ack("w1", [result(t) for t in d.lease("w1", 6)])
    with pytest.raises(ValueError):
        d.submit(job("b", n=6))  # a finished a moment ago: its client may still be reading
    assert read(d, "a")[2]["complete"]


def test_a_journal_failure_records_nothing_and_the_retry_records_once(tmp_path, clock, monkeypatch):
    import sqlite3

    journal = Journal(str(tmp_path / "j.sqlite3"))
    d = Dispatcher(10, 2, journal=journal, clock=clock)
    d.submit(job(n=2))
    held = d.lease("w1", 2)
    real = journal.add_results

    def disk_full(rows, counters):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(journal, "add_results", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        d.ack("w1", [result(t) for t in held])
    assert read(d)[:2] == (0, []) and d.status()["queues"]["leased"] == 2
    monkeypatch.setattr(journal, "add_results", real)
    assert d.ack("w1", [result(t) for t in held]) == {"accepted": 2, "dropped": 0}
    assert Dispatcher(10, 2, journal=Journal(str(tmp_path / "j.sqlite3")), clock=clock).results("j1", 0)[2]["complete"]


def test_a_result_twice_in_one_ack_and_odd_values(d):
    d.submit(job(n=2))
    t0, t1 = d.lease("w1", 2)
    assert d.ack("w1", [result(t0), result(t0), result(t1, value={1, 2})]) == {"accepted": 2, "dropped": 1}
    _, chunk, summary = read(d)
    assert summary["duplicates_dropped"] == 1 and summary["errors"] == 1
    bad = next(r for r in chunk if r["id"] == t1["id"])
    assert bad["ok"] is False
    assert bad["error"] == {"type": "TaskError", "message": "the worker returned a set, not a JSON value",
                            "traceback": ""}


def test_handed_back_survives_a_master_restart(tmp_path, clock):
    path = str(tmp_path / "journal.sqlite3")
    d1 = Dispatcher(10, 2, journal=Journal(path), clock=clock)
    d1.submit(job(n=3))
    held = d1.lease("w1", 3)
    assert d1.release("w1", [(t["job"], t["id"]) for t in held[:2]]) == 2
    d2 = Dispatcher(10, 2, journal=Journal(path), clock=clock)
    assert read(d2)[2]["handed_back"] == 2


def test_a_worker_that_said_goodbye_stays_left_after_a_retried_goodbye_or_an_empty_ack(d):
    d.heartbeat("w1", {"session": "s1"})
    d.goodbye("w1")
    d.goodbye("w1")  # its goodbye retried after a lost reply
    d.ack("w1", [])
    d.release("w1", [])
    [w] = d.status()["workers"]
    assert w["state"] == "left"
    assert not any("is back" in e for e in d.drain_events())


def test_expired_leases_go_back_in_their_original_order(d, clock):
    d.submit(job(n=3))
    assert [t["id"] for t in d.lease("w1", 3)] == [0, 1, 2]
    clock.now += 11
    assert d.expire() == 3
    # each went out alone (a worker died holding it), in the original order
    assert [t["id"] for _ in range(3) for t in d.lease("w2", 3)] == [0, 1, 2]


def test_an_idle_long_poll_lasts_half_a_lease_at_most_and_counts_as_heard_when_it_starts(clock):
    d = Dispatcher(lease_seconds=0.4, heartbeat_seconds=0.1, clock=clock)
    got = []
    poll = threading.Thread(target=lambda: got.append(d.lease("w1", 1, wait_s=30)), daemon=True)
    poll.start()
    wait_until(lambda: d.status()["workers"], 10, "the poll to start")  # status waits for the poll's lock
    assert poll.is_alive()  # nothing to hand out: it waits
    clock.now += 0.2  # half the lease, not the 30 s asked for
    wait_until(lambda: not poll.is_alive(), 10, "the poll to end at half the lease")
    assert got == [[]]
    [w] = d.status()["workers"]
    # heard when the poll started: a worker killed during its poll must not look alive at the poll's end
    assert w["last_heartbeat_s"] == pytest.approx(0.2) and w["state"] == "alive"
