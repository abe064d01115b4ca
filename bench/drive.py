"""The benchmark's hand inside the master's container (bench/harness.py pipes this file to `python3 -`, so the image
needs nothing new): it submits jobs through mpcluster's own Python API on 127.0.0.1:5000 and reads the master's
memory from /proc/1/status. Standard library and mpcluster only. One JSON line on stdout per call.

    python3 - job --kind square --tasks N [--seconds S] [--n N]   submit, read every result, count them
    python3 - wait --workers N [--timeout S]                       until exactly N workers are alive
    python3 - memory                                               the master's VmHWM and VmRSS (kB)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from mpcluster import Client

KEY = "/run/secrets/authkey"
ADDRESS = "127.0.0.1:5000"


def memory() -> dict:
    """The master is PID 1 of this container; VmHWM is its peak resident set since it started."""
    out = {}
    with open("/proc/1/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                out[name] = int(value.split()[0])
    return out


def job(kind: str, n_tasks: int, seconds: float, n: int) -> dict:
    args = {"square": {"n": n, "seconds": seconds}, "sleep": {"seconds": seconds}, "primes": {"n": n}}[kind]
    with Client(ADDRESS, authkey_file=KEY) as c:
        started = time.monotonic()
        j = c.submit(kind, (dict(args) for _ in range(n_tasks)))
        submitted = time.monotonic()
        seen, duplicates, errors, workers = bytearray(n_tasks), 0, 0, Counter()
        for r in j.results():
            if seen[r["id"]]:
                duplicates += 1
                continue
            seen[r["id"]] = 1
            workers[r["worker"]] += 1
            errors += not r["ok"]
        wall = time.monotonic() - started
        summary = j.status()
    results = sum(seen)
    return {"kind": kind, "tasks": n_tasks, "results": results, "missing": n_tasks - results, "duplicates": duplicates,
            "errors": errors, "state": summary["state"], "seconds": round(wall, 4),
            "submit_seconds": round(submitted - started, 4), "rate": round(results / wall, 1) if wall > 0 else 0.0,
            "workers": dict(workers), "redeliveries": summary.get("redeliveries", 0), "master_memory_kb": memory()}


def wait(workers: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    with Client(ADDRESS, authkey_file=KEY, connect_timeout=timeout) as c:
        while True:
            st = c.status()
            if st["alive"] == workers or time.monotonic() > deadline:
                return {"alive": st["alive"], "wanted": workers, "ok": st["alive"] == workers}
            time.sleep(0.2)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="drive.py")
    p.add_argument("what", choices=["job", "wait", "memory"])
    p.add_argument("--kind", default="square")
    p.add_argument("--tasks", type=int, default=1)
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--n", type=int, default=7)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0)
    a = p.parse_args(argv)
    if a.what == "job":
        out = job(a.kind, a.tasks, a.seconds, a.n)
    elif a.what == "wait":
        out = wait(a.workers, a.timeout)
    else:
        out = memory()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
