"""A real multi-node swarm on one machine: three Docker-in-Docker nodes, run as the README's runbook says.

  docker swarm init / join            three engines, one swarm (n1 manages and holds the master)
  make stack-images NODES=... SSH=... the images copied into each node: docker save | docker exec -i NODE docker load
  make stack-up (MPC_SWARM_PUBLISH=1) against n1's engine: master + 6 workers over the three nodes
then: a job's results come from workers on several nodes; the master's port listens on its node only; a whole
node is killed in the middle of a job and no result is lost; the killed node's replicas come back elsewhere
under their old ids. Everything is removed at the end, the nodes' cgroup folders included.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.cluster import SESSION
from tests.support import Proc, last_json, wait_until
from tests.swarm.conftest import cannot_run
from tests.swarm.nodes import Engine, Lab, Stack, leftover_cgroups

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

WORKERS = 6
PORT = 5000  # each node is its own host: the default port, published on the master's node only


@pytest.fixture(scope="module")
def lab(swarm_env):
    lab = Lab(f"mpct{SESSION}", 3)
    try:
        lab.start()
        lab.form_swarm()
    except Exception as e:
        lab.close()
        cannot_run(f"a Docker-in-Docker swarm cannot be created here ({str(e).strip().splitlines()[0]})")
    try:
        yield lab
    finally:
        lab.close()
        assert [p for n in lab.nodes for p in leftover_cgroups(n.name)] == []


@pytest.fixture(scope="module")
def stack(lab, swarm_env, request):
    manager = lab.nodes[0]
    s = Stack(manager, f"mpct{SESSION}multi",
              {**swarm_env, "MPC_SWARM_PUBLISH": "1", "MPC_HOST_PORT": str(PORT)})
    # The images are built on this machine's engine and copied into every node, as `ssh` would.
    Engine().make("stack-images", f"NODES={' '.join(n.name for n in lab.nodes)}", "SSH=docker exec -i",
                  env=s.env)
    try:
        out = s.make("stack-up", WORKERS=str(WORKERS))
        assert f"{WORKERS} workers connected" in out and "labelled this node (n1)" in out, out
        yield s
    finally:
        if request.session.testsfailed:
            print(f"\nstack logs saved to {s.save_logs(request.module.__name__.rsplit('.', 1)[-1])}")
        s.make("stack-down")


def test_the_stack_spans_the_nodes_and_a_jobs_results_come_from_several(lab, stack):
    tasks = stack.engine.service_tasks(f"{stack.name}_worker")
    assert len(tasks) == WORKERS and {t["node"] for t in tasks} == {"n1", "n2", "n3"}
    assert [t["node"] for t in stack.engine.service_tasks(f"{stack.name}_master")] == ["n1"]  # the labelled node
    s = last_json(stack.mpc("submit", "--json", "--tasks", "24", "--seconds", "0.5", "--seed", "3").stdout)
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (24, 24, [], 0, 0, [])
    node_of = stack.worker_ips()
    nodes = {node_of[ip] for ip in s["ips"].values()}  # KeyError if a result came from anywhere else
    assert len(nodes) >= 2, s
    # Readable ids: the slot as the id, the node in the hostname.
    hosts = {w["id"]: w["host"] for w in stack.status()["workers"] if w["state"] == "alive"}
    assert set(hosts) == {f"worker-{i}" for i in range(1, WORKERS + 1)}
    assert all(re.fullmatch(rf"n[123]-{wid}", host) for wid, host in hosts.items()), hosts


def test_the_masters_port_listens_on_its_node_only(lab, stack):
    ports = stack.service("master")["Endpoint"]["Ports"]
    assert sorted(ports, key=lambda p: p["TargetPort"]) == [
        {"Protocol": "tcp", "TargetPort": 5000, "PublishedPort": PORT, "PublishMode": "host"},
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 8080, "PublishMode": "host"},  # the status page
    ]
    n1, n2, n3 = lab.nodes
    for port in (PORT, 8080):  # host mode: Swarm cannot narrow it to one address, but it is this node only
        assert ("0.0.0.0", port) in n1.listening()
        assert all(p != port for node in (n2, n3) for _, p in node.listening())
    # dnsrr: from a worker on another node, `master` is the master's own address, no VIP (IPVS) between.
    worker = n2.container_of(f"{stack.name}_worker")
    resolved = n2.docker("exec", worker, "getent", "hosts", "master").stdout.split()[0]
    assert [resolved] == [ip for t in n1.service_tasks(f"{stack.name}_master") for ip in t["ips"]]
    # ... which is what doctor, run in that worker, finds too: every check passes across the nodes.
    r = n2.docker("exec", worker, "python3", "-m", "mpcluster", "doctor", check=False)
    assert r.returncode == 0 and f"ok    name       master resolves to {resolved}\n" in r.stdout, r.stdout


def test_killing_a_whole_node_in_the_middle_of_a_job_loses_no_result(lab, stack):
    n1 = lab.nodes[0]
    on_node: dict[str, list[str]] = {}
    for t in n1.service_tasks(f"{stack.name}_worker"):
        on_node.setdefault(t["node"], []).append(f"worker-{t['slot']}")
    victim = next(n for n in lab.nodes[1:] if on_node.get(n.hostname))  # never n1: it holds the master
    job = Proc(stack.exec_args("submit", "--json", "--quiet", "--tasks", "60", "--seconds", "1"))
    try:
        job_id = job.expect(r"submitted job (\S+):", 60).group(1)
        wait_until(lambda: stack.job_done(job_id) >= 6, 90, "6 results before the kill", every=0.5)
        st = stack.status()
        leased = {w["id"]: w["leased"] for w in st["workers"]}
        done_at_kill = next(j["done"] for j in st["jobs"] if j["job"] == job_id)
        killed_at = time.monotonic()
        lab.kill(victim)
        assert done_at_kill <= 48, "the job was nearly over before the kill: nothing much was tested"
        assert job.wait(240) == 0, job.text
    finally:
        job.stop()
    s = last_json(job.text)
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (60, 60, [], 0, 0, [])
    held = sum(leased.get(w, 0) for w in on_node[victim.hostname])
    assert s["redeliveries"] >= 1  # the dead node's workers held tasks; they were run again elsewhere
    # Swarm notices the node is down and reschedules its replicas; they rejoin under their old ids, which the
    # master treats as restarts.
    nodes = lambda: n1.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout  # noqa: E731
    wait_until(lambda: f"{victim.hostname} Down" in nodes(), 120, f"{victim.hostname} Down", every=0.5)
    down_after = time.monotonic() - killed_at
    log = lambda: n1.docker("service", "logs", "--raw", f"{stack.name}_master").stdout  # noqa: E731
    for wid in on_node[victim.hostname]:
        wait_until(lambda w=wid: re.search(rf"worker {w} restarted", log()), 120, f"{wid} back", every=0.5)
    back_after = time.monotonic() - killed_at
    hosts = {w["id"]: w["host"] for w in stack.status()["workers"] if w["state"] == "alive"}
    assert len(hosts) == WORKERS and not any(h.startswith(f"{victim.hostname}-") for h in hosts.values()), hosts
    print(f"\nnode kill: {victim.hostname} (workers {', '.join(on_node[victim.hostname])}, {held} tasks leased) "
          f"killed at {done_at_kill}/60 results; job: {s['results']}/{s['tasks']} in "
          f"{s['seconds']} s, {s['redeliveries']} redeliveries, {s['duplicates_dropped']} late duplicates dropped; "
          f"swarm marked it Down after {down_after:.0f} s, its replicas rejoined after {back_after:.0f} s")
