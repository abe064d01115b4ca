"""Estimate pi on the cluster: each task throws darts (CPU-bound work in pure Python), the hits are added here.
Runs from the repo folder against `make up`'s cluster:

    python3 examples/pi.py [--tasks 16] [--samples 1000000] [--master 127.0.0.1:5000]
"""

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the mpcluster package of this checkout

from mpcluster import Client, TaskFailed  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--samples", type=int, default=1_000_000, help="darts per task")
    p.add_argument("--master", default="127.0.0.1:5000")
    p.add_argument("--authkey-file", default=str(ROOT / ".secrets" / "authkey"))
    a = p.parse_args()
    started = time.monotonic()
    with Client(a.master, authkey_file=a.authkey_file) as c:
        job = c.submit("pi", ({"samples": a.samples, "seed": i} for i in range(a.tasks)))
        hits = workers = 0
        seen = set()
        for r in job.results():  # in arrival order
            if not r["ok"]:
                raise TaskFailed(job.id, r)
            hits += r["value"]
            seen.add(r["worker"])
        workers = len(seen)
    estimate = 4 * hits / (a.tasks * a.samples)
    print(f"pi ~= {estimate:.6f} (error {abs(estimate - math.pi):.1e}) from {a.tasks * a.samples:,} darts in "
          f"{a.tasks} tasks on {workers} worker{'s' * (workers != 1)}, {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
