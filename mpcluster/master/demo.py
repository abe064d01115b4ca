"""The demo job a master runs at start (``MPC_DEMO_TASKS``, default 10): the lesson's own job, in the lesson's words
(``Put task``, ``Try get results...``, ``Result:``), plus which worker did each task and from which address."""

from __future__ import annotations

import json
import logging
import random
import threading
import uuid

from .dispatcher import Dispatcher

log = logging.getLogger("mpcluster")


def run_demo(dispatcher: Dispatcher, n_tasks: int, stop: threading.Event) -> None:
    """The lesson's job, in its words: random ints squared after 1 s of simulated work, plus who did each."""
    numbers = [random.randint(0, 10000) for _ in range(n_tasks)]
    for n in numbers:
        log.info("Put task %d...", n)
    job_id = "demo-" + uuid.uuid4().hex[:8]
    dispatcher.submit({"id": job_id, "kind": "square", "tasks": [{"n": n, "seconds": 1.0} for n in numbers]})
    log.info("Try get results...")
    cursor, summary = 0, None
    while not stop.is_set():  # a long poll of up to 1 s per round, so a stopping master is not held up
        cursor, chunk, summary = dispatcher.results(job_id, cursor, 1.0)
        for r in map(json.loads, chunk):
            n = numbers[r["id"]]
            if r["ok"]:
                log.info("Result: %d * %d = %d  (worker %s at %s)", n, n, r["value"], r["worker"], r["ip"])
            else:
                log.info("Result: task %d failed: %s  (worker %s at %s)", n, r["error"]["message"], r["worker"],
                         r["ip"])
        if summary["state"] != "running":
            break
    if summary and summary["complete"]:
        per = ", ".join(f"{w}={c}" for w, c in sorted(summary["workers"].items()))
        log.info("Demo job %s done: %d/%d results in %.1f s from %d workers (%s); redeliveries %d",
                 job_id, summary["done"], summary["tasks"], summary["seconds"], len(summary["workers"]), per,
                 summary["redeliveries"])
