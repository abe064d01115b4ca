"""The worker's loop against a scripted master link: what it does with each kind of answer."""

import json
import threading

from mpcluster.protocol import Unreachable
from mpcluster.worker import Worker


class ScriptedLink:
    """Plays the master: each call pops the next scripted answer for that method (an exception is raised)."""

    where, ip, mode = "master:5000", "10.0.0.2", "mpcluster"

    def __init__(self, script: dict):
        self.script = script
        self.calls: list[tuple] = []
        self.opens = 0
        self.dispatcher = object()
        self.lock = threading.Lock()

    def open_with_retry(self, stop, role, deadline=None):
        self.opens += 1
        return True

    def open(self):
        self.opens += 1

    def close(self):
        pass

    def call(self, method, *args):
        with self.lock:
            if method == "heartbeat":
                return {"leases": 0}
            self.calls.append((method, args))
            answers = self.script.get(method, [])
            answer = answers.pop(0) if answers else None
        if callable(answer):
            answer = answer()
        if isinstance(answer, BaseException):
            raise answer
        return answer if answer is not None else []


def test_results_survive_an_error_answer_and_a_lost_master():
    task = {"job": "j", "id": 7, "kind": "square", "args": {"n": 12, "seconds": 0}}
    worker = None

    def lost_then_stop():
        worker.stop.set()  # after this, the worker leaves
        return Unreachable("connection closed by the master")

    link = ScriptedLink({
        "lease": [[task], lost_then_stop],
        "ack": [RuntimeError("database or disk is full"), {"accepted": 1, "dropped": 0}],
        "goodbye": [0],
    })
    worker = Worker(link, "w1", batch_max=10, stop_grace=1, heartbeat_seconds=60)
    assert worker.run() == 0
    acks = [args for method, args in link.calls if method == "ack"]
    assert len(acks) == 2 and acks[0] == acks[1]  # the same result, sent again after the error answer
    assert acks[1][1][0]["value"] == 144 and acks[1][1][0]["ok"]
    assert [m for m, _ in link.calls][-1] == "goodbye"


def test_a_lost_master_is_reopened_and_the_results_are_sent_there():
    task = {"job": "j", "id": 1, "kind": "square", "args": {"n": 3, "seconds": 0}}
    worker = None

    def stop_now():
        worker.stop.set()
        return []

    link = ScriptedLink({
        "lease": [[task], stop_now],
        "ack": [Unreachable("connection closed by the master"), {"accepted": 1, "dropped": 0}],
        "goodbye": [0],
    })
    worker = Worker(link, "w1", batch_max=10, stop_grace=1, heartbeat_seconds=60)
    assert worker.run() == 0
    assert link.opens == 2  # the first connection, and the reconnection after the loss
    acks = [args for method, args in link.calls if method == "ack"]
    assert len(acks) == 2 and acks[1][1][0]["value"] == 9


def test_a_master_error_on_the_last_ack_of_a_stopping_worker_stops_it_cleanly(caplog):
    task = {"job": "j", "id": 3, "kind": "square", "args": {"n": 5, "seconds": 0}}
    worker = None

    def stop_then_fail():
        worker.stop.set()  # SIGTERM arrives while the master cannot write its journal
        return RuntimeError("database or disk is full")

    fail = [lambda: RuntimeError("database or disk is full")] * 50
    link = ScriptedLink({"lease": [[task]], "ack": [stop_then_fail, *fail], "goodbye": [1]})
    worker = Worker(link, "w1", batch_max=10, stop_grace=0.3, heartbeat_seconds=60)
    with caplog.at_level("INFO", logger="mpcluster"):
        assert worker.run() == 0
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("could not hand over 1 results" in m and "run again elsewhere" in m for m in said), said
    assert [m for m, _ in link.calls][-1] == "goodbye"  # what it held is handed back, so nothing waits for expiry


class InProcessLink(ScriptedLink):
    """A link to a real Dispatcher in this process; ``lose`` names calls whose reply is lost after the master ran
    them (the connection dropped on the way back)."""

    def __init__(self, dispatcher, lose: dict[str, int]):
        super().__init__({})
        self.d, self.lose = dispatcher, dict(lose)

    def call(self, method, *args):
        answer = getattr(self.d, method)(*args)
        with self.lock:
            self.calls.append((method, args))
            if self.lose.get(method, 0) > 0:
                self.lose[method] -= 1
                raise Unreachable("connection closed by the master")
        return answer


def test_a_lost_lease_reply_does_not_pin_the_task_while_the_worker_lives():
    import time

    from mpcluster.dispatcher import Dispatcher

    d = Dispatcher(lease_seconds=1.0, heartbeat_seconds=0.1)
    d.submit({"id": "j", "kind": "square", "tasks": [{"n": 4, "seconds": 0}]})
    link = InProcessLink(d, {"lease": 1})  # the master granted the task, but the worker never heard of it
    worker = Worker(link, "w1", batch_max=10, stop_grace=1, heartbeat_seconds=0.1)
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    end = time.monotonic() + 10
    try:
        while not d.job("j")["complete"]:
            assert time.monotonic() < end, f"the task was never run again: {d.status()['queues']}"
            time.sleep(0.05)
    finally:
        worker.stop.set()
        t.join(10)
    _, [r], summary = d.results("j", 0)
    r = json.loads(r)
    assert (r["value"], r["worker"], summary["redeliveries"]) == (16, "w1", 1)
