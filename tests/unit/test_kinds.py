import threading

import pytest

from mpcluster import kinds
from mpcluster.worker.runner import execute


def test_kinds_compute_the_right_values():
    assert kinds.run("square", {"n": 3344, "seconds": 0}) == 3344 * 3344
    assert kinds.run("sleep", {"seconds": 0.01}) == 0.01
    assert kinds.run("primes", {"n": 100}) == 25
    assert kinds.count_primes(10**5) == 9592


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
    with pytest.raises(kinds.TaskError) as e:
        kinds.validate(kind, args)
    assert message in str(e.value)


def test_a_bad_task_gives_an_error_result_and_the_worker_goes_on():
    r = execute({"job": "j", "id": 1, "kind": "primes", "args": {"n": 10**12}}, "w1", "10.0.0.1")
    assert (r["ok"], r["value"], r["id"], r["worker"]) == (False, None, 1, "w1")
    assert r["error"] == {"type": "TaskError", "message": "n=1000000000000 is out of range: expected 0 to 10000000",
                          "traceback": ""}


def test_an_exception_inside_a_task_becomes_its_error_result():
    @kinds.task("test-divide")
    def divide(a: int, b: int) -> float:
        return a / b

    r = execute({"job": "j", "id": 2, "kind": "test-divide", "args": '{"a": 1, "b": 0}'}, "w1", "")
    assert r["ok"] is False and r["error"]["type"] == "ZeroDivisionError"
    assert r["error"]["message"] == "division by zero"
    assert "return a / b" in r["error"]["traceback"]  # the worker-side traceback travels back
    assert execute({"job": "j", "id": 3, "kind": "test-divide", "args": '{"a": 1, "b": 4}'}, "w1", "")["value"] == 0.25


def test_registration_by_name_and_its_rules():
    @kinds.task("test-words", cpu=True)
    def words(text: str, lower: bool = False) -> dict:
        return {"n": len(text.split())}

    kind = kinds.KINDS["test-words"]
    assert (kind.fn, kind.cpu, kind.module) == (words, True, __name__)
    assert kinds.run("test-words", {"text": "a b c"}) == {"n": 3}
    with pytest.raises(ValueError, match="task kind 'test-words' is registered twice"):
        kinds.task("test-words")(lambda text: 0)
    with pytest.raises(ValueError, match="task kind 'a b' is not a valid name"):
        kinds.task("a b")
    with pytest.raises(kinds.TaskError, match=r"the arguments do not fit test-words\(text: str, lower: bool = False\): "
                                               "missing a required argument: 'text'"):
        kinds.run("test-words", {"txt": "a"})
    with pytest.raises(kinds.TaskError, match="got an unexpected keyword argument 'upper'"):
        kinds.run("test-words", {"text": "a", "upper": True})

    @kinds.task("test-returns-set")
    def returns_set() -> set:
        return {1}

    with pytest.raises(kinds.TaskError, match="the task returned a set, which is not a JSON value"):
        kinds.run("test-returns-set", {})


def test_task_modules_load_from_a_folder_and_failures_are_one_line_each(tmp_path):
    (tmp_path / "good_kinds.py").write_text("import mpcluster\n\n@mpcluster.task('test-good')\ndef good(x):\n"
                                            "    return x + 1\n")
    (tmp_path / "broken_kinds.py").write_text("import mpcluster\n\nx = 1 +\n")
    (tmp_path / "raising_kinds.py").write_text("import os\n\nos.environ['NOPE_NOT_SET']\n")
    (tmp_path / "_private.py").write_text("raise SystemExit(3)\n")
    problems = kinds.load_modules(str(tmp_path), None)
    assert len(problems) == 2  # the good module loaded; the private one was not imported
    assert problems[0] == (f"cannot import task module 'broken_kinds' from {tmp_path}: SyntaxError: invalid syntax "
                           "(broken_kinds.py, line 3)")
    assert problems[1] == (f"cannot import task module 'raising_kinds' from {tmp_path}: KeyError: 'NOPE_NOT_SET' "
                           "(raising_kinds.py, line 3)")
    assert kinds.run("test-good", {"x": 1}) == 2
    assert kinds.load_modules(str(tmp_path / "none"), None) == []
    assert kinds.load_modules(str(tmp_path / "none"), "x") == [
        f"MPC_TASK_MODULES='x': MPC_TASKS_DIR={str(tmp_path / 'none')!r} is not a folder"]
    assert kinds.load_modules(str(tmp_path), "nosuch") == [
        f"cannot import task module 'nosuch' from {tmp_path}: ModuleNotFoundError: No module named 'nosuch'"]


def test_simulated_work_stops_when_the_worker_aborts():
    abort = threading.Event()
    abort.set()
    with pytest.raises(kinds.Interrupted):
        kinds.run("square", {"n": 2, "seconds": 30}, abort)
