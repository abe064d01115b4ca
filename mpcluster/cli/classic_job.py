"""``submit --protocol classic``: the lesson's master loop (ints on the task queue, strings back), run against a
running master, with the summary every ``submit`` prints."""

from __future__ import annotations

import json
import queue
import random
import threading
import time

from ..classic import RESULT_RE
from ..link import Link
from ..protocol import RESULT_QUEUE, TASK_QUEUE, Unreachable


def submit_classic(link: Link, n_tasks: int, seed: int | None, *, as_json: bool, timeout: float,
                   connect_timeout: float) -> int:
    """The lesson's master loop against a running master: ints on the task queue, strings back."""
    stop = threading.Event()
    if not link.open_with_retry(stop, "submit", time.monotonic() + connect_timeout):
        raise Unreachable(f"could not reach the master at {link.where} within {connect_timeout:g} s")
    task_q, result_q = getattr(link.manager, TASK_QUEUE)(), getattr(link.manager, RESULT_QUEUE)()
    rng = random.Random(seed)
    numbers = [rng.randint(0, 10000) for _ in range(n_tasks)]
    started = time.monotonic()
    for n in numbers:
        print("Put task %d..." % n, flush=True)
        task_q.put(n)
    print("Try get results...", flush=True)
    wanted: dict[int, int] = {}
    for n in numbers:
        wanted[n] = wanted.get(n, 0) + 1
    got, errors, wrong, duplicates = 0, 0, 0, 0
    stall = timeout or 30.0  # like the lesson's get(timeout=10), but per stretch without any result
    last = time.monotonic()
    while got + errors < n_tasks and time.monotonic() - last < stall:
        try:
            r = result_q.get(timeout=1)
        except queue.Empty:
            continue
        last = time.monotonic()
        print("Result: %s" % r, flush=True)
        m = RESULT_RE.match(str(r))
        if not m:
            errors += 1
            continue
        n = int(m.group(1))
        if wanted.get(n, 0) == 0:
            duplicates += 1
            continue
        wanted[n] -= 1
        got += 1
        wrong += int(m.group(3)) != n * n
    missing = [n for n, c in wanted.items() for _ in range(c)]
    seconds = time.monotonic() - started
    print(f"classic job: {got}/{n_tasks} results in {seconds:.1f} s, {errors} errors, {len(missing)} missing",
          flush=True)
    if as_json:
        print(json.dumps({"tasks": n_tasks, "results": got, "missing": missing, "duplicates": duplicates,
                          "errors": errors, "wrong": wrong, "workers": {}, "seconds": round(seconds, 3),
                          "protocol": "classic"}), flush=True)
    return 0 if not missing and not errors else 1
