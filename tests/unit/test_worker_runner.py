"""Running one task: error results, JSON checks, and the two executors (a helper thread; a child process)."""

import json
import os
import time

import pytest

from mpcluster import kinds
from mpcluster.worker.executors import ProcessExecutor, ThreadExecutor
from mpcluster.worker.runner import execute
from tests.unit import worker_kinds

KINDS = worker_kinds.load()


def t(kind, args=None, **extra):
    return {"job": "j", "id": extra.pop("id", 1), "kind": kind, "args": json.dumps(args or {}), **extra}


def test_arguments_arrive_as_json_text_and_the_value_comes_back():
    before = time.monotonic()
    r = execute(t("square", {"n": 5, "seconds": 0}), "w1", "10.0.0.1")
    call = time.monotonic() - before
    assert (r["job"], r["id"], r["ok"], r["value"], r["error"], r["worker"], r["ip"]) == \
        ("j", 1, True, 25, None, "w1", "10.0.0.1")
    assert 0 <= r["elapsed"] <= round(call, 4) + 1e-4  # the task's own time: within the call that ran it
    # an older master sends the object itself: still understood
    assert execute({"job": "j", "id": 2, "kind": "square", "args": {"n": 6, "seconds": 0}})["value"] == 36


def test_an_exception_is_an_error_result_with_type_message_and_the_worker_side_traceback():
    r = execute(t("t_raise", {"n": 42}))
    assert (r["ok"], r["value"]) == (False, None)
    assert (r["error"]["type"], r["error"]["message"]) == ("ValueError", "bad input 42")
    tb = r["error"]["traceback"]
    assert tb.startswith("Traceback (most recent call last)") and "unit_kinds.py" in tb
    assert 'raise ValueError(f"bad input {n}")' in tb and tb.rstrip().endswith("ValueError: bad input 42")


def test_a_long_traceback_and_message_are_bounded():
    def shout():
        raise ValueError("x" * 20_000)

    kinds.task("t_shout")(shout)
    try:
        r = execute(t("t_shout"))
    finally:
        kinds.KINDS.pop("t_shout")
    assert r["error"]["type"] == "ValueError" and r["error"]["message"] == "x" * 1000
    tb = r["error"]["traceback"]
    assert len(tb) == kinds.MAX_TRACEBACK_CHARS + 4 and tb.startswith("...\n") and tb.endswith("x" * 100 + "\n")


@pytest.mark.parametrize(
    ("task", "kind", "message"),
    [
        ({"job": "j", "id": 1, "kind": "square", "args": "{n: 5"}, "TaskError",
         "the task's arguments are not valid JSON (Expecting property name enclosed in double quotes"),
        ({"job": "j", "id": 1, "kind": "square", "args": "[5]"}, "TaskError",
         "task arguments must be a JSON object, got list"),
        (t("t_set"), "TaskError", "the task returned a set, which is not a JSON value"),
        (t("cube", {"n": 2}), "TaskError", "unknown task kind 'cube': this worker offers "),
        (t("t_raise", {"m": 1}), "TaskError", "the arguments do not fit t_raise(n: int)"),
        (t("t_sys_exit"), "SystemExit", "3"),
    ],
)
def test_bad_input_and_bad_values_are_error_results_saying_so(task, kind, message):
    r = execute(task)
    assert (r["ok"], r["value"], r["error"]["type"]) == (False, None, kind)
    assert r["error"]["message"].startswith(message), r["error"]


def test_a_thread_task_runs_in_a_helper_thread_and_can_be_abandoned():
    ex = ThreadExecutor("w1", "10.0.0.1")
    ex.start(t("square", {"n": 7, "seconds": 0}))
    assert ex.wait(5)["value"] == 49
    KINDS.RELEASE.clear()
    KINDS.FINISHED.clear()
    ex.start(t("t_hang", id=2))
    assert ex.wait(0.2) is None  # still running: nothing yet
    ex.stop()  # abandoned: the next task gets a new helper and does not wait for this one
    ex.start(t("square", {"n": 8, "seconds": 0}, id=3))
    r = ex.wait(5)
    assert (r["id"], r["value"]) == (3, 64)
    KINDS.RELEASE.set()
    assert KINDS.FINISHED.wait(5)  # the abandoned task ended by itself; its result went nowhere
    assert ex.wait(0.2) is None
    ex.close()


def test_a_thread_task_that_honours_abort_ends_when_abandoned():
    KINDS.PAUSES.clear()
    KINDS.PAUSE_ENDED.clear()
    ex = ThreadExecutor("w1")
    ex.start(t("t_pause", {"seconds": 30}))
    ex.stop()
    assert KINDS.PAUSE_ENDED.wait(10)  # kinds.pause saw the abort: the helper is free again ...
    assert KINDS.PAUSES == ["Interrupted"]  # ... because the task was stopped, not because its 30 s were up
    ex.close()


def test_wake_ends_a_wait_without_a_result():
    for ex in (ThreadExecutor("w1"), ProcessExecutor("w1", "", worker_kinds.DIR, worker_kinds.MODULES)):
        ex.start(t("sleep", {"seconds": 30}))
        ex.wake()
        assert ex.wait(None) is None  # no time limit to end it, and no result yet: only the wake did
        ex.close()


@pytest.fixture
def child():
    ex = ProcessExecutor("w1", "10.0.0.1", worker_kinds.DIR, worker_kinds.MODULES)
    yield ex
    ex.close()


def test_a_process_slot_runs_tasks_in_its_own_child(child):
    child.start(t("t_pid"))
    r = child.wait(30)
    assert r["ok"] and r["value"] == child.pid != os.getpid()
    assert (r["worker"], r["ip"]) == ("w1", "10.0.0.1")
    child.start(t("primes", {"n": 100}, id=2))
    assert child.wait(30)["value"] == 25
    child.start(t("t_pid", id=3))
    assert child.wait(30)["value"] == r["value"] == child.pid  # the same child served all three


def test_an_exception_in_a_child_carries_the_childs_traceback(child):
    child.start(t("t_raise_cpu", {"n": 9}))
    r = child.wait(30)
    assert r["error"]["type"] == "ValueError" and r["error"]["message"] == f"bad input 9 in pid {child.pid}"
    assert "unit_kinds.py" in r["error"]["traceback"] and "raise_in_child" in r["error"]["traceback"]


@pytest.mark.parametrize(("task", "code"), [(t("t_exit", {"code": 7}), 7), (t("t_selfkill"), -9)])
def test_a_child_that_dies_gives_WorkerProcessDied_and_the_next_task_gets_a_fresh_child(child, task, code):
    child.start(task)
    first = child.pid
    r = child.wait(30)
    assert (r["ok"], r["id"], r["error"]["type"]) == (False, 1, "WorkerProcessDied")
    assert r["error"]["message"] == f"the process running the task died (exit code {code})"
    assert child.pid is None  # the dead child is gone; the next task starts another
    child.start(t("t_pid", id=2))
    r = child.wait(30)
    assert r["ok"] and r["value"] == child.pid != first


def test_stopping_a_process_task_kills_its_child(child):
    child.start(t("t_spin", {"seconds": 60}))
    assert child.wait(0.3) is None
    first = child.pid
    child.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # killed and reaped by the time stop() returns, 60 s before the task would end
    assert child.pid is None
    child.start(t("t_pid", id=2))
    assert child.wait(30)["value"] == child.pid != first
