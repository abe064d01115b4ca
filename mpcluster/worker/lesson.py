"""Our worker against a plain lesson master (one that offers only the lesson's two queues): the lesson's own loop,
on one thread, with our worker's reconnection and stop."""

from __future__ import annotations

import logging
import queue
import threading

from .. import kinds
from ..classic import lesson_work
from ..link import Link
from ..protocol import RESULT_QUEUE, TASK_QUEUE

log = logging.getLogger("mpcluster")


def serve_lesson_master(link: Link, worker_id: str, stop: threading.Event, abort: threading.Event) -> int:
    """Our worker against a plain lesson master: the lesson's loop (get with timeout 1, work, put the string)."""
    log.info("worker %s: the master offers only the lesson's queues: serving it the classic way", worker_id)
    n = None
    while not stop.is_set():
        try:
            task_q, result_q = getattr(link.manager, TASK_QUEUE)(), getattr(link.manager, RESULT_QUEUE)()
            idle_said = False
            while not stop.is_set():
                try:
                    n = task_q.get(timeout=1)
                except queue.Empty:
                    if not idle_said:
                        log.info("task queue is empty.")
                        idle_said = True
                    continue
                idle_said = False
                log.info("run task %s * %s...", n, n)
                result_q.put(lesson_work(n, abort))
                n = None
        except kinds.Interrupted:
            try:
                task_q.put(n)  # hand it back to the lesson's queue
            except (OSError, EOFError):
                pass
            break
        except (OSError, EOFError) as e:
            if stop.is_set():
                break
            log.warning("worker %s: lost the classic master at %s (%s); reconnecting", worker_id, link.where, e)
            link.close()
            if not link.open_with_retry(stop, f"worker {worker_id}"):
                break
    log.info("worker exit.")
    return 0
