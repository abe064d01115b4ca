"""The bench's sections: each brings up the clusters it needs, measures, takes them down, and returns its figures
(what goes into results.json under the section's name). s is the sizes: FULL, or QUICK for a smoke run."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time

from harness import ROOT, Cluster, Poller, Projects, cpu_used_ns, docker_stats_cpu, launch_chromium, log_times, say

FULL = {"lesson_tasks": 20_000, "mpc_tasks": 200_000, "scaling_tasks": 240, "scaling_seconds": 0.25,
        "scaling_workers": [1, 2, 4, 8], "primes_tasks": 40, "primes_n": 10_000_000, "sleep_tasks": 40,
        "sleep_seconds": 0.2, "startup_runs": 3, "startup_workers": 3, "demo_tasks": 10, "large_tasks": 1_000_000,
        "idle_workers": 20, "idle_samples": 10, "idle_settle": 10.0, "page_tasks": 50_000, "page_rounds": 6}
QUICK = {"lesson_tasks": 300, "mpc_tasks": 2_000, "scaling_tasks": 8, "scaling_seconds": 0.05,
         "scaling_workers": [1, 2], "primes_tasks": 4, "primes_n": 200_000, "sleep_tasks": 8, "sleep_seconds": 0.05,
         "startup_runs": 1, "startup_workers": 3, "demo_tasks": 3, "large_tasks": 5_000, "idle_workers": 3,
         "idle_samples": 2, "idle_settle": 1.0, "page_tasks": 1_000, "page_rounds": 1}
PAGE_CASES = {"none": "no page", "requests": "the page's requests", "browser": "a browser here"}


def throughput(p: Projects, s: dict) -> dict:
    """No-op tasks through the lesson's loop and through mpcluster, 1 and 4 workers each."""
    out = {"lesson": {}, "mpcluster": {}}
    project, files = p.name("lesson"), ["compose.lesson.yaml", "bench/compose.lesson-loop.yaml"]
    try:
        ready = 0
        for w in (1, 4):
            p.up(project, files, w)
            r = p.compose(project, files, "exec", "-T", "master", "python3", "/bench/lesson_loop.py", "drive",
                          "--tasks", str(s["lesson_tasks"]), "--ready", str(w - ready), timeout=600)
            ready = w
            out["lesson"][str(w)] = json.loads(r.stdout.strip().splitlines()[-1])
            say(f"  lesson loop, {w} worker(s): {out['lesson'][str(w)]['rate']:,.0f} tasks/s")
    finally:
        p.down(project)
    c = Cluster(p, "throughput")
    try:
        for w in (1, 4):
            c.up(w)
            out["mpcluster"][str(w)] = c.job("square", s["mpc_tasks"])
            say(f"  mpcluster, {w} worker(s): {out['mpcluster'][str(w)]['rate']:,.0f} tasks/s")
    finally:
        c.down()
    out["ratio_4"] = round(out["mpcluster"]["4"]["rate"] / out["lesson"]["4"]["rate"], 2)
    out["ratio_1"] = round(out["mpcluster"]["1"]["rate"] / out["lesson"]["1"]["rate"], 2)
    return out


def scaling(p: Projects, s: dict) -> dict:
    """The same job of sleep tasks on 1, 2, 4, 8 workers; ideal = tasks x seconds / workers."""
    out = {"tasks": s["scaling_tasks"], "task_seconds": s["scaling_seconds"], "points": {}}
    c = Cluster(p, "scaling")
    try:
        for w in s["scaling_workers"]:
            c.up(w)
            r = c.job("sleep", s["scaling_tasks"], s["scaling_seconds"])
            ideal = s["scaling_tasks"] * s["scaling_seconds"] / w
            r["ideal_seconds"], r["efficiency"] = round(ideal, 3), round(ideal / r["seconds"], 3)
            out["points"][str(w)] = r
            say(f"  {w} worker(s): {r['seconds']:.2f} s (ideal {ideal:.2f} s), efficiency {r['efficiency']:.3f}")
    finally:
        c.down()
    return out


def compute(p: Projects, s: dict) -> dict:
    """primes (CPU-bound) on one worker with 1 thread, 4 threads, 4 processes, and on 4 single-thread workers;
    sleep (I/O-bound) on one worker with 1 and 8 threads."""
    out = {"primes_tasks": s["primes_tasks"], "primes_n": s["primes_n"], "sleep_tasks": s["sleep_tasks"],
           "sleep_seconds": s["sleep_seconds"], "primes": {}, "sleep": {}}
    c = Cluster(p, "compute")
    cases = [("primes", "1 worker, 1 thread", 1, {"MPC_WORKER_THREADS": 1}),
             ("primes", "1 worker, 4 threads", 1, {"MPC_WORKER_THREADS": 4}),
             ("primes", "1 worker, 4 processes", 1, {"MPC_WORKER_THREADS": 1, "MPC_WORKER_PROCESSES": 4}),
             ("primes", "4 workers, 1 thread each", 4, {"MPC_WORKER_THREADS": 1}),
             ("sleep", "1 worker, 1 thread", 1, {"MPC_WORKER_THREADS": 1}),
             ("sleep", "1 worker, 8 threads", 1, {"MPC_WORKER_THREADS": 8})]
    try:
        for kind, label, workers, env in cases:
            c.up(workers, **{"MPC_WORKER_PROCESSES": 0, **env})
            if kind == "primes":
                r = c.job("primes", s["primes_tasks"], n=s["primes_n"])
            else:
                r = c.job("sleep", s["sleep_tasks"], s["sleep_seconds"])
            out[kind][label] = r
            say(f"  {kind}, {label}: {r['seconds']:.2f} s")
    finally:
        c.down()
    for kind in ("primes", "sleep"):
        base = out[kind]["1 worker, 1 thread"]["seconds"]
        for r in out[kind].values():
            r["speedup"] = round(base / r["seconds"], 2)
    return out


def startup(p: Projects, s: dict) -> dict:
    """`make up` itself (images built), in a project of its own, with ephemeral ports; times from its start."""
    runs = []
    for i in range(s["startup_runs"]):
        project = p.name(f"startup{i}")
        p.live[project] = ["compose.yaml"]
        env = {**p.env, "WORKERS": str(s["startup_workers"]), "MPC_DEMO_TASKS": str(s["demo_tasks"])}
        try:
            t0 = time.time()
            r = subprocess.run(["make", "-s", "up", f"COMPOSE=docker compose -p {project}"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
            t_make = time.time() - t0
            if r.returncode != 0:
                raise RuntimeError(f"make up exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
            rows = log_times(p.compose(project, ["compose.yaml"], "logs", "--timestamps", "--no-color").stdout)

            def first(service: str, pattern: str, rows=rows, t0=t0) -> float | None:
                for t, svc, msg in rows:
                    if svc == service and re.search(pattern, msg):
                        return round(t - t0, 3)
                return None

            run = {"make_up_seconds": round(t_make, 3), "master_started": p.started_at(project, "master", t0),
                   "master_listening": first("master", r"master listening on"),
                   "first_worker_started": p.started_at(project, "worker", t0),
                   "first_worker_joined": first("master", r"worker \S+ joined"),
                   "first_result": first("master", r"Result: "), "demo_done": first("master", r"Demo job \S+ done"),
                   "demo_tasks": s["demo_tasks"], "workers": s["startup_workers"],
                   "demo_results": len([1 for _, svc, msg in rows if svc == "master" and msg.find("Result: ") >= 0])}
            runs.append(run)
            say(f"  run {i + 1}: first result {run['first_result']} s, demo done {run['demo_done']} s, "
                f"make up returned {run['make_up_seconds']} s")
        finally:
            p.down(project)
    med = {k: round(statistics.median(r[k] for r in runs if r[k] is not None), 3)
           for k in runs[0] if isinstance(runs[0][k], float)}
    return {"runs": runs, "median": med}


def large(p: Projects, s: dict) -> dict:
    """One job of no-op tasks on 4 workers, on a fresh master: wall time and the master's peak RSS."""
    c = Cluster(p, "large")
    try:
        c.up(4)
        before = c.drive("memory")
        r = c.job("square", s["large_tasks"])
        r["master_rss_before_kb"] = before
        r["peak_rss_mb"] = round(r["master_memory_kb"]["VmHWM"] / 1024, 1)
        r["cgroup_max_usage_mb"] = c.cgroup_max_usage_mb()
        say(f"  {r['tasks']:,} tasks: {r['seconds']:.1f} s ({r['rate']:,.0f}/s), master peak RSS {r['peak_rss_mb']} MB")
    finally:
        c.down()
    return r


def idle(p: Projects, s: dict) -> dict:
    """The master's CPU with N connected, idle workers (100% = one core): `docker stats` samples (each over about
    a second, so a health probe's 15 ms shows as a spike), and the mean over the whole span from the same counter."""
    c = Cluster(p, "idle")
    try:
        c.up(s["idle_workers"])
        time.sleep(s["idle_settle"])  # the joins and first calls are start-up, not idling
        name = c.container("master")
        used0, t0 = cpu_used_ns(name)
        samples = [docker_stats_cpu(name) for _ in range(s["idle_samples"])]
        used1, t1 = cpu_used_ns(name)
        out = {"workers": s["idle_workers"], "samples_percent": samples,
               "samples_mean_percent": round(statistics.mean(samples), 2), "max_percent": round(max(samples), 2),
               "span_s": round((t1 - t0) / 1e9, 1), "mean_percent": round(100 * (used1 - used0) / (t1 - t0), 2)}
        say(f"  master with {s['idle_workers']} idle workers: {out['mean_percent']}% CPU over {out['span_s']} s "
            f"(docker stats samples: mean {out['samples_mean_percent']}%, max {out['max_percent']}%)")
    finally:
        c.down()
    return out


def page(p: Projects, s: dict) -> dict:
    """No-op jobs on 4 workers, in rounds: with nothing watching, with the page's own requests (as from a browser
    on another machine), and with a headless chromium on this machine showing the page (when there is one)."""
    c = Cluster(p, "page")
    runs: dict[str, list] = {"none": [], "requests": [], "browser": []}
    out = {"tasks": s["page_tasks"], "rounds": s["page_rounds"], "runs": runs, "browser_skipped": None}
    browser = None
    try:
        c.up(4)
        url = c.web_url()
        try:
            browser = launch_chromium()
        except Exception as e:  # noqa: BLE001 - no browser: the browser rounds are skipped, and say why
            out["browser_skipped"] = f"{type(e).__name__}: {e}"[:200]
        cases = [c for c in PAGE_CASES if c != "browser" or browser is not None]
        for r in range(s["page_rounds"]):
            # Each round turns the order once more: rates drift down as the journal fills with finished jobs,
            # and a fixed order would lay that drift on whatever case comes last.
            for case in cases[r % len(cases):] + cases[:r % len(cases)]:
                if case == "none":
                    runs["none"].append(c.job("square", s["page_tasks"]))
                elif case == "requests":
                    with Poller(url) as poller:
                        runs["requests"].append({**c.job("square", s["page_tasks"]), "page_calls": poller.calls})
                else:
                    tab = browser[1].new_page()
                    tab.goto(url)
                    tab.wait_for_selector("#conn[data-state=live]", timeout=30_000)
                    runs["browser"].append(c.job("square", s["page_tasks"]))
                    tab.close()
    finally:
        if browser is not None:
            browser[1].close()
            browser[0].stop()
        c.down()
    for case, jobs in runs.items():
        if jobs:
            out[f"{case}_median_rate"] = round(statistics.median(j["rate"] for j in jobs))
    for case in ("requests", "browser"):
        if runs[case]:
            out[f"{case}_slowdown_percent"] = round(100 * (1 - out[f"{case}_median_rate"] / out["none_median_rate"]), 1)
    say(f"  page: none {out['none_median_rate']:,}/s, its requests {out['requests_median_rate']:,}/s "
        f"({out['requests_slowdown_percent']}% slower)" + (f", a browser {out['browser_median_rate']:,}/s "
        f"({out['browser_slowdown_percent']}% slower)" if runs["browser"] else f"; browser: {out['browser_skipped']}"))
    return out
