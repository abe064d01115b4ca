"""Two examples of your own work on the cluster. Every module in this folder is imported by every worker
(``MPC_TASKS_DIR``, mounted read-only into the worker containers), and each ``@mpcluster.task`` in it becomes a
task kind that ``submit --kind NAME`` and ``Client.map(NAME, ...)`` can run.

A task gets its arguments (a JSON object) as keyword arguments and returns a JSON value. Try them (the clients
are in examples/, next to this folder: this one is imported by the workers, so it holds task kinds only):

    make job KIND=pi TASKS=8 ARGS='{"samples": 2000000}'
    python3 examples/pi.py                   # pi from 16 tasks, summed up here
    python3 examples/wordcount.py            # a whole book, counted by the cluster, reduced here
"""

from __future__ import annotations

import random
import re
from collections import Counter

import mpcluster

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@mpcluster.task("pi", cpu=True)
def pi(samples: int, seed: int | None = None) -> int:
    """CPU-bound: throw ``samples`` random darts at the unit square; return how many land inside the quarter
    circle. The client adds the hits of all tasks: pi ~= 4 * hits / darts. Pure Python arithmetic holds the GIL,
    so threads do not help here; processes (MPC_WORKER_PROCESSES) and more workers do."""
    if not 0 < samples <= 50_000_000:
        raise ValueError(f"samples={samples} is out of range: expected 1 to 50,000,000")
    rng = random.Random(seed)
    rand = rng.random
    return sum(1 for _ in range(samples) if rand() ** 2 + rand() ** 2 <= 1.0)


@mpcluster.task("wordcount")
def wordcount(text: str, top: int = 0) -> dict[str, int]:
    """Data: count the words of a piece of text (a few lines of a book). The client adds the counts of all
    pieces (a map on the cluster, a reduce at home). ``top`` > 0 keeps only the most common words."""
    counts = Counter(WORD.findall(text.lower()))
    return dict(counts.most_common(top) if top > 0 else counts)
