"""`make bench`: mpcluster measured against the lesson's loop on real Compose clusters, on this machine.

    python3 bench/run.py [--quick] [--out DIR] [--skip SECTION,...] [--only SECTION,...]

Sections: throughput (the lesson's one-item-per-round-trip loop and mpcluster, no-op tasks, 1 and 4 workers),
scaling (240 x 0.25 s sleep tasks on 1, 2, 4, 8 workers), compute (primes and sleep: threads, processes,
replicas), startup (`make up` until the demo's first result and until it is done), large (1,000,000 no-op tasks
on 4 workers: time and the master's peak RSS), idle (the master's CPU with 20 idle workers), page (throughput
with the status page's requests, and with a browser showing it). A tool, not a test:
it asserts nothing about speed. It prints a table and writes DIR/results.json and DIR/results.png (default DIR:
bench/). --quick is a smoke run of every section with tiny sizes.

Every cluster it starts is its own Compose project named mpcbench-<run>-<what>, with ephemeral host ports, and is
removed (`down -v`) when the section ends, on failure and on Ctrl-C too. The images are built once with the tag
MPC_IMAGE_TAG (default: bench), and removed at the end unless --no-build was given (then they must exist).

The harness (projects, clusters, counters) is bench/harness.py, the sections bench/sections.py, and the targets,
table and plot bench/report.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import report
import sections
from harness import BENCH, ROOT, Projects, bench_env, machine, remove_images, say

SECTIONS = {"throughput": sections.throughput, "scaling": sections.scaling, "compute": sections.compute,
            "startup": sections.startup, "large": sections.large, "idle": sections.idle, "page": sections.page}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run of every section with tiny sizes")
    ap.add_argument("--out", default=str(BENCH), help="where results.json and results.png go (default bench/)")
    ap.add_argument("--only", default="", help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    ap.add_argument("--no-build", action="store_true", help="use the images MPC_IMAGE_TAG names as they are")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a size, e.g. large_tasks=200000")
    a = ap.parse_args(argv)
    only = [x for x in a.only.split(",") if x]
    skip = [x for x in a.skip.split(",") if x]
    for x in only + skip:
        if x not in SECTIONS:
            ap.error(f"unknown section {x!r}: expected one of {', '.join(SECTIONS)}")
    run = [x for x in SECTIONS if (not only or x in only) and x not in skip]
    sizes = dict(sections.QUICK if a.quick else sections.FULL)
    for kv in a.set:
        k, _, v = kv.partition("=")
        if k not in sizes:
            ap.error(f"--set {k}: expected one of {', '.join(sizes)}")
        sizes[k] = json.loads(v)

    tag = os.environ.get("MPC_IMAGE_TAG") or "bench"
    key = os.environ.get("MPC_AUTHKEY_HOST_FILE") or str(ROOT / ".secrets" / "authkey")
    if not Path(key).is_file():
        ap.error(f"no key at {key}: run `make key` (or make up) first")
    env = bench_env(tag, key)
    projects = Projects(uuid.uuid4().hex[:6], env)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def stop(signum, _frame):  # SIGTERM takes the Ctrl-C path, so that the clusters are removed then too
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    res: dict = {"run_id": projects.run_id, "quick": a.quick, "sizes": sizes, "sections": run, "started": dt.datetime.now().isoformat()}
    built = False
    try:
        say(f"run {projects.run_id}: Compose projects mpcbench-{projects.run_id}-*; sections: {', '.join(run)}")
        if not a.no_build:
            say(f"building the images (mpcluster-master:{tag}, mpcluster-worker:{tag}; cached layers are reused)")
            projects.build()
            built = True
        res["machine"] = machine(env, tag)
        for name in run:
            say(f"== {name}")
            started = time.monotonic()
            res[name] = SECTIONS[name](projects, sizes)
            res[name]["section_seconds"] = round(time.monotonic() - started, 1)
    except KeyboardInterrupt:
        say("interrupted: removing what this run started")
        projects.down_all()
        return 130
    finally:
        projects.down_all()
        if built and tag == "bench":
            remove_images(tag)
    res["finished"] = dt.datetime.now().isoformat()
    report.write(res, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
