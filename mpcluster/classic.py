"""The lesson's protocol in one place: plain ints on ``get_task_queue``, the lesson's strings on
``get_result_queue``, and the lesson's work on one item.

Three users of it, one per role:
- ``master.bridge.ClassicBridge``: our workers lease items from the lesson's task queue through the dispatcher
  (so an item taken by a worker that dies goes back on the queue); their results go on the lesson's result queue
  as the lesson's strings.
- ``worker.lesson.serve_lesson_master``: our worker's fallback loop against a plain lesson master.
- ``cli.classic_job.submit_classic``: the lesson's master loop, run against a running master
  (``submit --protocol classic``).
"""

from __future__ import annotations

import re
import threading

from . import kinds

LESSON_SECONDS = 1.0  # the lesson's time.sleep(1)
RESULT_RE = re.compile(r"^(-?\d+) \* (-?\d+) = (-?\d+)$")


def result_line(n: int) -> str:
    """The lesson's result string."""
    return "%d * %d = %d" % (n, n, n * n)


def error_line(item: object, error: object) -> str:
    """What goes on the lesson's result queue when an item could not be squared (the lesson has no errors)."""
    return f"error: task {item!r:.40}: {error}"


def lesson_work(item: object, abort: threading.Event | None = None) -> str:
    """The lesson's work on one item: its result line, or an error line. Raises kinds.Interrupted on abort."""
    if not isinstance(item, int) or isinstance(item, bool):
        return error_line(item, "not an int")
    try:
        kinds.run("square", {"n": item, "seconds": LESSON_SECONDS}, abort)
    except kinds.TaskError as e:
        return error_line(item, e)
    return result_line(item)
