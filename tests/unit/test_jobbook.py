"""The book of jobs on its own: chunks, taking tasks, requeues and poison, acks planned then applied,
cancellation, restore, pruning."""

import json

import pytest

from mpcluster.master.jobbook import JobBook
from mpcluster.master.leases import LeaseTable
from mpcluster.master.records import plan_ack, plan_poisoned
from mpcluster.master.submission import validate_chunk


def add(book, job_id="j", n=4, kind="square", now=0.0, more=False, **options):
    args = [{"n": i, "seconds": 0} if kind == "square" else {"seconds": 0} for i in range(n)]
    c = validate_chunk({"id": job_id, "kind": kind, "tasks": args, "more": more, **options})
    job = book.open(c, now)
    book.extend(job, n, closed=not more, now=now)
    return job


def ack(book, job_id, ids, worker="w1", now=1.0, ok=True):
    plan = plan_ack(book, [{"job": job_id, "id": i, "ok": ok, "value": i * i, "elapsed": 0.5} for i in ids],
                         worker, "10.0.0.2", now)
    book.apply(plan, now)
    return plan


def test_take_goes_oldest_job_first_and_filters_by_kind():
    book = JobBook()
    add(book, "a", 2, kind="sleep")
    add(book, "b", 3)
    leases = LeaseTable()
    assert book.pending(leases) == 5
    taken = book.take(3, {"square"})
    assert [(j.id, i) for j, i in taken] == [("b", 0), ("b", 1), ("b", 2)]
    leases.grant([(j.id, i) for j, i in taken], "w1", deadline=10.0)
    assert book.pending(leases) == 2  # the lease table counts what is leased: the book keeps no copy
    taken = book.take(5, None)
    assert [(j.id, i) for j, i in taken] == [("a", 0), ("a", 1)]
    leases.grant([(j.id, i) for j, i in taken], "w2", deadline=10.0)
    assert book.take(5, None) == [] and book.pending(leases) == 0 and leases.of_job("b") == 3


def test_requeue_keeps_order_counts_and_poisons():
    book = JobBook()
    job = add(book, n=3, max_attempts=2)
    book.take(3, None)
    counters, poisoned = book.requeue([(("j", 1), "w1"), (("j", 2), "w1")], redelivery=True)
    assert poisoned == [] and counters["j"]["redeliveries"] == 2
    assert json.loads(counters["j"]["per_worker"])["w1"]["redeliveries"] == 2
    assert [i for _, i in book.take(5, None)] == [1]  # requeued first, in their order; a suspect goes alone
    assert [i for _, i in book.take(5, None)] == [2]
    _, poisoned = book.requeue([(("j", 1), "w2")], redelivery=True)
    assert [(i, holder, n) for _, i, holder, n in poisoned] == [(1, "w2", 2)]  # died twice: given up
    counters, _ = book.requeue([(("j", 2), "w2")], redelivery=False)  # handed back by a stopping worker
    assert counters == {"j": {"handed_back": 1}} and job.attempts[2] == 1
    plan = plan_poisoned(poisoned, now=5.0)
    book.apply(plan, 5.0)
    [(_, rec)] = plan.fresh
    assert rec["ok"] is False and rec["error"]["type"] == "PoisonTask" and job.poisoned == 1 and job.errors == 1


def test_an_ack_is_planned_without_changes_then_applied():
    book = JobBook()
    job = add(book, n=2)
    book.take(2, None)
    results = [{"job": "j", "id": 0, "ok": True, "value": 0}, {"job": "j", "id": 0, "ok": True, "value": 0},
               {"job": "j", "id": 1, "ok": False, "error": {"type": "ValueError", "message": "boom"}},
               {"job": "classic", "id": 4, "ok": True}, {"job": "nope", "id": 1}, {"job": "j", "id": 9},
               {"job": "j", "id": "x"}]
    plan = plan_ack(book, results, "w1", "10.0.0.2", now=7)
    assert job.n_done == 0  # nothing changed yet
    assert [rec["id"] for _, rec in plan.fresh] == [0, 1] and len(plan.dupes) == 1 and len(plan.classic) == 1
    assert plan.dropped == 3
    assert [(j, seq, i, w, ok) for j, seq, i, w, ok, _, _ in plan.rows] == [("j", 1, 0, "w1", 1), ("j", 2, 1, "w1", 0)]
    assert plan.counters == {"j": {"finished": 7, "state": "done", "duplicates_dropped": 1}}
    book.apply(plan, 7)
    s = job.summary(now=9)
    assert (s.done, s.errors, s.state, s.duplicates_dropped, s.workers) == (2, 1, "done", 1, {"w1": 2})
    assert s.per_worker["w1"] == {"tasks": 2, "seconds": 0.0, "errors": 1, "redeliveries": 0,
                                  "duplicates_dropped": 1}
    assert "j" not in book.runnable


def test_a_job_in_chunks_is_done_only_when_closed_and_every_result_is_in():
    book = JobBook()
    job = add(book, n=2, more=True)
    book.take(2, None)
    ack(book, "j", [0, 1])
    assert job.status.value == "running" and not job.complete
    book.extend(job, 1, closed=True, now=2)
    assert [i for _, i in book.take(5, None)] == [2]
    ack(book, "j", [2], now=3)
    assert job.status.value == "done" and job.finished == 3


def test_cancel_drops_what_waits_and_later_results():
    book = JobBook()
    job = add(book, n=5)
    book.take(2, None)
    assert book.cancel(job, now=4) == {"state": "cancelled", "finished": 4}
    assert book.pending(LeaseTable()) == 0 and book.take(5, None) == []
    plan = plan_ack(book, [{"job": "j", "id": 0, "ok": True, "value": 0}], "w1", "", now=5)
    assert plan.fresh == [] and plan.dropped == 1


def test_restore_rebuilds_from_the_journals_rows_and_skips_what_is_done():
    book = JobBook()
    row = {"id": "j", "kind": "square", "created": 10.0, "finished": None, "state": "running", "added": 5,
           "closed": 1, "task_timeout": None, "max_attempts": 3, "redeliveries": 2, "duplicates_dropped": 1,
           "handed_back": 0, "restarts": 0, "poisoned": 0, "done_ids": [0, 2],
           "per_worker": json.dumps({"w1": {"redeliveries": 2, "duplicates_dropped": 1}}),
           "by_worker": [("w1", 2, 1.5, 1)]}
    job = book.restore(row)
    assert (job.n_done, job.errors, job.restarts, job.pending(0)) == (2, 1, 1, 3)
    assert [i for _, i in book.take(5, None)] == [1, 3, 4]
    assert job.tally["w1"].tasks == 2 and job.tally["w1"].redeliveries == 2


def test_finished_jobs_are_forgotten_oldest_first_but_not_too_soon():
    book = JobBook(max_held=10)
    for name, t in (("a", 0.0), ("b", 1.0)):
        add(book, name, 4, now=t)
        book.take(4, None)
        ack(book, name, range(4), now=t)
    assert book.prunable(now=30, incoming=4) == []  # both finished less than a minute ago
    assert [j.id for j in book.prunable(now=61, incoming=4)] == ["a"]
    with pytest.raises(ValueError, match="the master already holds 8 tasks .* with these 4 it would exceed 10"):
        book.check_room(4)


def test_a_task_whose_worker_died_goes_out_alone():
    book = JobBook()
    add(book, n=4)
    assert [i for _, i in book.take(3, None)] == [0, 1, 2]
    book.requeue([(("j", i), "w1") for i in (0, 1, 2)], redelivery=True)  # w1 died holding three
    assert [i for _, i in book.take(10, None)] == [0]  # a suspect: alone
    assert [i for _, i in book.take(10, None)] == [1]
    book.requeue([(("j", 0), "w2")], redelivery=False)  # handed back (not a death): first again, still a suspect
    assert [i for _, i in book.take(10, None)] == [0]
    assert [i for _, i in book.take(10, None)] == [2]
    assert [i for _, i in book.take(10, None)] == [3]  # never a suspect: batched as usual
