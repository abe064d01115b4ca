import threading

import pytest

from mpcluster import tasks
from mpcluster.worker import execute


def test_kinds_compute_the_right_values():
    assert tasks.run("square", {"n": 3344, "seconds": 0}) == 3344 * 3344
    assert tasks.run("sleep", {"seconds": 0.01}) == 0.01
    assert tasks.run("primes", {"n": 100}) == 25
    assert tasks.count_primes(10**5) == 9592


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("cube", {"n": 1}, "unknown task kind 'cube'"),
        ("square", {"n": "7"}, "n must be a whole number, got str"),
        ("square", {"n": True}, "n must be a whole number, got bool"),
        ("square", {"n": 2, "seconds": 10**9}, "seconds=1000000000 is out of range: expected 0 to 3600"),
        ("square", {"n": 2, "seconds": -1}, "seconds=-1 is out of range"),
        ("sleep", {"seconds": float("nan")}, "seconds=nan is out of range"),
        ("primes", {"n": 10**12}, "n=1000000000000 is out of range: expected 0 to 10000000"),
        ("primes", {"n": -5}, "n=-5 is out of range"),
        ("square", [1, 2], "task arguments must be a JSON object, got list"),
        ("square", {"n": 2, "sides": 4}, "unexpected argument 'sides': expected n, seconds"),
    ],
)
def test_bad_tasks_are_refused_with_a_clear_message(kind, args, message):
    with pytest.raises(tasks.TaskError) as e:
        tasks.validate(kind, args)
    assert message in str(e.value)


def test_a_bad_task_gives_an_error_result_and_the_worker_goes_on():
    r = execute({"job": "j", "id": 1, "kind": "primes", "args": {"n": 10**12}}, "w1", "10.0.0.1")
    assert (r["ok"], r["value"], r["id"], r["worker"]) == (False, None, 1, "w1")
    assert r["error"]["type"] == "TaskError" and "n=1000000000000 is out of range" in r["error"]["message"]


def test_an_exception_inside_a_task_becomes_its_error_result(monkeypatch):
    def boom(kind, args, abort=None):
        raise ZeroDivisionError("division by zero in the task")

    monkeypatch.setattr(tasks, "run", boom)
    r = execute({"job": "j", "id": 2, "kind": "square", "args": {"n": 1}}, "w1", "")
    assert r["ok"] is False
    assert (r["error"]["type"], r["error"]["message"]) == ("ZeroDivisionError", "division by zero in the task")
    assert "in boom" in r["error"]["traceback"]  # the worker-side traceback travels with it


def test_simulated_work_stops_when_the_worker_aborts():
    abort = threading.Event()
    abort.set()
    with pytest.raises(tasks.Interrupted):
        tasks.run("square", {"n": 2, "seconds": 30}, abort)
