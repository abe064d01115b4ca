"""The stack on a single-node swarm (this machine's own engine), deployed with `make stack-up` from the local
images: scaled to 4, every result of a job arrives from at least 3 workers; scaled to 1 in the middle of a job,
nothing is lost; the master's port is not published anywhere; `make stack-down` removes it all. And with
REGISTRY=host:port, the images are pushed to a registry (a local one) and the stack pins their digests.

The engine joins a swarm only if it is in none (listening on 127.0.0.1 only), and leaves it again only then.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.cluster import SESSION
from tests.support import Proc, free_port, last_json
from tests.swarm.conftest import cannot_run
from tests.swarm.nodes import HostSwarm, LocalRegistry, Stack, listening, run

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


@pytest.fixture(scope="module")
def host_swarm(swarm_env):
    swarm = HostSwarm()
    try:
        engine = swarm.__enter__()
    except (RuntimeError, AssertionError) as e:
        cannot_run(f"no single-node swarm here ({e})")
    try:
        yield swarm, engine
    finally:
        swarm.__exit__()


@pytest.fixture(scope="module")
def stack(host_swarm, swarm_env, request):
    swarm, engine = host_swarm
    s = Stack(engine, f"mpct{SESSION}one", {**swarm_env, "MPC_HOST_PORT": str(free_port())})
    try:
        out = s.make("stack-up", WORKERS="2")
        assert "2 workers connected" in out, out
        yield s
    finally:
        if request.session.testsfailed:
            print(f"\nstack logs saved to {s.save_logs(request.module.__name__.rsplit('.', 1)[-1])}")
        s.make("stack-down")


def test_scaled_to_four_a_jobs_results_come_from_at_least_three_workers(stack):
    out = stack.make("stack-scale", WORKERS="4")
    assert "workers: 4 alive" in out, out
    s = last_json(stack.mpc("submit", "--json", "--tasks", "24", "--seconds", "0.5", "--seed", "4").stdout)
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (24, 24, [], 0, 0, [])
    assert len(s["workers"]) >= 3 and sum(s["workers"].values()) == 24
    # Worker ids are the replicas' slots; their addresses are the worker tasks' own on the overlay network.
    assert set(s["workers"]) <= {f"worker-{i}" for i in range(1, 5)}
    assert set(s["ips"].values()) <= set(stack.worker_ips())
    # `make stack-status` shows the same cluster, hostnames carrying the node's name.
    st = stack.status()
    node = engine_hostname(stack)
    assert {w["id"]: w["host"] for w in st["workers"] if w["state"] == "alive"} == {
        f"worker-{i}": f"{node}-worker-{i}" for i in range(1, 5)}
    assert "workers: 4 alive of 4 seen" in stack.make("stack-status")


def test_scaled_to_one_in_the_middle_of_a_job_nothing_is_lost(stack):
    stack.make("stack-scale", WORKERS="4")
    # 48 one-second tasks, about 12 s for 4 workers; the scale-down is asked for as soon as the job is in. On a
    # busy machine `make stack-scale` can take seconds to land its SIGTERMs, so what proves the workers left in
    # the middle of the job is the job itself: the one that stayed did clearly more than any that left.
    job = Proc(stack.exec_args("submit", "--json", "--quiet", "--tasks", "48", "--seconds", "1"))
    try:
        job.expect(r"submitted job (\S+):", 60)
        stack.make("stack-scale", WORKERS="1")
        assert job.wait(180) == 0, job.text
    finally:
        job.stop()
    s = last_json(job.text)
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (48, 48, [], 0, 0, [])
    assert sum(s["workers"].values()) == 48 and s["redeliveries"] == 0  # stopped workers finish or hand back
    alive = [w["id"] for w in stack.status()["workers"] if w["state"] == "alive"]
    assert len(alive) == 1, alive
    survivor, left = s["workers"][alive[0]], [n for w, n in s["workers"].items() if w != alive[0]]
    assert len(left) == 3 and survivor >= max(left) + 2, f"the job ended before the scale-down: {s['workers']}"
    print(f"\nscale 4 -> 1 mid-job: 48/48 in {s['seconds']} s, the remaining worker did {survivor}, the three "
          f"that left {sorted(left)}; handed back {s['handed_back']}, redeliveries {s['redeliveries']}")


def test_the_masters_port_is_not_published(stack):
    spec = stack.service("master")
    assert spec["Spec"]["EndpointSpec"] == {"Mode": "dnsrr"}  # no VIP, and Swarm refuses ingress ports with it
    assert not spec["Endpoint"].get("Ports")
    port = int(stack.env["MPC_HOST_PORT"])  # the port compose.yaml alone would publish
    assert all(p != port for _, p in listening(run(["ss", "-ltnH"]).stdout))
    # ... and yet the workers reach it: `master` resolves to the master's own address on the overlay network.
    worker = stack.engine.container_of(f"{stack.name}_worker")
    resolved = stack.engine.docker("exec", worker, "getent", "hosts", "master").stdout.split()[0]
    master_ips = [ip for t in stack.engine.service_tasks(f"{stack.name}_master") for ip in t["ips"]]
    assert resolved in master_ips


def test_the_swarm_the_test_created_listens_on_loopback_only(host_swarm):
    swarm, _ = host_swarm
    if not swarm.created:
        pytest.skip("this engine was already in a swarm: its listeners are its owner's choice")
    swarm_ports = {(a, p) for a, p in listening(run(["ss", "-ltnH"]).stdout) if p in (2377, 7946)}
    assert swarm_ports == {("127.0.0.1", 2377), ("127.0.0.1", 7946)}


def test_stack_down_removes_the_services_network_secret_and_journal(host_swarm, swarm_env):
    _, engine = host_swarm
    s = Stack(engine, f"mpct{SESSION}down", dict(swarm_env))
    s.make("stack-up", WORKERS="1")
    assert engine.docker("volume", "inspect", f"{s.name}_journal", check=False).returncode == 0
    out = s.make("stack-down")
    assert f"removed the journal volume {s.name}_journal" in out
    leftovers = [
        engine.docker("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={s.name}").stdout,
        engine.docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={s.name}").stdout,
        engine.docker("secret", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={s.name}").stdout,
        engine.docker("network", "ls", "-q", "--filter", f"name={s.name}_").stdout,
        engine.docker("volume", "ls", "-q", "--filter", f"name={s.name}_").stdout,
    ]
    assert [x.strip() for x in leftovers] == [""] * 5


def test_with_a_registry_the_images_are_pushed_and_the_stack_pins_their_digests(host_swarm, swarm_env):
    _, engine = host_swarm
    tag = swarm_env["MPC_IMAGE_TAG"]
    with LocalRegistry(f"mpct{SESSION}registry") as registry:
        s = Stack(engine, f"mpct{SESSION}reg", {**swarm_env, "REGISTRY": registry.address})
        pushed = [f"{registry.address}/mpcluster-{role}:{tag}" for role in ("master", "worker")]
        try:
            out = s.make("stack-images")
            assert all(f"pushing {image}" in out for image in pushed), out
            assert sorted(registry.catalog()) == ["mpcluster-master", "mpcluster-worker"]
            s.make("stack-up", WORKERS="1")
            for role, image in zip(("master", "worker"), pushed, strict=True):
                spec = s.service(role)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
                assert re.fullmatch(re.escape(image) + r"@sha256:[0-9a-f]{64}", spec), spec  # what every node pulls
            r = last_json(s.mpc("submit", "--json", "--tasks", "3", "--seconds", "0").stdout)
            assert (r["results"], r["missing"]) == (3, [])
        finally:
            s.make("stack-down")
            engine.docker("image", "rm", *pushed, check=False)


def engine_hostname(stack: Stack) -> str:
    out = stack.engine.docker("info", "--format", "{{.Name}}").stdout.strip()
    assert re.fullmatch(r"[\w.-]+", out), out
    return out
