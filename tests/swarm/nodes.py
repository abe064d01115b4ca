"""Node plumbing for the swarm tests: a real multi-node Docker Swarm on one machine.

Each "node" is a Docker-in-Docker container (scripts/swarm-node-image: the project's base image plus Debian's
docker.io) running its own engine, on one bridge network of its own, with its own cgroup parent so the inner
engines do not collide with the outer one's. `--privileged` is refused on these machines; the flags below are
the ones that work (DESIGN.md). Each node's engine socket is also bind-mounted to a host folder, so the host's
`docker -H unix://...` (and `make stack-*` with DOCKER_HOST) drive a node exactly as a user drives a manager.

Also the host engine's own single-node swarm (joined only if it is in none, left only if we joined it), and
`listening()`, which reads what a node listens on with `ss -ltn` instead of sending it traffic.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.cluster import LOG_DIR
from tests.support import ROOT, wait_until

NODE_RUN_FLAGS = [
    "--cap-add=ALL", "--cap-drop=SYS_RESOURCE",  # --privileged minus the one capability not grantable here
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--cgroupns=private", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/var/lib/docker:exec",
]
CGROUP_ROOT = Path("/sys/fs/cgroup")
OWNER = "mpcluster.test.owner"  # label on every node and node network: "<hostname>:<pid of the test process>"


def run(args: list[str], *, check: bool = True, timeout: float = 180, env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input,
                       env={**os.environ, **(env or {})}, cwd=ROOT)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def listening(ss_output: str) -> set[tuple[str, int]]:
    """(address, port) of every TCP listener in `ss -ltnH` output; '*' and '[::]' as they are printed."""
    found = set()
    for line in ss_output.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "LISTEN":
            addr, _, port = parts[3].rpartition(":")
            found.add((addr, int(port)))
    return found


@dataclass
class Engine:
    """A Docker Engine the host's CLI can drive: the host's own, or a node's through its socket."""

    host: str = ""  # "" = the default engine (DOCKER_HOST as the environment has it)

    @property
    def env(self) -> dict:
        return {"DOCKER_HOST": self.host} if self.host else {}

    def docker(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        return run(["docker", *args], check=check, timeout=timeout, env=self.env)

    def make(self, target: str, *assignments: str, env: dict | None = None, timeout: float = 600) -> str:
        """`make TARGET VAR=value...` in the repo against this engine; returns its output."""
        r = run(["make", "-s", "--no-print-directory", target, *assignments], env={**self.env, **(env or {})},
                check=False, timeout=timeout)
        assert r.returncode == 0, f"make {target} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r.stdout + r.stderr

    def swarm_state(self) -> tuple[str, bool]:
        out = self.docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}").stdout.split()
        return out[0], out[1] == "true"

    def service_tasks(self, service: str) -> list[dict]:
        """The running tasks of a service: slot, node hostname, overlay IP addresses."""
        ids = self.docker("service", "ps", "-q", "--filter", "desired-state=running", service).stdout.split()
        if not ids:
            return []
        node_ids = self.docker("node", "ls", "-q").stdout.split()
        nodes = {n["ID"]: n["Description"]["Hostname"] for n in json.loads(self.docker("node", "inspect", *node_ids).stdout)}
        tasks = []
        for t in json.loads(self.docker("inspect", *ids).stdout):
            if t["Status"]["State"] != "running":
                continue
            ips = [a.split("/")[0] for n in t.get("NetworksAttachments", []) for a in n.get("Addresses", [])]
            tasks.append({"slot": t.get("Slot"), "node": nodes.get(t.get("NodeID"), "?"), "ips": ips})
        return tasks

    def container_of(self, service: str) -> str:
        """A running container of the service on this engine's node."""
        return self.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}",
                           "--filter", "status=running").stdout.split()[0]


@dataclass
class Node(Engine):
    name: str = ""      # the DinD container's name on the host engine
    hostname: str = ""  # the node's name in the swarm
    ip: str = ""        # its address on the nodes' bridge network

    def sh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A command in the node itself (not in its engine's containers)."""
        return run(["docker", "exec", self.name, *args], check=check, timeout=timeout)

    def listening(self) -> set[tuple[str, int]]:
        return listening(self.sh("ss", "-ltnH").stdout)


@dataclass
class Lab:
    """Several DinD nodes on one bridge network, formed into one swarm; everything removed by close()."""

    prefix: str                      # unique per session, e.g. mpct1a2b3c
    count: int = 3
    image: str = ""
    nodes: list[Node] = field(default_factory=list)
    network: str = ""
    sockets: Path | None = None

    def start(self, timeout: float = 90) -> None:
        sweep_orphans()
        self.image = self.image or run([str(ROOT / "scripts" / "swarm-node-image")], timeout=600).stdout.strip()
        self.network = f"{self.prefix}nodes"
        owner = f"{OWNER}={socket.gethostname()}:{os.getpid()}"
        run(["docker", "network", "create", "--label", owner, self.network])
        self.sockets = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        for i in range(1, self.count + 1):
            name, folder = f"{self.prefix}n{i}", self.sockets / f"n{i}"
            folder.mkdir()
            run(["docker", "run", "-d", "--name", name, "--hostname", f"n{i}", "--network", self.network, "--label", owner,
                 *NODE_RUN_FLAGS, "-v", f"{folder}:/var/run/mpc-host", self.image,
                 "dockerd", "--host=unix:///var/run/docker.sock", "--host=unix:///var/run/mpc-host/docker.sock",
                 f"--cgroup-parent=/{name}"])
            self.nodes.append(Node(host=f"unix://{folder}/docker.sock", name=name, hostname=f"n{i}"))
        for node in self.nodes:
            wait_until(lambda n=node: n.docker("info", check=False, timeout=20).returncode == 0, timeout,
                       f"the engine in {node.name}", every=0.5)
            node.ip = run(["docker", "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{self.network}\").IPAddress}}}}",
                           node.name]).stdout.strip()

    def form_swarm(self, timeout: float = 90) -> Node:
        """`docker swarm init` on the first node, `join` as workers on the others; returns the manager."""
        manager = self.nodes[0]
        manager.docker("swarm", "init", "--advertise-addr", manager.ip)
        token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for node in self.nodes[1:]:
            node.docker("swarm", "join", "--advertise-addr", node.ip, "--token", token, f"{manager.ip}:2377")
        wait_until(lambda: manager.docker("node", "ls", "--format", "{{.Status}}").stdout.split().count("Ready")
                   == self.count, timeout, f"{self.count} nodes Ready in the swarm", every=0.5)
        return manager

    def kill(self, node: Node) -> None:
        """The whole node goes, at once: its engine and every container in it (a power cut, not a shutdown)."""
        run(["docker", "rm", "-f", node.name])

    def close(self) -> None:
        for node in self.nodes:
            run(["docker", "rm", "-f", node.name], check=False)
        if self.network:
            run(["docker", "network", "rm", self.network], check=False)
        for node in self.nodes:
            remove_cgroups(node.name)
        if self.sockets:
            shutil.rmtree(self.sockets, ignore_errors=True)


def remove_cgroups(parent: str) -> None:
    """The inner engines' cgroup folders (/sys/fs/cgroup/<controller>/<parent>/...) outlive the node; empty
    once its processes are gone, they are removed deepest first."""
    for top in CGROUP_ROOT.glob(f"*/{parent}"):
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
            try:
                folder.rmdir()
            except OSError:
                pass


def sweep_orphans() -> list[str]:
    """Remove the nodes (and their networks and cgroup folders) of test sessions on this machine that died
    without tearing down; a live session's nodes are left alone, whoever runs it."""
    swept = []
    label = f'{{{{.Label "{OWNER}"}}}}'
    for kind, listing, name_field in (("container", ["ps", "-a"], "{{.Names}}"), ("network", ["network", "ls"], "{{.Name}}")):
        out = run(["docker", *listing, "--filter", f"label={OWNER}", "--format", f"{name_field} {label}"], check=False)
        for line in out.stdout.splitlines():
            name, _, owner = line.partition(" ")
            host, _, pid = owner.rpartition(":")
            if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
                continue
            run(["docker", kind, "rm", *(["-f"] if kind == "container" else []), name], check=False)
            if kind == "container":
                remove_cgroups(name)
            swept.append(name)
    return swept


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def leftover_cgroups(parent: str) -> list[Path]:
    return list(CGROUP_ROOT.glob(f"*/{parent}"))


class HostSwarm:
    """The host engine's swarm for the single-node tests: joined only if the engine is in none (listening on
    127.0.0.1 only), left again only if we created it. A lock keeps two sessions on one machine from
    initialising and leaving it under each other."""

    LOCK = Path(tempfile.gettempdir()) / "mpcluster-host-swarm.lock"

    def __init__(self) -> None:
        self.engine = Engine()
        self.created = False
        self._lock = None
        self._had_gwbridge = False

    def __enter__(self) -> Engine:
        self._lock = open(self.LOCK, "w")
        try:
            wait_until(self._take_lock, 900, f"another session's swarm test to release {self.LOCK}", every=1)
            state, manager = self.engine.swarm_state()
            if state == "inactive":
                self._had_gwbridge = self.engine.docker("network", "inspect", "docker_gwbridge",
                                                        check=False).returncode == 0
                self.engine.docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377")
                self.created = True
            elif not (state == "active" and manager):
                raise RuntimeError(f"this engine's swarm state is {state!r} (manager: {manager}): a swarm test "
                                   "needs an engine in no swarm, or a swarm manager")
        except BaseException:
            self.__exit__()
            raise
        return self.engine

    def _take_lock(self) -> bool:
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def __exit__(self, *exc) -> None:
        try:
            if self.created:
                self.engine.docker("swarm", "leave", "--force", check=False)
                if not self._had_gwbridge:  # `swarm leave` keeps the bridge it created
                    self.engine.docker("network", "rm", "docker_gwbridge", check=False)
        finally:
            if self._lock:
                self._lock.close()


@dataclass
class Stack:
    """A deployed mpcluster stack, driven the way the README's runbook drives it: `make stack-*` against the
    manager's engine, and `python3 -m mpcluster` in the master's container (on the manager's node here)."""

    engine: Engine
    name: str
    env: dict

    def make(self, target: str, *assignments: str, **env: str) -> str:
        return self.engine.make(target, *assignments, env={**self.env, "STACK": self.name, **env})

    def master_container(self) -> str:
        return self.engine.container_of(f"{self.name}_master")

    def exec_args(self, *args: str) -> list[str]:
        return ["docker", *(["-H", self.engine.host] if self.engine.host else []), "exec", "-i",
                self.master_container(), "python3", "-m", "mpcluster", *args]

    def mpc(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run(self.exec_args(*args), timeout=timeout)

    def status(self) -> dict:
        return json.loads(self.mpc("status", "--json").stdout.strip().splitlines()[-1])

    def job_done(self, job_id: str) -> int:
        return next((j["done"] for j in self.status()["jobs"] if j["job"] == job_id), 0)

    def worker_ips(self) -> dict[str, str]:
        """overlay IP -> node hostname, for the running worker tasks."""
        return {ip: t["node"] for t in self.engine.service_tasks(f"{self.name}_worker") for ip in t["ips"]}

    def service(self, role: str) -> dict:
        return json.loads(self.engine.docker("service", "inspect", f"{self.name}_{role}").stdout)[0]

    def save_logs(self, test: str) -> Path:
        """Tasks (with Swarm's reasons for ending them) and both services' logs, under test-logs/."""
        LOG_DIR.mkdir(exist_ok=True)
        path = LOG_DIR / f"{test}-{self.name}.log"
        parts = [self.engine.docker("stack", "ps", "--no-trunc", self.name, check=False).stdout]
        for role in ("master", "worker"):
            r = self.engine.docker("service", "logs", "--timestamps", f"{self.name}_{role}", check=False)
            parts.append(f"--- {role} ---\n{r.stdout}{r.stderr}")
        path.write_text("\n".join(parts))
        return path


REGISTRY_RECIPE = """\
FROM {base}
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null \\
 && rm -rf /var/lib/apt/lists/* \\
 && printf 'version: 0.1\\nstorage:\\n  filesystem:\\n    rootdirectory: /var/lib/docker-registry\\nhttp:\\n  addr: :5000\\n' \\
      > /etc/docker/registry/test.yml
EXPOSE 5000
# Debian's own config asks for htpasswd logins; this one, for a registry on 127.0.0.1 only, does not.
CMD ["docker-registry", "serve", "/etc/docker/registry/test.yml"]
"""


class LocalRegistry:
    """A container registry on 127.0.0.1 only, from Debian's docker-registry package (no registry needed to
    get it); its image is cached under a hash of its recipe. The engine trusts 127.0.0.0/8 registries
    without TLS, so `make stack-images REGISTRY=127.0.0.1:PORT` can push to it as to a real one."""

    def __init__(self, name: str, base: str = "mpcluster-base:bookworm") -> None:
        self.name, self.base = name, base
        self.address = ""

    def __enter__(self) -> LocalRegistry:
        recipe = REGISTRY_RECIPE.format(base=self.base)
        image = f"mpcluster-test-registry:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
        if run(["docker", "image", "inspect", image], check=False).returncode != 0:
            run(["docker", "build", "-q", "-t", image, "-"], input=recipe, timeout=600)
        run(["docker", "run", "-d", "--name", self.name, "-p", "127.0.0.1::5000", image])
        try:
            self.address = run(["docker", "port", self.name, "5000/tcp"]).stdout.split()[0]
            wait_until(lambda: self.catalog() is not None, 30, f"the registry at {self.address}", every=0.5)
        except BaseException:
            self.__exit__()
            raise
        return self

    def catalog(self) -> list[str] | None:
        """The registry's repositories; None while it does not answer. Never through a proxy: 127.0.0.1 only."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{self.address}/v2/_catalog", timeout=5) as r:
                return json.loads(r.read())["repositories"]
        except OSError:
            return None

    def __exit__(self, *exc) -> None:
        run(["docker", "rm", "-f", "-v", self.name], check=False)
