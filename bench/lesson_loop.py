"""The lesson's loop, for the benchmark: its master's two queues, and its worker's one number per round trip.

    python3 lesson_loop.py serve                   the lesson's master: a BaseManager serving get_task_queue and
                                                   get_result_queue (plus get_ready_queue, see below) on LESSON_PORT
    python3 lesson_loop.py work                    the lesson's worker loop (task_worker.py) without time.sleep(1),
                                                   forever: get(timeout=1) a number, put '%d * %d = %d' back
    python3 lesson_loop.py drive --tasks N --ready K
                                                   what task_master.py does, timed: wait until K more workers said
                                                   they are connected, put N numbers, read N results; one JSON line

Only the standard library: it runs in the cluster's own images (bench/compose.lesson-loop.yaml mounts it). The
ready queue is the one addition to the lesson: each worker puts its hostname there once connected, so the timed
part starts with every worker in its loop (the lesson itself starts its workers by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import socket
import sys
import time
from multiprocessing.managers import BaseManager

_task_queue: queue.Queue = queue.Queue()
_result_queue: queue.Queue = queue.Queue()
_ready_queue: queue.Queue = queue.Queue()


def get_task_queue() -> queue.Queue:
    return _task_queue


def get_result_queue() -> queue.Queue:
    return _result_queue


def get_ready_queue() -> queue.Queue:
    return _ready_queue


class QueueManager(BaseManager):
    pass


def _key() -> bytes:
    with open(os.environ.get("LESSON_AUTHKEY_FILE", "/run/secrets/authkey"), "rb") as f:
        return f.read().strip()


def _port() -> int:
    return int(os.environ.get("LESSON_PORT", "5000"))


def serve() -> None:
    QueueManager.register("get_task_queue", callable=get_task_queue)
    QueueManager.register("get_result_queue", callable=get_result_queue)
    QueueManager.register("get_ready_queue", callable=get_ready_queue)
    QueueManager(address=("", _port()), authkey=_key()).get_server().serve_forever()


def _connect(host: str) -> QueueManager:
    for name in ("get_task_queue", "get_result_queue", "get_ready_queue"):
        QueueManager.register(name)
    deadline = time.monotonic() + 60
    while True:
        m = QueueManager(address=(host, _port()), authkey=_key())
        try:
            m.connect()
            return m
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def work() -> None:
    m = _connect(os.environ.get("LESSON_MASTER", "master"))
    task, result = m.get_task_queue(), m.get_result_queue()
    m.get_ready_queue().put(socket.gethostname())
    while True:  # the lesson's loop, one number per round trip each way, with no time.sleep(1)
        try:
            n = task.get(timeout=1)
            result.put("%d * %d = %d" % (n, n, n * n))  # noqa: UP031 - the lesson's own format
        except queue.Empty:
            pass


def drive(n_tasks: int, ready: int) -> None:
    m = _connect("127.0.0.1")
    task, result, ready_q = m.get_task_queue(), m.get_result_queue(), m.get_ready_queue()
    workers = [ready_q.get(timeout=120) for _ in range(ready)]
    numbers = [random.randint(0, 10000) for _ in range(n_tasks)]
    expected: dict[str, int] = {}
    for n in numbers:
        s = "%d * %d = %d" % (n, n, n * n)  # noqa: UP031
        expected[s] = expected.get(s, 0) + 1
    started = time.monotonic()
    for n in numbers:  # as task_master.py: put every number, then read every result
        task.put(n)
    received = wrong = 0
    try:
        for _ in range(n_tasks):
            r = result.get(timeout=30)
            received += 1
            if expected.get(r, 0) > 0:
                expected[r] -= 1
            else:
                wrong += 1
    except queue.Empty:
        pass
    seconds = time.monotonic() - started
    print(json.dumps({"tasks": n_tasks, "results": received, "wrong": wrong, "seconds": round(seconds, 4),
                      "rate": round(received / seconds, 1) if seconds > 0 else 0.0, "workers_ready": workers}))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lesson_loop.py")
    p.add_argument("role", choices=["serve", "work", "drive"])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--ready", type=int, default=0, help="drive: how many new workers to wait for first")
    a = p.parse_args(argv)
    if a.role == "serve":
        serve()
    elif a.role == "work":
        work()
    else:
        drive(a.tasks, a.ready)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
