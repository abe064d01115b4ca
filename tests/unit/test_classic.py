"""The lesson's protocol: its strings, and the master's bridge from its queues to leases."""

import json
import queue

from mpcluster.classic import error_line, lesson_work, result_line
from mpcluster.master.bridge import ClassicBridge


def test_the_lessons_lines():
    assert result_line(3344) == "3344 * 3344 = 11182336"
    assert error_line("x", "not an int") == "error: task 'x': not an int"


def test_the_lessons_work_refuses_what_is_not_an_int():
    assert lesson_work("seven") == "error: task 'seven': not an int"
    assert lesson_work(True) == "error: task True: not an int"


def test_the_bridge_leases_requeues_and_drops_late_duplicates():
    tq, rq = queue.Queue(), queue.Queue()
    bridge = ClassicBridge(tq, rq, seconds=0)
    for n in (5, 6):
        tq.put(n)
    a, b = bridge.take(5)
    assert (a["kind"], json.loads(a["args"]), json.loads(b["args"])["n"]) == ("square", {"n": 5, "seconds": 0}, 6)
    bridge.requeue(a["id"], redelivery=True)  # its worker died: back on the lesson's queue
    assert tq.get_nowait() == 5
    assert bridge.complete_all([{"id": b["id"], "ok": True}, {"id": b["id"], "ok": True}]) == 1
    assert rq.get_nowait() == "6 * 6 = 36" and rq.empty()
    assert bridge.stats == {"done": 1, "redeliveries": 1, "duplicates_dropped": 1}
    assert bridge.sizes() == {"classic_tasks": 0, "classic_results": 0}


def test_a_put_on_the_lessons_queue_wakes_the_master():
    from mpcluster.master.bridge import NotifyingQueue

    woken = []
    bridge = ClassicBridge(NotifyingQueue(), queue.Queue())
    bridge.on_put(lambda: woken.append(bridge.tasks.qsize()))
    bridge.tasks.put(7)
    assert woken == [1]  # called after the put, with the item already there
