"""Jobs on their own: validation, the pending queue, acks planned then applied, pruning."""

import pytest

from mpcluster.jobs import JobBook, validate_job


def tasks(n, kind="square"):
    return [{"id": i, "kind": kind, "args": {"n": i, "seconds": 0}} for i in range(n)]


def test_validation_normalises_and_refuses_with_one_line():
    job_id, items = validate_job({"id": "j1", "tasks": [{"id": 3, "kind": "square", "args": {"n": 2}}]})
    assert (job_id, items) == ("j1", [{"id": 3, "kind": "square", "args": {"n": 2, "seconds": 1.0}}])
    with pytest.raises(ValueError, match=r"job id 'classic' is not valid"):
        validate_job({"id": "classic", "tasks": tasks(1)})
    with pytest.raises(ValueError, match=r"task id -1 is not valid"):
        validate_job({"id": "j", "tasks": [{"id": -1, "kind": "square", "args": {"n": 1}}]})


def test_take_skips_done_and_leased_and_requeue_keeps_order():
    book = JobBook()
    book.add("j", tasks(4), now=0)
    leased = {("j", 1)}
    got = book.take(3, leased.__contains__)
    assert [t["id"] for _, t in got] == [0, 2, 3]
    counters = book.requeue([("j", 2), ("j", 3)], redelivery=True)
    assert counters == {"j": {"redeliveries": 2}} and book.get("j").redeliveries == 2
    assert [t["id"] for _, t in book.take(5, leased.__contains__)] == [2, 3]
    assert book.requeue([("j", 0)], redelivery=False) == {"j": {"handed_back": 1}}


def test_an_ack_is_planned_without_changes_then_applied():
    book = JobBook()
    book.add("j", tasks(2), now=0)
    results = [{"job": "j", "id": 0, "ok": True, "value": 0}, {"job": "j", "id": 0, "ok": True, "value": 0},
               {"job": "j", "id": 1, "ok": False, "error": "boom"}, {"job": "classic", "id": 4, "ok": True},
               {"job": "nope", "id": 1}, {"job": "j", "id": "x"}]
    plan = book.plan_ack(results, "w1", "10.0.0.2", now=7)
    assert book.get("j").done == set()  # nothing changed yet
    assert [rec["id"] for _, rec in plan.fresh] == [0, 1] and len(plan.dupes) == 1 and len(plan.classic) == 1
    assert [(j, i, seq) for j, i, seq, _ in plan.rows] == [("j", 0, 1), ("j", 1, 2)]
    assert plan.counters == {"j": {"finished": 7, "duplicates_dropped": 1}}
    book.apply(plan)
    s = book.get("j").summary(now=9)
    assert (s.done, s.errors, s.complete, s.duplicates_dropped, s.workers, s.seconds) == (2, 1, True, 1, {"w1": 2}, 7)


def test_finished_jobs_are_forgotten_oldest_first_but_not_too_soon():
    book = JobBook(max_held=10)
    for name, t in (("a", 0), ("b", 1)):
        book.add(name, tasks(4), now=t)
        book.apply(book.plan_ack([{"job": name, "id": i, "ok": True, "value": 0} for i in range(4)], "w", "", t))
    assert book.prunable(now=30, incoming=4) == []  # both finished less than a minute ago
    assert [j.id for j in book.prunable(now=61, incoming=4)] == ["a"]
    with pytest.raises(ValueError, match="the master already holds 8 tasks .* with these 4 it would exceed 10"):
        book.check_room(4)
