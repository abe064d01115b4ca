"""`make bench`: mpcluster measured against the lesson's loop on real Compose clusters, on this machine.

    python3 bench/run.py [--quick] [--out DIR] [--skip SECTION,...] [--only SECTION,...]

Sections (issue 8): throughput (the lesson's one-item-per-round-trip loop and mpcluster, no-op tasks, 1 and 4
workers), scaling (240 x 0.25 s sleep tasks on 1, 2, 4, 8 workers), compute (primes and sleep: threads, processes,
replicas), startup (`make up` until the demo's first result and until it is done), large (1,000,000 no-op tasks
on 4 workers: time and the master's peak RSS), idle (the master's CPU with 20 idle workers), page (issue 9:
throughput with the status page's requests, and with a browser showing it). A tool, not a test:
it asserts nothing about speed. It prints a table and writes DIR/results.json and DIR/results.png (default DIR:
bench/). --quick is a smoke run of every section with tiny sizes.

Every cluster it starts is its own Compose project named mpcbench-<run>-<what>, with ephemeral host ports, and is
removed (`down -v`) when the section ends, on failure and on Ctrl-C too. The images are built once with the tag
MPC_IMAGE_TAG (default: bench), and removed at the end unless --no-build was given (then they must exist).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DRIVE = (BENCH / "drive.py").read_text()
SECTIONS = ("throughput", "scaling", "compute", "startup", "large", "idle", "page")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

FULL = {"lesson_tasks": 20_000, "mpc_tasks": 200_000, "scaling_tasks": 240, "scaling_seconds": 0.25,
        "scaling_workers": [1, 2, 4, 8], "primes_tasks": 40, "primes_n": 10_000_000, "sleep_tasks": 40,
        "sleep_seconds": 0.2, "startup_runs": 3, "startup_workers": 3, "demo_tasks": 10, "large_tasks": 1_000_000,
        "idle_workers": 20, "idle_samples": 10, "idle_settle": 10.0, "page_tasks": 50_000, "page_rounds": 6}
QUICK = {"lesson_tasks": 300, "mpc_tasks": 2_000, "scaling_tasks": 8, "scaling_seconds": 0.05,
         "scaling_workers": [1, 2], "primes_tasks": 4, "primes_n": 200_000, "sleep_tasks": 8, "sleep_seconds": 0.05,
         "startup_runs": 1, "startup_workers": 3, "demo_tasks": 3, "large_tasks": 5_000, "idle_workers": 3,
         "idle_samples": 2, "idle_settle": 1.0, "page_tasks": 1_000, "page_rounds": 1}
TARGETS = {"throughput_ratio": 10.0, "scaling_efficiency": 0.95, "startup_seconds": 6.0, "large_rss_mb": 400.0,
           "idle_cpu_percent": 1.0, "page_slowdown_percent": 5.0}


def say(line: str) -> None:
    print(line, flush=True)


class Projects:
    """Every Compose project this run started, so that each is removed however the run ends."""

    def __init__(self, run_id: str, env: dict):
        self.run_id, self.env, self.live = run_id, env, {}

    def name(self, what: str) -> str:
        return f"mpcbench-{self.run_id}-{what}"

    def compose(self, project: str, files: list[str], *args: str, timeout: float = 300, check: bool = True,
                extra_env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
        cmd = ["docker", "compose", "-p", project]
        for f in files:
            cmd += ["-f", f]
        r = subprocess.run([*cmd, *args], cwd=ROOT, env={**self.env, **(extra_env or {})}, input=stdin,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker compose -p {project} {' '.join(args)} exited {r.returncode}:\n"
                               f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        return r

    def up(self, project: str, files: list[str], workers: int, extra_env: dict | None = None, wait: bool = True):
        self.live[project] = files
        self.compose(project, files, "up", "-d", *(["--wait"] if wait else []), "--scale", f"worker={workers}",
                     extra_env=extra_env)

    def down(self, project: str) -> None:
        files = self.live.pop(project, ["compose.yaml"])
        self.compose(project, files, "down", "-v", "--remove-orphans", "-t", "2", check=False, timeout=120)

    def down_all(self) -> None:
        for project in list(self.live):
            self.down(project)


class Cluster:
    """One mpcluster Compose project (compose.yaml + bench/compose.bench.yaml) and the driver in its master."""

    FILES = ["compose.yaml", "bench/compose.bench.yaml"]

    def __init__(self, projects: Projects, what: str):
        self.p, self.project, self.env = projects, projects.name(what), {}

    def up(self, workers: int, **env: str) -> None:
        self.env = {k: str(v) for k, v in env.items()}
        self.p.up(self.project, self.FILES, workers, self.env)
        self.drive("wait", "--workers", str(workers), "--timeout", "120")

    def drive(self, *args: str, timeout: float = 3600) -> dict:
        r = self.p.compose(self.project, self.FILES, "exec", "-T", "master", "python3", "-", *args, stdin=DRIVE,
                           timeout=timeout, extra_env=self.env)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def job(self, kind: str, tasks: int, seconds: float = 0.0, n: int = 7) -> dict:
        return self.drive("job", "--kind", kind, "--tasks", str(tasks), "--seconds", str(seconds), "--n", str(n))

    def container(self, service: str) -> str:
        r = self.p.compose(self.project, self.FILES, "ps", "-q", service)
        return r.stdout.split()[0]

    def down(self) -> None:
        self.p.down(self.project)


# ---- the sections ------------------------------------------------------------------------------------------------

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


def _log_times(text: str) -> list[tuple[float, str, str]]:
    """(epoch seconds, service, message) from `docker compose logs --timestamps`."""
    rows = []
    for line in ANSI.sub("", text).splitlines():
        m = re.match(r"^(\S+?)-\d+\s+\|\s+(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z\s(.*)$", line)
        if m:
            frac = float("0" + (m.group(3) or ".0")[:7])
            t = dt.datetime.fromisoformat(m.group(2)).replace(tzinfo=dt.UTC).timestamp() + frac
            rows.append((t, m.group(1), m.group(4)))
    return sorted(rows)


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
            logs = p.compose(project, ["compose.yaml"], "logs", "--timestamps", "--no-color").stdout
            rows = _log_times(logs)

            def first(service: str, pattern: str, rows=rows, t0=t0) -> float | None:
                for t, svc, msg in rows:
                    if svc == service and re.search(pattern, msg):
                        return round(t - t0, 3)
                return None

            started = {}
            for svc in ("master", "worker"):
                ids = p.compose(project, ["compose.yaml"], "ps", "-aq", svc).stdout.split()
                times = [subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", x], capture_output=True,
                                        text=True).stdout.strip() for x in ids]
                epochs = [dt.datetime.fromisoformat(x[:26].rstrip("Z")).replace(tzinfo=dt.UTC).timestamp()
                          for x in times if x]
                started[svc] = round(min(epochs) - t0, 3) if epochs else None
            run = {"make_up_seconds": round(t_make, 3), "master_started": started["master"],
                   "master_listening": first("master", r"master listening on"),
                   "first_worker_started": started["worker"],
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
        mem = c.p.compose(c.project, c.FILES, "exec", "-T", "master", "cat", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
                          check=False).stdout.strip()
        r["cgroup_max_usage_mb"] = round(int(mem) / 2**20, 1) if mem.isdigit() else None
        say(f"  {r['tasks']:,} tasks: {r['seconds']:.1f} s ({r['rate']:,.0f}/s), master peak RSS {r['peak_rss_mb']} MB")
    finally:
        c.down()
    return r


def cpu_used_ns(name: str) -> tuple[int, int]:
    """The container's CPU time so far and the host's, in ns: the two counters `docker stats` divides."""
    import docker  # the Docker SDK: in the test extra, which the bench extra rides on

    st = docker.from_env().containers.get(name).stats(stream=False)
    return st["cpu_stats"]["cpu_usage"]["total_usage"], time.monotonic_ns()


def idle(p: Projects, s: dict) -> dict:
    """The master's CPU with N connected, idle workers (100% = one core): `docker stats` samples (each over about
    a second, so a health probe's 15 ms shows as a spike), and the mean over the whole span from the same counter."""
    c = Cluster(p, "idle")
    try:
        c.up(s["idle_workers"])
        time.sleep(s["idle_settle"])  # the joins and first calls are start-up, not idling
        name = c.container("master")
        used0, t0 = cpu_used_ns(name)
        samples = []
        for _ in range(s["idle_samples"]):
            r = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.CPUPerc}}", name],
                               capture_output=True, text=True, timeout=60)
            samples.append(float(r.stdout.strip().rstrip("%") or "nan"))
        used1, t1 = cpu_used_ns(name)
        out = {"workers": s["idle_workers"], "samples_percent": samples,
               "samples_mean_percent": round(statistics.mean(samples), 2), "max_percent": round(max(samples), 2),
               "span_s": round((t1 - t0) / 1e9, 1), "mean_percent": round(100 * (used1 - used0) / (t1 - t0), 2)}
        say(f"  master with {s['idle_workers']} idle workers: {out['mean_percent']}% CPU over {out['span_s']} s "
            f"(docker stats samples: mean {out['samples_mean_percent']}%, max {out['max_percent']}%)")
    finally:
        c.down()
    return out


CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright cannot download its own browser here
PAGE_CASES = {"none": "no page", "requests": "the page's requests", "browser": "a browser here"}  # page(): its cases


class Poller:
    """What an open status page asks of the master: GET /api/status once a second, from a thread."""

    def __init__(self, url: str):
        import threading

        self.url, self.stop, self.calls = url, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import urllib.request

        while not self.stop.wait(1.0):
            with urllib.request.urlopen(self.url + "api/status", timeout=5) as r:
                r.read()
            self.calls += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def page(p: Projects, s: dict) -> dict:
    """No-op jobs on 4 workers, in rounds: with nothing watching, with the page's own requests (as from a browser
    on another machine), and with a headless chromium on this machine showing the page (when there is one)."""
    c = Cluster(p, "page")
    runs: dict[str, list] = {"none": [], "requests": [], "browser": []}
    out = {"tasks": s["page_tasks"], "rounds": s["page_rounds"], "runs": runs, "browser_skipped": None}
    browser = None
    try:
        c.up(4)
        port = p.compose(c.project, c.FILES, "port", "master", "8080").stdout.strip().rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}/"
        try:
            from playwright.sync_api import sync_playwright

            if not os.path.exists(CHROMIUM):
                raise FileNotFoundError(f"{CHROMIUM} is not installed (apt-get install chromium)")
            pw = sync_playwright().start()
            browser = (pw, pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"]))
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


# ---- the machine, the table, the plot ----------------------------------------------------------------------------

def machine(env: dict, tag: str) -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def cmd(*args: str) -> str:
        r = subprocess.run(args, capture_output=True, text=True, env=env)
        return r.stdout.strip()

    return {"cpu": model or platform.processor() or "unknown", "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "os": f"{platform.system()} {platform.release()}", "python_host": platform.python_version(),
            "python_containers": cmd("docker", "run", "--rm", "--entrypoint", "python3", f"mpcluster-master:{tag}",
                                     "-c", "import platform; print(platform.python_version())"),
            "docker": cmd("docker", "version", "--format", "{{.Server.Version}}"),
            "compose": cmd("docker", "compose", "version", "--short"),
            "base_image": env.get("BASE_IMAGE") or _dotenv().get("BASE_IMAGE", "python:3.12-slim")}


def _dotenv() -> dict:
    try:
        return dict(line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines() if "=" in line)
    except OSError:
        return {}


def verdicts(res: dict) -> list[dict]:
    """Every target of issue 8 with its measured figure (targets are reported, never asserted)."""
    rows = []
    if "throughput" in res:
        t = res["throughput"]
        rows.append({"target": "throughput: mpcluster / lesson loop at 4 workers >= 10x", "figure": f"{t['ratio_4']}x",
                     "met": t["ratio_4"] >= TARGETS["throughput_ratio"]})
        rows.append({"target": "throughput stretch: >= 100,000 tasks/s", "figure":
                     f"{t['mpcluster']['4']['rate']:,.0f}/s", "met": t["mpcluster"]["4"]["rate"] >= 100_000})
    if "scaling" in res:
        pts = res["scaling"]["points"]
        worst = min(v["efficiency"] for v in pts.values())
        rows.append({"target": "scaling: efficiency >= 0.95 at every point", "figure": ", ".join(
            f"{w}: {v['efficiency']:.3f}" for w, v in pts.items()), "met": worst >= TARGETS["scaling_efficiency"]})
    if "startup" in res:
        m = res["startup"]["median"]
        rows.append({"target": "start-up: make up until the demo is done <= 6 s", "figure":
                     f"demo done {m.get('demo_done')} s, make up returned {m.get('make_up_seconds')} s (median)",
                     "met": m.get("make_up_seconds", 99) <= TARGETS["startup_seconds"]})
    if "large" in res:
        g = res["large"]
        rows.append({"target": f"large job: {g['tasks']:,} tasks complete, master peak RSS <= 400 MB", "figure":
                     f"{g['results']:,}/{g['tasks']:,} in {g['seconds']:.1f} s, peak RSS {g['peak_rss_mb']} MB",
                     "met": g["results"] == g["tasks"] and g["peak_rss_mb"] <= TARGETS["large_rss_mb"]})
    if "idle" in res:
        i = res["idle"]
        rows.append({"target": f"idle: master CPU with {i['workers']} idle workers < 1%",
                     "figure": f"{i['mean_percent']}% over {i['span_s']} s (docker stats samples: mean "
                               f"{i['samples_mean_percent']}%, max {i['max_percent']}%)",
                     "met": i["mean_percent"] < TARGETS["idle_cpu_percent"]})
    if "page" in res:
        g = res["page"]
        seen = f", a browser on this machine {g['browser_slowdown_percent']}%" if "browser_slowdown_percent" in g else ""
        rows.append({"target": "page (issue 9): throughput within 5% with the page's requests (the master's part)",
                     "figure": f"its requests {g['requests_slowdown_percent']}% slower{seen} (median of {g['rounds']})",
                     "met": g["requests_slowdown_percent"] <= TARGETS["page_slowdown_percent"]})
    return rows


def table(res: dict) -> str:
    lines = []
    m = res["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; Docker {m['docker']}, "
                 f"Compose {m['compose']}; Python {m['python_containers']} in the containers ({m['base_image']}), "
                 f"{m['python_host']} on the host")
    lines.append(f"mode: {'quick (smoke sizes: not a measurement)' if res['quick'] else 'full'}")
    lines.append("")
    lines.append(f"{'section':<12} {'case':<40} {'tasks':>9} {'seconds':>9} {'figure':>22}")
    lines.append("-" * 96)

    def row(section, case, tasks, seconds, figure):
        lines.append(f"{section:<12} {case:<40} {tasks:>9,} {seconds:>9.2f} {figure:>22}")

    if "throughput" in res:
        t = res["throughput"]
        for impl in ("lesson", "mpcluster"):
            for w in ("1", "4"):
                r = t[impl][w]
                name = "lesson loop (get/put per item)" if impl == "lesson" else "mpcluster (leases, batches)"
                row("throughput", f"{name}, {w} worker{'s' if w != '1' else ''}", r["tasks"], r["seconds"],
                    f"{r['rate']:,.0f} tasks/s")
        lines.append(f"{'':<12} mpcluster / lesson: {t['ratio_1']}x with 1 worker, {t['ratio_4']}x with 4")
    if "scaling" in res:
        for w, r in res["scaling"]["points"].items():
            row("scaling", f"sleep {res['scaling']['task_seconds']} s, {w} worker{'s' if w != '1' else ''}",
                r["tasks"], r["seconds"], f"efficiency {r['efficiency']:.3f}")
    if "compute" in res:
        c = res["compute"]
        for kind in ("primes", "sleep"):
            for label, r in c[kind].items():
                what = f"primes n={c['primes_n']:,}" if kind == "primes" else f"sleep {c['sleep_seconds']} s"
                row("compute", f"{what}, {label}", r["tasks"], r["seconds"], f"speed-up {r['speedup']:.2f}x")
    if "startup" in res:
        md = res["startup"]["median"]
        n = len(res["startup"]["runs"])
        for k, label in (("master_listening", "master listening"), ("first_worker_joined", "first worker joined"),
                         ("first_result", "first demo result"), ("demo_done", "demo job done"),
                         ("make_up_seconds", "make up returned")):
            if k in md:
                row("startup", f"{label} (median of {n})", res["startup"]["runs"][0]["demo_tasks"], md[k],
                    "s after make up")
    if "large" in res:
        g = res["large"]
        row("large", "no-op tasks, 4 workers", g["tasks"], g["seconds"], f"{g['rate']:,.0f} tasks/s")
        row("large", "master peak RSS (VmHWM)", g["tasks"], g["seconds"], f"{g['peak_rss_mb']} MB")
    if "idle" in res:
        i = res["idle"]
        row("idle", f"master CPU, {i['workers']} idle workers", 0, 0.0, f"{i['mean_percent']}% CPU")
    if "page" in res:
        g = res["page"]
        for case, label in PAGE_CASES.items():
            if g["runs"][case]:
                row("page", f"{label}, 4 workers (median of {g['rounds']})", g["tasks"],
                    statistics.median(j["seconds"] for j in g["runs"][case]), f"{g[case + '_median_rate']:,} tasks/s")
    lines.append("")
    lines.append("targets (issues 8 and 9):")
    for v in res["targets"]:
        lines.append(f"  [{'met' if v['met'] else 'NOT met'}] {v['target']}: {v['figure']}")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(20, 8.5))
    ax = axes[0][0]
    if "throughput" in res:
        t = res["throughput"]
        labels = ["1 worker", "4 workers"]
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], [t["lesson"][w]["rate"] for w in ("1", "4")], 0.4, label="lesson loop")
        ax.bar([i + 0.2 for i in x], [t["mpcluster"][w]["rate"] for w in ("1", "4")], 0.4, label="mpcluster")
        ax.set_xticks(list(x), labels)
        ax.set_ylabel("no-op tasks / s")
        ax.set_title(f"throughput (mpcluster {t['ratio_4']}x the lesson at 4 workers)")
        ax.legend()
    ax = axes[0][1]
    if "scaling" in res:
        pts = res["scaling"]["points"]
        ws = [int(w) for w in pts]
        ax.plot(ws, [pts[str(w)]["seconds"] for w in ws], "o-", label="measured")
        ax.plot(ws, [pts[str(w)]["ideal_seconds"] for w in ws], "--", label="ideal")
        for w in ws:
            ax.annotate(f"{pts[str(w)]['efficiency']:.2f}", (w, pts[str(w)]["seconds"]), textcoords="offset points",
                        xytext=(4, 6))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ws, [str(w) for w in ws])
        ax.set_xlabel("workers")
        ax.set_ylabel("seconds")
        ax.set_title(f"scaling: {res['scaling']['tasks']} x sleep {res['scaling']['task_seconds']} s (efficiency)")
        ax.legend()
    ax = axes[0][2]
    if "compute" in res:
        c = res["compute"]
        labels = [f"primes\n{k}" for k in c["primes"]] + [f"sleep\n{k}" for k in c["sleep"]]
        vals = [r["seconds"] for r in c["primes"].values()] + [r["seconds"] for r in c["sleep"].values()]
        colors = ["tab:red"] * len(c["primes"]) + ["tab:green"] * len(c["sleep"])
        ax.barh(range(len(vals)), vals, color=colors)
        ax.set_yticks(range(len(vals)), [x.replace(", ", ",\n") for x in labels], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("seconds for the job")
        ax.set_title("compute (primes) vs I/O (sleep)")
    ax = axes[1][0]
    if "startup" in res:
        md = res["startup"]["median"]
        keys = [("master_started", "master started"), ("master_listening", "master listening"),
                ("first_worker_started", "first worker started"), ("first_worker_joined", "first worker joined"),
                ("first_result", "first result"), ("demo_done", "demo done"), ("make_up_seconds", "make up returned")]
        keys = [(k, lbl) for k, lbl in keys if md.get(k) is not None]
        ax.barh(range(len(keys)), [md[k] for k, _ in keys], color="tab:purple")
        ax.set_yticks(range(len(keys)), [lbl for _, lbl in keys])
        ax.invert_yaxis()
        ax.axvline(TARGETS["startup_seconds"], color="grey", ls="--", label="target 6 s")
        ax.set_xlabel("seconds after `make up` started (median)")
        ax.set_title("start-up")
        ax.legend()
    ax = axes[1][1]
    if "large" in res:
        g = res["large"]
        ax.bar(["master peak RSS"], [g["peak_rss_mb"]], color="tab:orange")
        ax.axhline(TARGETS["large_rss_mb"], color="grey", ls="--", label="target 400 MB")
        ax.set_ylabel("MB")
        ax.set_title(f"large job: {g['tasks']:,} tasks in {g['seconds']:.0f} s on 4 workers")
        ax.legend()
    ax = axes[1][2]
    if "idle" in res:
        i = res["idle"]
        ax.plot(range(1, len(i["samples_percent"]) + 1), i["samples_percent"], "o-")
        ax.axhline(TARGETS["idle_cpu_percent"], color="grey", ls="--", label="target 1%")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("docker stats sample")
        ax.set_ylabel("master CPU %")
        ax.set_title(f"idle: master CPU, {i['workers']} idle workers (mean {i['mean_percent']}%)")
        ax.legend()
    ax = axes[0][3]
    if "page" in res:
        g = res["page"]
        cases = [(c, lbl.replace(" ", "\n", 1)) for c, lbl in PAGE_CASES.items() if g["runs"][c]]
        ax.bar([lbl for _, lbl in cases], [g[c + "_median_rate"] for c, _ in cases], color="tab:cyan")
        ax.set_ylabel("no-op tasks / s (median)")
        ax.set_title("status page open vs not (4 workers)")
    axes[1][3].axis("off")
    m = res["machine"]
    fig.suptitle(f"mpcluster bench{' (QUICK: smoke sizes)' if res['quick'] else ''} - {m['cpu']}, {m['cores']} cores, "
                 f"Docker {m['docker']}, Python {m['python_containers']} - {res['finished'][:16]}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
    sizes = dict(QUICK if a.quick else FULL)
    for kv in a.set:
        k, _, v = kv.partition("=")
        if k not in sizes:
            ap.error(f"--set {k}: expected one of {', '.join(sizes)}")
        sizes[k] = json.loads(v)

    tag = os.environ.get("MPC_IMAGE_TAG") or "bench"
    key = os.environ.get("MPC_AUTHKEY_HOST_FILE") or str(ROOT / ".secrets" / "authkey")
    if not Path(key).is_file():
        ap.error(f"no key at {key}: run `make key` (or make up) first")
    env = {**os.environ, **{k: v for k, v in _dotenv().items() if k == "BASE_IMAGE" and k not in os.environ},
           "MPC_IMAGE_TAG": tag, "MPC_AUTHKEY_HOST_FILE": key, "MPC_HOST_PORT": "0", "MPC_WEB_PORT": "0",
           "MPC_DEMO_TASKS": "0", "COMPOSE_PROGRESS": "quiet"}
    env.pop("COMPOSE_PROJECT_NAME", None)
    projects = Projects(uuid.uuid4().hex[:6], env)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    res: dict = {"run_id": projects.run_id, "quick": a.quick, "sizes": sizes, "sections": run, "started": dt.datetime.now().isoformat()}
    built = False
    try:
        say(f"run {projects.run_id}: Compose projects mpcbench-{projects.run_id}-*; sections: {', '.join(run)}")
        if not a.no_build:
            say(f"building the images (mpcluster-master:{tag}, mpcluster-worker:{tag}; cached layers are reused)")
            projects.compose(projects.name("build"), ["compose.yaml"], "build", "-q", timeout=1800)
            built = True
        res["machine"] = machine(env, tag)
        for name in run:
            say(f"== {name}")
            started = time.monotonic()
            res[name] = globals()[name](projects, sizes)
            res[name]["section_seconds"] = round(time.monotonic() - started, 1)
    except KeyboardInterrupt:
        say("interrupted: removing what this run started")
        projects.down_all()
        return 130
    finally:
        projects.down_all()
        if built and tag == "bench":
            subprocess.run(["docker", "image", "rm", f"mpcluster-master:{tag}", f"mpcluster-worker:{tag}"],
                           capture_output=True)
    res["finished"] = dt.datetime.now().isoformat()
    res["targets"] = verdicts(res)
    (out_dir / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    say("")
    say(table(res))
    plot(res, out_dir / "results.png")
    say(f"\nwrote {out_dir / 'results.json'} and {out_dir / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
