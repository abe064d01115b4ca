"""The bench's harness: its own Compose projects (ephemeral host ports, removed however the run ends), the driver
inside a master that runs jobs, the counters read from Docker and the containers, and the machine it runs on."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DRIVE = (BENCH / "drive.py").read_text()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright cannot download its own browser here


def say(line: str) -> None:
    print(line, flush=True)


def dotenv() -> dict:
    try:
        return dict(line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines() if "=" in line)
    except OSError:
        return {}


def bench_env(tag: str, key: str) -> dict:
    """The environment of every compose call: the bench's image tag, ephemeral host ports, no demo job, and no
    COMPOSE_PROJECT_NAME, so that nothing lands in the cluster of `make up`."""
    env = {**os.environ, **{k: v for k, v in dotenv().items() if k == "BASE_IMAGE" and k not in os.environ},
           "MPC_IMAGE_TAG": tag, "MPC_AUTHKEY_HOST_FILE": key, "MPC_HOST_PORT": "0", "MPC_WEB_PORT": "0",
           "MPC_DEMO_TASKS": "0", "COMPOSE_PROGRESS": "quiet"}
    env.pop("COMPOSE_PROJECT_NAME", None)
    return env


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

    def build(self) -> None:
        self.compose(self.name("build"), ["compose.yaml"], "build", "-q", timeout=1800)

    def started_at(self, project: str, service: str, t0: float) -> float | None:
        """Seconds from t0 until the service's first container started, from Docker's own record."""
        ids = self.compose(project, ["compose.yaml"], "ps", "-aq", service).stdout.split()
        times = [subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", x], capture_output=True,
                                text=True).stdout.strip() for x in ids]
        epochs = [dt.datetime.fromisoformat(x[:26].rstrip("Z")).replace(tzinfo=dt.UTC).timestamp()
                  for x in times if x]
        return round(min(epochs) - t0, 3) if epochs else None


def remove_images(tag: str) -> None:
    subprocess.run(["docker", "image", "rm", f"mpcluster-master:{tag}", f"mpcluster-worker:{tag}"],
                   capture_output=True)


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

    def web_url(self) -> str:
        port = self.p.compose(self.project, self.FILES, "port", "master", "8080").stdout.strip().rsplit(":", 1)[1]
        return f"http://127.0.0.1:{port}/"

    def cgroup_max_usage_mb(self) -> float | None:
        """The master container's peak memory as its cgroup counts it (None where the cgroup v1 file is absent)."""
        mem = self.p.compose(self.project, self.FILES, "exec", "-T", "master", "cat",
                             "/sys/fs/cgroup/memory/memory.max_usage_in_bytes", check=False).stdout.strip()
        return round(int(mem) / 2**20, 1) if mem.isdigit() else None

    def down(self) -> None:
        self.p.down(self.project)


def log_times(text: str) -> list[tuple[float, str, str]]:
    """(epoch seconds, service, message) from `docker compose logs --timestamps`."""
    rows = []
    for line in ANSI.sub("", text).splitlines():
        m = re.match(r"^(\S+?)-\d+\s+\|\s+(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z\s(.*)$", line)
        if m:
            frac = float("0" + (m.group(3) or ".0")[:7])
            t = dt.datetime.fromisoformat(m.group(2)).replace(tzinfo=dt.UTC).timestamp() + frac
            rows.append((t, m.group(1), m.group(4)))
    return sorted(rows)


def cpu_used_ns(name: str) -> tuple[int, int]:
    """The container's CPU time so far and the host's, in ns: the two counters `docker stats` divides."""
    import docker  # the Docker SDK: in the test extra, which the bench extra rides on

    st = docker.from_env().containers.get(name).stats(stream=False)
    return st["cpu_stats"]["cpu_usage"]["total_usage"], time.monotonic_ns()


def docker_stats_cpu(name: str) -> float:
    """One `docker stats` sample of the container's CPU, in percent of one core."""
    r = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.CPUPerc}}", name],
                       capture_output=True, text=True, timeout=60)
    return float(r.stdout.strip().rstrip("%") or "nan")


class Poller:
    """What an open status page asks of the master: GET /api/status once a second, from a thread."""

    def __init__(self, url: str):
        self.url, self.stop, self.calls = url, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
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


def launch_chromium():
    """(playwright, browser): a headless chromium on this machine; raises when there is none."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise FileNotFoundError(f"{CHROMIUM} is not installed (apt-get install chromium)")
    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


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
            "base_image": env.get("BASE_IMAGE") or dotenv().get("BASE_IMAGE", "python:3.12-slim")}
