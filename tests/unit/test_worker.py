"""The worker against a scripted master (and one test against a real Dispatcher in this process): its slots, their
links, what they lease, heartbeats, cancels, time limits and the graceful stop."""

import json
import os
import signal
import threading
import time

import pytest

from mpcluster import kinds
from mpcluster.protocol import Unreachable
from mpcluster.worker.process import Worker, slot_kinds
from tests.support import wait_until
from tests.unit import worker_kinds

KINDS = worker_kinds.load()


def t(kind, id, args=None, job="j", **extra):
    return {"job": job, "id": id, "kind": kind, "args": json.dumps(args or {}), "attempt": 1, **extra}


class ScriptedMaster:
    """Plays the master for every link the worker makes (one per thread). ``script`` maps a method to a list of
    answers, popped in order (a callable is called; an exception is raised); ``on`` maps a method to a function
    (link, args) -> answer. A lease with nothing scripted long-polls until the worker says it is stopping, as the
    master does."""

    def __init__(self, script=None, on=None):
        self.script, self.on = dict(script or {}), dict(on or {})
        self.calls: list[tuple[str, tuple, ScriptedLink]] = []
        self.links: list[ScriptedLink] = []
        self.stopping = threading.Event()
        self.cond = threading.Condition()

    def new_link(self):
        link = ScriptedLink(self)
        with self.cond:
            self.links.append(link)
        return link

    def answer(self, link, method, args):
        if method == "heartbeat" and args[1].get("state") == "stopping":
            self.stopping.set()
        with self.cond:
            self.calls.append((method, args, link))
            self.cond.notify_all()
            answers = self.script.get(method)
            answer = answers.pop(0) if answers else None
        if answer is None and method in self.on:
            answer = self.on[method](link, args)
        if callable(answer):
            answer = answer()
        if isinstance(answer, BaseException):
            raise answer
        if answer is None and method == "lease":
            self.stopping.wait(min(args[2], 0.5))  # a long poll (bounded here), ended by the stopping heartbeat
        if answer is None and method == "heartbeat":
            return {"leases": 0, "heartbeat_seconds": 0.05}
        return answer if answer is not None else []

    def of(self, method):
        with self.cond:
            return [(args, link) for m, args, link in self.calls if m == method]

    def methods(self):
        with self.cond:
            return [m for m, _, _ in self.calls if m != "heartbeat"]

    def await_(self, what, timeout=10.0):
        """Wait (bounded) until what() is true; what() runs with the calls lock held."""
        with self.cond:
            assert self.cond.wait_for(what, timeout), f"not seen within {timeout} s: {self.methods()}"


class ScriptedLink:
    where, ip, mode = "master:5000", "10.0.0.2", "mpcluster"

    def __init__(self, master):
        self.m = master
        self.opens = 0
        self.dispatcher = None
        self.threads: set[str] = set()

    def open_with_retry(self, stop, role, deadline=None):
        self.open()
        return True

    def open(self):
        self.opens += 1
        self.dispatcher = object()

    def close(self):
        self.dispatcher = None

    def call(self, method, *args):
        self.threads.add(threading.current_thread().name)
        try:
            return self.m.answer(self, method, args)
        except Unreachable:
            self.close()
            raise


def worker_for(master, **kw):
    kw = {"stop_grace": 1.0, "heartbeat_seconds": 0.05, "batch_max": 10, **kw}
    return Worker(master.new_link, "w1", tasks_dir=worker_kinds.DIR, task_modules=worker_kinds.MODULES, **kw)


def start(worker):
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    return th


def stop(worker, th, timeout=15):
    worker.stop.set()
    th.join(timeout)
    assert not th.is_alive(), "the worker did not stop"


def acked(master):
    return [r for args, _ in master.of("ack") for r in args[1]]


def released(master):
    return [tuple(k) for args, _ in master.of("release") for k in args[1]]


# ---- the loop and its answers (one slot) ------------------------------------------------------------------------

def test_results_survive_an_error_answer_and_a_lost_master():
    worker = None

    def lost_then_stop():
        worker.stop.set()  # after this, the worker leaves
        return Unreachable("connection closed by the master")

    master = ScriptedMaster({"lease": [[t("square", 7, {"n": 12, "seconds": 0})], lost_then_stop],
                             "ack": [RuntimeError("database or disk is full"), {"accepted": 1, "dropped": 0}],
                             "goodbye": [0]})
    worker = worker_for(master)
    assert worker.run() == 0
    acks = [args for args, _ in master.of("ack")]
    assert len(acks) == 2 and acks[0] == acks[1]  # the same result, sent again after the error answer
    assert acks[1][1][0]["value"] == 144 and acks[1][1][0]["ok"]
    assert master.methods()[-1] == "goodbye"


def test_a_lost_master_is_reopened_and_the_results_are_sent_there():
    worker = None

    def stop_now():
        worker.stop.set()
        return []

    master = ScriptedMaster({"lease": [[t("square", 1, {"n": 3, "seconds": 0})], stop_now],
                             "ack": [Unreachable("connection closed by the master"), {"accepted": 1, "dropped": 0}],
                             "goodbye": [0]})
    worker = worker_for(master)
    assert worker.run() == 0
    [(first, slot_link), (second, again)] = master.of("ack")
    assert slot_link is again and slot_link.opens == 2  # the slot's own link: opened, and reopened after the loss
    assert second[1][0]["value"] == 9


def test_a_master_error_on_the_last_ack_of_a_stopping_worker_stops_it_cleanly(caplog):
    worker = None

    def stop_then_fail():
        worker.stop.set()  # SIGTERM arrives while the master cannot write its journal
        return RuntimeError("database or disk is full")

    fail = [lambda: RuntimeError("database or disk is full")] * 50
    master = ScriptedMaster({"lease": [[t("square", 3, {"n": 5, "seconds": 0})]], "ack": [stop_then_fail, *fail],
                             "goodbye": [1]})
    worker = worker_for(master, stop_grace=0.3)
    with caplog.at_level("INFO", logger="mpcluster"):
        assert worker.run() == 0
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("could not hand over 1 results" in m and "run again elsewhere" in m for m in said), said
    assert master.methods()[-1] == "goodbye"  # what it held is handed back, so nothing waits for expiry
    assert not [r for r in caplog.records if r.exc_info]  # one line each, never a traceback


# ---- slots, their links, and what they lease ---------------------------------------------------------------------

def test_each_thread_slot_keeps_its_own_link():
    master = ScriptedMaster()
    worker = worker_for(master, threads=3)
    th = start(worker)
    master.await_(lambda: len({link for m, _, link in master.calls if m == "lease"}) == 3)
    stop(worker, th)
    by_thread = {}
    for link in master.links:
        assert len(link.threads) <= 1, f"a link was used by several threads: {link.threads}"
        by_thread.update({name: link for name in link.threads})
    # three slots, the heartbeat and the thread that runs the worker (its goodbye): five threads, five links
    assert set(by_thread) == {"thread 1", "thread 2", "thread 3", "heartbeat", th.name}
    assert len(master.links) == 5 and len({id(link) for link in master.links}) == 5
    assert [by_thread[f"thread {i}"].opens for i in (1, 2, 3)] == [1, 1, 1]  # each opened its own connection


def test_without_process_slots_thread_slots_lease_any_kind():
    master = ScriptedMaster()
    worker = worker_for(master, threads=2)
    th = start(worker)
    master.await_(lambda: sum(m == "lease" for m, _, _ in master.calls) >= 2)
    stop(worker, th)
    assert {len(args) for args, _ in master.of("lease")} == {4}  # no kinds: any (and an older master agrees)
    info = master.of("lease")[0][0][3]
    assert (info["threads"], info["processes"], info["kinds"]) == (2, 0, sorted(kinds.KINDS))
    assert info["session"] == worker.session and info["version"] and info["pid"] == os.getpid()


def test_process_slots_lease_the_cpu_bound_kinds_and_thread_slots_the_rest():
    cpu = sorted(k for k, v in kinds.KINDS.items() if v.cpu)
    assert "primes" in cpu and "t_pid" in cpu and "sleep" not in cpu

    given = [[t("primes", 1, {"n": 100}), t("t_pid", 2)]]

    def lease(link, args):
        return given.pop() if "process 1" in link.threads and given else None

    master = ScriptedMaster(on={"lease": lease})
    worker = worker_for(master, threads=2, processes=1)
    th = start(worker)
    master.await_(lambda: len([r for m, a, _ in master.calls if m == "ack" for r in a[1]]) == 2, 30)
    child = worker.slots[2].executor.pid  # the process slot's child, still there until the worker stops
    stop(worker, th)
    kinds_asked = {next(iter(link.threads)): tuple(args[4]) for args, link in master.of("lease")}
    assert kinds_asked == {"thread 1": tuple(slot_kinds(1)[0]), "thread 2": tuple(slot_kinds(1)[0]),
                           "process 1": tuple(cpu)}
    assert "sleep" in kinds_asked["thread 1"] and "primes" not in kinds_asked["thread 1"]
    by_id = {r["id"]: r for r in acked(master)}
    assert by_id[1]["value"] == 25
    assert by_id[2]["value"] == child != os.getpid()  # t_pid ran in the process slot's child


# ---- heartbeats and cancels --------------------------------------------------------------------------------------

def test_heartbeats_name_the_union_of_what_every_slot_holds():
    # slot 1 runs task 1; slot 2 has done task 2 and runs task 3 (acks go after the batch): 2 is done, not acked
    given = {"thread 1": [t("sleep", 1, {"seconds": 30})],
             "thread 2": [t("square", 2, {"n": 2, "seconds": 0}), t("sleep", 3, {"seconds": 30})]}
    master = ScriptedMaster(on={"lease": lambda link, args: given.pop(next(iter(link.threads)), None),
                                "release": lambda link, args: len(args[1])})
    worker = worker_for(master, threads=2, stop_grace=0.2)
    th = start(worker)
    everything = {("j", 1), ("j", 2), ("j", 3)}
    master.await_(lambda: any({tuple(k) for k in a[2]} == everything for m, a, _ in master.calls if m == "heartbeat"))
    stop(worker, th)
    assert sorted(released(master)) == [("j", 1), ("j", 3)]  # the stop handed back both running tasks ...
    assert [(r["id"], r["value"]) for r in acked(master)] == [(2, 4)]  # ... and acknowledged the done one
    assert worker.holdings.keys() == []  # acked or handed back: held no more
    assert master.methods()[-1] == "goodbye"


def idle_worker_beats(poll_seconds: float, idle_for: float = 2.5) -> int:
    """Heartbeats an idle worker sent after its first, when the master's long polls last ``poll_seconds``, its
    lease is 1 s and its heartbeat interval 0.5 s."""
    master = ScriptedMaster(on={"lease": lambda link, args: master.stopping.wait(poll_seconds) and [],
                                "heartbeat": lambda link, args: {"leases": 0, "lease_seconds": 1.0,
                                                                  "heartbeat_seconds": 0.5}})
    worker = worker_for(master)
    th = start(worker)
    master.await_(lambda: any(m == "lease" for m, _, _ in master.calls))
    first = len(master.of("heartbeat"))
    time.sleep(idle_for)  # the span observed: heartbeats are counted over it, not waited for
    beats = len(master.of("heartbeat")) - first
    stop(worker, th)
    return beats


def test_an_idle_worker_skips_heartbeats_while_its_long_polls_reach_the_master():
    # polls every 0.2 s: the master hears from the worker five times a beat; 2.5 s would be five beats
    assert idle_worker_beats(poll_seconds=0.2) <= 1


def test_an_idle_worker_whose_slots_are_not_calling_still_beats():
    # one poll that lasts the whole span: nothing else reaches the master, so the beats go on (about five)
    assert idle_worker_beats(poll_seconds=30) >= 3


@pytest.mark.parametrize(("lease", "poll"), [(10.0, 5.0), (3.0, 1.5), (60.0, 5.0)])
def test_an_idle_long_poll_lasts_half_the_masters_lease_at_most_5_s(lease, poll):
    master = ScriptedMaster(on={"heartbeat": lambda link, args: {"leases": 0, "lease_seconds": lease,
                                                                  "heartbeat_seconds": 1.0}})
    worker = worker_for(master)
    th = start(worker)
    master.await_(lambda: any(m == "lease" for m, _, _ in master.calls))
    stop(worker, th)
    assert {args[2] for args, _ in master.of("lease")} == {poll}  # the first heartbeat came before any lease


def test_a_cancel_in_a_heartbeat_reply_stops_the_running_task_and_drops_the_queued_one():
    KINDS.RELEASE.clear()
    KINDS.FINISHED.clear()
    cancel = [["j", 1], ["j", 2]]
    leases = [[t("t_hang", 1), t("square", 2, {"n": 5, "seconds": 0})], [t("square", 3, {"n": 3, "seconds": 0})]]

    def heartbeat(link, args):
        keys = {tuple(k) for k in args[2]}
        if {("j", 1), ("j", 2)} <= keys:
            return {"leases": 2, "heartbeat_seconds": 0.05, "cancel": cancel}
        return None

    master = ScriptedMaster(on={"heartbeat": heartbeat, "lease": lambda link, args: leases.pop(0) if leases else None})
    worker = worker_for(master)
    th = start(worker)
    master.await_(lambda: any(r["id"] == 3 for m, a, _ in master.calls if m == "ack" for r in a[1]))
    assert not KINDS.FINISHED.is_set()  # the slot went on while task 1 still ran: stopped, not waited for
    KINDS.RELEASE.set()
    assert KINDS.FINISHED.wait(5)  # the abandoned task ends later: its result is thrown away
    stop(worker, th)
    assert [(r["id"], r["value"]) for r in acked(master)] == [(3, 9)]  # neither cancelled task was acked
    assert released(master) == []  # nor handed back: the master dropped them
    named = [{tuple(k) for k in a[2]} for a, _ in master.of("heartbeat")]
    first = next(i for i, keys in enumerate(named) if ("j", 1) in keys)
    assert all(("j", 1) not in keys and ("j", 2) not in keys for keys in named[first + 1:])  # dropped at once
    assert worker.holdings.keys() == []


def test_short_tasks_run_on_the_slots_own_thread_and_can_still_be_cancelled(monkeypatch):
    from mpcluster.worker import slots

    monkeypatch.setattr(slots, "INLINE_BELOW", 1.0)  # "short" as this test's tasks are, however busy the machine
    leases = [[t("t_thread", 1)], [t("square", i, {"n": i, "seconds": 0}) for i in (2, 3, 4)], [t("t_thread", 5)],
              [t("sleep", 6, {"seconds": 30})], [t("square", 7, {"n": 7, "seconds": 0})],
              [t("sleep", 8, {"seconds": 30})]]

    def heartbeat(link, args):
        return {"leases": 1, "heartbeat_seconds": 0.05, "cancel": [["j", 6]]} if ["j", 6] in args[2] else None

    master = ScriptedMaster(on={"heartbeat": heartbeat, "lease": lambda link, args: leases.pop(0) if leases else None,
                                "release": lambda link, args: len(args[1])})
    worker = worker_for(master, stop_grace=0.2)
    th = start(worker)
    master.await_(lambda: any(["j", 8] in a[2] for m, a, _ in master.calls if m == "heartbeat"))
    stop(worker, th)
    values = {r["id"]: r["value"] for r in acked(master)}
    assert released(master) == [("j", 8)]  # running inline when the grace ended: stopped and handed back
    # the first task, before the slot knows how long tasks take, goes to a helper thread; once they are known to
    # be short, the slot runs them itself (a hand-over costs more than such a task)
    assert (values[1], values[5]) == ("task", "thread 1")
    assert 6 not in values and values[7] == 49  # the inline 30 s sleep was cancelled through its abort event


def test_a_cancel_kills_a_process_slots_child_and_the_next_task_gets_a_new_one(tmp_path):
    pidfile = tmp_path / "pids"
    leases = [[t("t_spin", 1, {"seconds": 60, "pidfile": str(pidfile)})], [t("t_pid", 2)]]

    def heartbeat(link, args):
        if ["j", 1] in args[2] and pidfile.exists():  # cancelled once it runs in the child
            return {"leases": 1, "heartbeat_seconds": 0.05, "cancel": [["j", 1]]}
        return None

    def lease(link, args):
        return leases.pop(0) if "process 1" in link.threads and leases else None

    master = ScriptedMaster(on={"heartbeat": heartbeat, "lease": lease})
    worker = worker_for(master, processes=1)
    th = start(worker)
    master.await_(lambda: any(r["id"] == 2 for m, a, _ in master.calls if m == "ack" for r in a[1]), 30)
    child = worker.slots[1].executor.pid
    stop(worker, th)
    [r] = acked(master)
    [first] = [int(p) for p in pidfile.read_text().split()]  # the child that ran the cancelled task
    assert r["value"] == child != first  # the next task ran in the slot's new child
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # the cancelled task's child was killed


# ---- time limits -------------------------------------------------------------------------------------------------

def test_a_thread_task_past_its_time_limit_is_abandoned_and_the_slot_carries_on():
    KINDS.RELEASE.clear()
    KINDS.FINISHED.clear()
    master = ScriptedMaster({"lease": [[t("t_hang", 1, timeout=0.3)], [t("square", 2, {"n": 4, "seconds": 0})]]})
    worker = worker_for(master)
    th = start(worker)
    master.await_(lambda: len([r for m, a, _ in master.calls if m == "ack" for r in a[1]]) == 2)
    assert not KINDS.FINISHED.is_set()  # both results are in while the task past its limit still runs
    KINDS.RELEASE.set()
    assert KINDS.FINISHED.wait(5)  # the abandoned task ends later: its result is thrown away
    stop(worker, th)
    first, second = acked(master)
    assert (first["id"], first["ok"], first["error"]["type"]) == (1, False, "TaskTimeout")
    assert first["error"]["message"] == "ran past its 0.3 s time limit; abandoned (a thread cannot be killed)"
    assert first["elapsed"] >= 0.3
    assert (second["id"], second["value"]) == (2, 16)
    assert len(acked(master)) == 2  # "late" never arrived


def test_a_process_task_past_its_time_limit_is_killed(tmp_path):
    pidfile = tmp_path / "pids"
    leases = [[t("t_spin", 1, {"seconds": 60, "pidfile": str(pidfile)}, timeout=0.5)], [t("t_pid", 2)]]
    master = ScriptedMaster(on={"lease": lambda link, args: leases.pop(0) if leases and args[4:] and
                                "t_spin" in args[4] else None})
    worker = worker_for(master, processes=1)
    th = start(worker)
    master.await_(lambda: len([r for m, a, _ in master.calls if m == "ack" for r in a[1]]) == 2, 30)
    child = worker.slots[1].executor.pid
    stop(worker, th)
    first, second = acked(master)
    assert first["error"] == {"type": "TaskTimeout", "message": "ran past its 0.5 s time limit; killed",
                              "traceback": ""}
    assert first["elapsed"] >= 0.5
    [killed] = [int(p) for p in pidfile.read_text().split()]
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # killed at its limit, not left to spin for its 60 s
    assert second["value"] == child != killed  # the next task ran in the slot's new child


def test_a_new_childs_start_up_does_not_count_against_the_time_limit():
    leases = [[t("t_pid", 1, timeout=0.5)]]
    master = ScriptedMaster(on={"lease": lambda link, args: leases.pop(0) if leases and "process 1" in link.threads
                                else None})
    worker = Worker(master.new_link, "w1", processes=1, stop_grace=1.0, heartbeat_seconds=0.05,
                    tasks_dir=worker_kinds.DIR, task_modules="unit_kinds,slow_start")  # the child imports for 1 s
    th = start(worker)
    master.await_(lambda: any(m == "ack" for m, _, _ in master.calls), 30)
    child = worker.slots[1].executor.pid
    stop(worker, th)
    [r] = acked(master)
    assert r["ok"] and r["value"] == child  # 1 s to start, yet within its 0.5 s limit, in the first child


# ---- the graceful stop -------------------------------------------------------------------------------------------

def test_sigterm_drains_every_slot_hand_back_then_ack_then_goodbye():
    """Slot 1 holds a short task and one not started; slot 2 a task that outlasts the grace; slot 3 is idle."""
    given = {"thread 1": [t("sleep", 1, {"seconds": 0.6}), t("square", 2, {"n": 2, "seconds": 0})],
             "thread 2": [t("sleep", 3, {"seconds": 30})], "thread 3": [t("square", 4, {"n": 4, "seconds": 0})]}

    def lease(link, args):
        return given.pop(next(iter(link.threads)), None)

    master = ScriptedMaster(on={"lease": lease, "release": lambda link, args: len(args[1])}, script={"goodbye": [2]})
    worker = worker_for(master, threads=3, stop_grace=1.5)
    held = {("j", 1), ("j", 2), ("j", 3)}

    def kill_when_busy():
        master.await_(lambda: any({tuple(k) for k in a[2]} == held for m, a, _ in master.calls if m == "heartbeat"))
        os.kill(os.getpid(), signal.SIGTERM)

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    worker.install_signals()
    threading.Thread(target=kill_when_busy, daemon=True).start()
    try:
        assert worker.run() == 0  # on the main thread, as in `python3 -m mpcluster worker`
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert worker.signal_name == "SIGTERM"
    calls = [(m, a) for m, a, _ in master.calls]
    order = [m for m, _ in calls if m != "heartbeat"]
    assert order[-1] == "goodbye" and order.count("goodbye") == 1
    stopping = next(i for i, (m, a) in enumerate(calls) if m == "heartbeat" and a[1]["state"] == "stopping")
    rel = [i for i, (m, _) in enumerate(calls) if m == "release"]
    ack_of_1 = next(i for i, (m, a) in enumerate(calls) if m == "ack" and any(r["id"] == 1 for r in a[1]))
    assert stopping < rel[0]  # the master hears "stopping" first: it ends the long polls
    assert sorted(released(master)) == [("j", 2), ("j", 3)]
    hand_back_2 = next(i for i in rel if ["j", 2] in calls[i][1][1])
    assert hand_back_2 < ack_of_1  # the task not started is handed back at once, before the one in hand is done
    assert {r["id"]: r["value"] for r in acked(master)} == {1: 0.6, 4: 16}


def test_a_stop_kills_a_process_slots_child_past_the_grace_and_hands_its_task_back(tmp_path):
    pidfile = tmp_path / "pids"
    leases = [[t("t_pid", 1), t("t_spin", 2, {"seconds": 60, "pidfile": str(pidfile)})]]
    master = ScriptedMaster(on={"lease": lambda link, args: leases.pop(0) if leases and "process 1" in link.threads
                                else None, "release": lambda link, args: len(args[1])}, script={"goodbye": [1]})
    worker = worker_for(master, processes=1, stop_grace=0.3)
    th = start(worker)
    # task 1 done, task 2 running: it has written its child's pid
    [child] = wait_until(lambda: [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else None, 30,
                         "task 2 to start")
    stop(worker, th)
    assert released(master) == [("j", 2)] and master.methods()[-1] == "goodbye"
    assert [(r["id"], r["value"]) for r in acked(master)] == [(1, child)]  # done before the stop: acknowledged
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed at the end of the grace, and no successor started for a stopping worker
    assert worker.slots[1].executor.pid is None


# ---- against a real dispatcher -----------------------------------------------------------------------------------

class InProcessLink(ScriptedLink):
    """A link to a real Dispatcher in this process; ``lose`` names calls whose reply is lost after the master ran
    them (the connection dropped on the way back)."""

    def __init__(self, dispatcher, lose: dict[str, int], made: list):
        super().__init__(None)
        self.d, self.lose = dispatcher, lose
        made.append(self)

    def call(self, method, *args):
        self.threads.add(threading.current_thread().name)
        answer = getattr(self.d, method)(*args)
        if self.lose.get(method, 0) > 0:
            self.lose[method] -= 1
            raise Unreachable("connection closed by the master")
        return answer


def wait_complete(d, job, timeout=10):
    """The job's results (records as dicts) and summary once it is complete."""
    wait_until(lambda: d.job(job)["complete"], timeout, lambda: f"job {job} complete ({d.status()['queues']})")
    _, records, summary = d.results(job, 0)
    return [json.loads(r) for r in records], summary


def test_a_lost_lease_reply_does_not_pin_the_task_while_the_worker_lives():
    from mpcluster.master.dispatcher import Dispatcher

    d = Dispatcher(lease_seconds=1.0, heartbeat_seconds=0.1)
    d.submit({"id": "j", "kind": "square", "tasks": [{"n": 4, "seconds": 0}]})
    lose, made = {"lease": 1}, []  # the master granted the task, but the worker never heard of it
    worker = Worker(lambda: InProcessLink(d, lose, made), "w1", batch_max=10, stop_grace=1, heartbeat_seconds=0.1)
    th = start(worker)
    try:
        [r], summary = wait_complete(d, "j")
    finally:
        stop(worker, th)
    assert (r["value"], r["worker"], summary["redeliveries"]) == (16, "w1", 1)


def test_four_thread_slots_run_a_real_dispatchers_job_four_tasks_at_once():
    from mpcluster.master.dispatcher import Dispatcher

    KINDS.MEETING.reset()
    d = Dispatcher(lease_seconds=5.0, heartbeat_seconds=0.5)
    made = []
    worker = Worker(lambda: InProcessLink(d, {}, made), "w1", threads=4, stop_grace=1)
    th = start(worker)
    try:
        wait_until(lambda: d.status()["workers"], 10, "the worker's first heartbeat (it offers t_meet)")
        # each task waits until four run at once: on fewer slots, or one slot taking several, they would fail
        d.submit({"id": "j", "kind": "t_meet", "tasks": [{"seconds": 0.4}] * 8})
        results, summary = wait_complete(d, "j", 30)
    finally:
        stop(worker, th)
    assert sorted(r["id"] for r in results) == list(range(8)) and summary["duplicates_dropped"] == 0
    assert all(r["ok"] and r["worker"] == "w1" and r["elapsed"] >= 0.4 for r in results), results
    assert {name for link in made for name in link.threads} >= {"thread 1", "thread 2", "thread 3", "thread 4"}


@pytest.fixture(autouse=True)
def _no_leftover_slot_threads():
    yield
    # every test stops its worker: no slot thread may outlive it (a hang would show up here first)
    alive = [th.name for th in threading.enumerate() if th.name.startswith(("thread ", "process "))]
    assert alive == [], alive
