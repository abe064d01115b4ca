"""`make bench QUICK=1` runs end to end, so the benchmark cannot rot: every section, every result counted, the plot.

No timing is asserted (the bench is a tool, and this machine is shared): only that each section ran real jobs on
real clusters and that every task's result arrived.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.docker

SECTIONS = ("throughput", "scaling", "compute", "startup", "large", "idle", "page")


def test_the_quick_bench_measures_every_section_and_counts_every_result(session_env, tmp_path):
    env = {**os.environ, **session_env}
    r = subprocess.run([sys.executable, "bench/run.py", "--quick", "--no-build", "--out", str(tmp_path)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    png = tmp_path / "results.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert res["quick"] is True and res["sections"] == list(SECTIONS)
    m = res["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["docker"] and m["python_containers"].startswith("3.")

    def complete(job: dict) -> None:  # a job of the bench: every task's result arrived, once, without errors
        assert job["results"] == job["tasks"] > 0 and job["missing"] == 0, job
        assert job["duplicates"] == 0 and job["errors"] == 0 and job["state"] == "done", job
        assert job["rate"] > 0 and job["seconds"] > 0, job

    t = res["throughput"]
    for w in ("1", "4"):
        lesson = t["lesson"][w]
        assert lesson["results"] == lesson["tasks"] > 0 and lesson["wrong"] == 0 and lesson["rate"] > 0, lesson
        assert len(lesson["workers_ready"]) == (1 if w == "1" else 3)
        complete(t["mpcluster"][w])
    assert len(t["mpcluster"]["4"]["workers"]) >= 2  # the job really spread over the replicas
    assert t["ratio_4"] > 0

    points = res["scaling"]["points"]
    assert list(points) == ["1", "2"]
    for p in points.values():
        complete(p)
        assert p["kind"] == "sleep" and 0 < p["efficiency"]

    c = res["compute"]
    assert set(c["primes"]) == {"1 worker, 1 thread", "1 worker, 4 threads", "1 worker, 4 processes",
                                "4 workers, 1 thread each"}
    assert set(c["sleep"]) == {"1 worker, 1 thread", "1 worker, 8 threads"}
    for r in [*c["primes"].values(), *c["sleep"].values()]:
        complete(r)

    (run,) = res["startup"]["runs"]
    assert run["demo_results"] == run["demo_tasks"] == 3
    assert 0 < run["master_listening"] <= run["first_result"] <= run["demo_done"] <= run["make_up_seconds"]

    g = res["large"]
    complete(g)
    assert g["peak_rss_mb"] > 0 and len(g["workers"]) >= 2

    i = res["idle"]
    assert i["workers"] == 3 and len(i["samples_percent"]) == 2 and i["mean_percent"] >= 0 and i["span_s"] > 0

    g = res["page"]
    browser = os.path.exists("/usr/bin/chromium") or os.environ.get("CI") == "true"  # .ci/run installs it
    for case in ("none", "requests", *(("browser",) if browser else ())):
        assert len(g["runs"][case]) == g["rounds"] == 1, (case, g)
        for job in g["runs"][case]:
            complete(job)
    assert "requests_slowdown_percent" in g
    assert (g["browser_skipped"] is None and "browser_slowdown_percent" in g) if browser else g["browser_skipped"]

    assert {v["met"] for v in res["targets"]} <= {True, False} and len(res["targets"]) == 7
    # nothing of the run is left behind
    left = subprocess.run(["docker", "compose", "ls", "-a", "--format", "json"], capture_output=True, text=True)
    assert not [p["Name"] for p in json.loads(left.stdout or "[]") if p["Name"].startswith(f"mpcbench-{res['run_id']}-")]
