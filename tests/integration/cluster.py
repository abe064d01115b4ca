"""The integration tests' handle on a real cluster: Docker Compose through testcontainers, plus the worker
scale it lacks, a per-cluster project name and environment, and the waits the tests need (all with deadlines).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from testcontainers.compose import DockerCompose

from tests.support import ROOT, Proc, clean, last_json, wait_until

# Every name a test session creates carries this, so runs never collide; .ci/run chooses it (MPC_TEST_SESSION)
# so that its cleanup removes this session's leftovers and no one else's.
_GIVEN = os.environ.get("MPC_TEST_SESSION", "")
SESSION = _GIVEN if re.fullmatch(r"[a-z0-9]{1,12}", _GIVEN) else uuid.uuid4().hex[:6]
LOG_DIR = ROOT / "test-logs"


def docker_problem() -> str | None:
    """Why the Docker tests cannot run here, or None."""
    for cmd, what in ((["docker", "info"], "the Docker Engine is not reachable"),
                      (["docker", "compose", "version"], "the Docker Compose v2 plugin is missing")):
        try:
            if subprocess.run(cmd, capture_output=True, timeout=60).returncode != 0:
                return what
        except (OSError, subprocess.TimeoutExpired):
            return what
    return None


@dataclass
class Cluster(DockerCompose):
    """DockerCompose plus the worker scale, a per-cluster project name and environment."""

    workers: int = 3
    env: dict = field(default_factory=dict)
    project: str = ""
    wait_up: bool = True  # `up --wait`; off when a service has no health check (the lesson's master)

    @property
    def compose_command_property(self) -> list[str]:
        cmd = ["docker", "compose", "-p", self.project]
        for f in self.compose_file_name or []:
            cmd += ["-f", f]
        return cmd

    def _run_command(self, cmd, context=None):
        return subprocess.run(cmd, cwd=context or str(self.context), env={**os.environ, **self.env},
                              capture_output=True, check=True)

    def start(self) -> None:
        self.compose("up", "-d", *(["--wait"] if self.wait_up else []), "--scale", f"worker={self.workers}", timeout=300)

    def compose(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.compose_command_property, *args], cwd=self.context, env={**os.environ, **self.env},
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def scale(self, n: int, wait: bool = True) -> None:
        self.compose("up", "-d", "--no-recreate", *(["--wait"] if wait else []), "--scale", f"worker={n}")
        self.workers = n

    def mpc(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """python3 -m mpcluster ... inside the master container."""
        r = self.compose("exec", "-T", "master", "python3", "-m", "mpcluster", *args, check=False, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"mpcluster {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def submit(self, *args: str, check: bool = True, timeout: float = 300) -> dict:
        r = self.mpc("submit", "--json", *args, check=check, timeout=timeout)
        return last_json(r.stdout)

    def status(self) -> dict:
        return last_json(self.mpc("status", "--json").stdout)

    def wait_workers(self, n: int, timeout: float = 60) -> dict:
        self.mpc("status", "--wait-workers", str(n), "--timeout", str(timeout), timeout=timeout + 30)
        return self.status()

    def containers(self, service: str = "worker", include_all: bool = False) -> list:
        return [c for c in self.get_containers(include_all=include_all) if c.Service == service]

    def inspect(self, name: str) -> dict:
        return json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True).stdout)[0]

    def ip_of(self, name: str) -> str:
        nets = self.inspect(name)["NetworkSettings"]["Networks"]
        return next(iter(nets.values()))["IPAddress"]

    def logs(self, *services: str) -> str:
        return clean(self.compose("logs", "--no-color", *services, check=False).stdout)

    def wait_log(self, service: str, pattern: str, timeout: float = 60) -> re.Match:
        """Poll a service's log for a line, with a deadline (a readiness check, not a sleep)."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.logs(service)), timeout,
                          lambda: f"{pattern!r} in the {service} logs; they end:\n{self.logs(service)[-3000:]}",
                          every=0.5)

    def start_job(self, *args: str) -> tuple[Proc, str]:
        """A `submit` client in its own one-off container on the cluster network (it outlives master restarts).

        Returns the running client and its job id (read from its first line)."""
        p = Proc([*self.compose_command_property, "run", "--rm", "--no-deps", "-T", "worker", "submit", "--json",
                  "--master", "master:5000", *args], {**self.env})
        return p, p.expect(r"submitted job (\S+):", 120).group(1)

    def exec_job(self, *args: str) -> Proc:
        """`python3 -m mpcluster ARGS` in the master container, running while the test does something else."""
        return Proc([*self.compose_command_property, "exec", "-T", "master", "python3", "-m", "mpcluster", *args],
                    {**self.env})

    def finish(self, client: Proc, timeout: float = 240) -> dict:
        code = client.wait(timeout)
        assert code == 0, f"submit exited {code}:\n{client.text[-4000:]}"
        return last_json(client.text)

    def job(self, job_id: str) -> dict:
        return next(j for j in self.status()["jobs"] if j["job"] == job_id)

    def wait_job(self, job_id: str, what: str, check, timeout: float = 90) -> dict:
        """Poll the master's view of a job until check(summary) holds, with a deadline."""
        def job_of(st: dict) -> dict:
            return next(j for j in st["jobs"] if j["job"] == job_id)

        return job_of(self.wait_status(f"job {job_id}: {what}", lambda st: check(job_of(st)), timeout))

    def wait_status(self, what: str, check, timeout: float = 60) -> dict:
        """Poll the master's status until check(status) holds, with a deadline."""
        seen: list[dict] = []

        def holds() -> dict | None:
            seen[:] = [self.status()]
            return seen[0] if check(seen[0]) else None

        return wait_until(holds, timeout, lambda: f"{what} (status: {seen[0] if seen else None})", every=0.3)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {r.stderr}")
        return r

    def worker_names(self) -> dict[str, str]:
        """worker id (the container's hostname) -> container name, for the running worker replicas."""
        return {self.inspect(c.Name)["Config"]["Hostname"]: c.Name for c in self.containers()
                if "-run-" not in c.Name}

    def busy_worker(self, job_id: str, timeout: float = 60) -> tuple[str, str]:
        """A worker that holds a lease right now, after the job has made some progress: (id, container)."""
        names = self.worker_names()

        def busy(st: dict) -> bool:
            job = next(j for j in st["jobs"] if j["job"] == job_id)
            return job["done"] >= 1 and any(w["leased"] and w["state"] == "alive" and w["id"] in names
                                            for w in st["workers"])

        st = self.wait_status(f"a busy worker on job {job_id}", busy, timeout)
        wid = next(w["id"] for w in st["workers"] if w["leased"] and w["state"] == "alive" and w["id"] in names)
        return wid, names[wid]

    def host_port(self) -> int:
        return int(self.compose("port", "master", "5000").stdout.strip().rsplit(":", 1)[1])

    def save_logs(self, name: str) -> Path:
        LOG_DIR.mkdir(exist_ok=True)
        path = LOG_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log"
        path.write_text(self.logs() + "\n--- ps ---\n" + self.compose("ps", "-a", check=False).stdout)
        return path


