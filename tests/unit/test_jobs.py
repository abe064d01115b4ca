"""A job on its own: chunk validation, result records, the summary."""

import pytest

from mpcluster.master.jobs import JobState, JobStatus
from mpcluster.master.records import result_record
from mpcluster.master.submission import validate_chunk


def test_a_chunk_is_validated_and_its_arguments_normalised_to_json_text():
    c = validate_chunk({"id": "j1", "kind": "square", "tasks": [{"n": 2}, {"n": 3, "seconds": 0}], "more": True,
                        "task_timeout": 5, "max_attempts": 2})
    assert (c.job_id, c.kind, c.first, c.more, c.task_timeout, c.max_attempts) == ("j1", "square", 0, True, 5.0, 2)
    assert c.args == ['{"n":2,"seconds":1.0}', '{"n":3,"seconds":0.0}']  # the built-in's defaults filled in
    user = validate_chunk({"id": "j2", "kind": "wordcount", "tasks": [{"text": "a b"}], "first": 7})
    assert user.args == ['{"text":"a b"}'] and user.first == 7 and user.more is False


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"id": "classic", "kind": "square", "tasks": []}, "job id 'classic' is not valid"),
        ({"id": "j", "kind": "two words", "tasks": []}, "task kind 'two words' is not valid"),
        ({"id": "j", "kind": "k", "tasks": [{"x": {1, 2}}]}, "task 0: arguments are not JSON"),
        ({"id": "j", "kind": "k", "tasks": [{"x": float("nan")}]}, "task 0: arguments are not JSON"),
        ({"id": "j", "kind": "k", "tasks": [{"x": "y" * 70_000}]}, "task 0: arguments are 70008 bytes of JSON"),
        ({"id": "j", "kind": "k", "tasks": [{}], "first": 999_999 + 1}, "a job has at most 1000000 tasks"),
        ({"id": "j", "kind": "k", "tasks": [], "first": True}, "'first' must be a task number"),
    ],
)
def test_bad_chunks_are_refused_with_one_line(bad, message):
    with pytest.raises(ValueError) as e:
        validate_chunk(bad)
    assert message in str(e.value)


def test_a_result_record_holds_json_values_only():
    ok = result_record(3, "w1", "10.0.0.2", {"ok": True, "value": {"a": [1, 2]}, "elapsed": 0.25}, attempt=1)
    assert ok == {"id": 3, "ok": True, "value": {"a": [1, 2]}, "error": None, "worker": "w1", "ip": "10.0.0.2",
                  "attempt": 1, "elapsed": 0.25}
    bad = result_record(4, "w1", "", {"ok": False, "error": {"type": "KeyError", "message": "'x'",
                                                              "traceback": "Traceback ...", "extra": 1}}, 2)
    assert bad["error"] == {"type": "KeyError", "message": "'x'", "traceback": "Traceback ..."}
    old = result_record(5, "w1", "", {"ok": False, "error": "boom"}, 1)  # a plain message from an older worker
    assert old["error"] == {"type": "Error", "message": "boom", "traceback": ""}


def test_a_jobs_summary_counts_and_estimates():
    job = JobState("j", "sleep", created=100.0)
    job.grow(10)
    job.closed = True
    job.n_done = 4
    s = job.summary(now=102.0)
    assert (s.tasks, s.done, s.state, s.complete, s.rate, s.eta_s) == (10, 4, "running", False, 2.0, 3.0)
    assert job.pending(leased=2) == 4  # neither done nor leased
    job.status = JobStatus.CANCELLED
    assert job.pending(leased=2) == 0 and job.summary(now=103).eta_s is None


def test_a_workers_summed_seconds_are_shown_to_the_millisecond():
    job = JobState("j", "sleep", created=100.0)
    tally = job.tally_of("w1")
    for _ in range(4):
        tally.tasks += 1
        tally.seconds += 0.2004  # 0.8016000000000001 when summed
    shown = job.summary(now=101.0).per_worker["w1"]
    assert shown["seconds"] == 0.802 and shown["tasks"] == 4
    assert tally.seconds != 0.802  # the tally itself keeps its precision (the journal stores it)
