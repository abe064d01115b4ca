"""The cluster on real containers: every result arrives exactly once, from workers on other hosts."""

from __future__ import annotations

import random
import re

import pytest

from tests.support import clean, last_json, run_mpc

pytestmark = pytest.mark.docker


def test_up_runs_the_demo_job_across_several_workers(make_cluster):
    c = make_cluster(workers=3, MPC_DEMO_TASKS=10)
    c.mpc("status", "--wait-job", "demo-", "--timeout", "90", timeout=120)  # what `make up` waits with
    m = c.wait_log("master", r"Demo job \S+ done: (\d+)/(\d+) results in [\d.]+ s from (\d+) workers", 10)
    assert m.group(1) == m.group(2) == "10" and int(m.group(3)) >= 2
    log = c.logs("master")
    puts = [int(n) for n in re.findall(r"Put task (\d+)\.\.\.", log)]
    results = re.findall(r"Result: (\d+) \* (\d+) = (\d+)  \(worker (\w+) at ([\d.]+)\)", log)
    assert len(puts) == 10 and "Try get results..." in log
    assert sorted(int(a) for a, *_ in results) == sorted(puts)
    assert all(int(a) * int(b) == int(v) for a, b, v, _, _ in results)
    worker_ids = {c.inspect(w.Name)["Config"]["Hostname"] for w in c.containers()}
    assert {w for *_, w, _ in results} <= worker_ids and len({w for *_, w, _ in results}) >= 2


@pytest.fixture(scope="module")
def shared(session_env, request):
    """One cluster for the scaling cases, scaled by each test (up is the slow part)."""
    from tests.integration.cluster import SESSION, Cluster
    from tests.support import ROOT

    c = Cluster(context=str(ROOT), compose_file_name=["compose.yaml"], workers=1, env=dict(session_env),
                project=f"mpct{SESSION}shared")
    c.start()
    yield c
    if request.session.testsfailed:
        c.save_logs(f"shared-{c.project}")
    c.compose("down", "-v", "--remove-orphans", "-t", "3", check=False)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_every_result_arrives_exactly_once_with_n_workers(shared, n):
    shared.scale(n)
    st = shared.wait_workers(n)
    assert st["alive"] == n
    tasks = 4 * n
    r = shared.mpc("submit", "--json", "--seed", str(n), "--tasks", str(tasks), "--seconds", "0.5")
    s = last_json(r.stdout)
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (tasks, tasks, [], 0, 0, [])
    # each value checked here too: the client draws the lesson's random.randint(0, 10000) from its seed
    rng = random.Random(n)
    numbers = [rng.randint(0, 10000) for _ in range(tasks)]
    lines = re.findall(r"\] task (\d+): (\d+)  \(worker (\w+) at ([\d.]+)\)", clean(r.stdout))
    assert sorted(int(i) for i, *_ in lines) == list(range(tasks))  # each task's result exactly once
    assert all(int(v) == numbers[int(i)] ** 2 for i, v, *_ in lines)
    assert sum(s["workers"].values()) == tasks
    master_ip = shared.ip_of(shared.containers("master")[0].Name)
    worker_ips = {shared.ip_of(w.Name) for w in shared.containers()}
    assert len(worker_ips) == n and master_ip not in worker_ips
    assert set(s["ips"].values()) <= worker_ips  # the results really came from the worker containers
    if n >= 3:
        assert len(s["workers"]) >= 3


def test_ten_one_second_tasks_spread_over_all_three_workers(shared):
    shared.scale(3)
    shared.wait_workers(3)
    s = shared.submit("--tasks", "10", "--seconds", "1")
    assert s["results"] == 10 and len(s["workers"]) == 3  # leased-but-not-started work starves nobody
    assert max(s["workers"].values()) <= 4


def test_scaling_up_during_a_job_adds_workers_that_take_tasks(shared):
    shared.scale(1)
    before = {w["id"] for w in shared.wait_workers(1)["workers"] if w["state"] == "alive"}
    client = shared.exec_job("submit", "--json", "--tasks", "30", "--seconds", "0.5")
    shared.scale(4)
    s = shared.finish(client, 120)
    assert s["results"] == 30 and s["missing"] == [] and s["duplicates"] == 0
    newcomers = set(s["workers"]) - before
    assert len(newcomers) >= 2, s["workers"]  # workers that joined mid-job received tasks
    assert all(s["workers"][w] > 0 for w in newcomers)


def test_submit_from_the_host_through_the_published_port(shared, session_env):
    shared.scale(2)
    shared.wait_workers(2)
    port = shared.host_port()
    r = run_mpc("submit", "--master", f"127.0.0.1:{port}", "--authkey-file", session_env["MPC_AUTHKEY_HOST_FILE"],
                "--tasks", "6", "--seconds", "0.2", "--json", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    s = last_json(r.stdout)
    assert s["results"] == 6 and s["wrong"] == [] and len(s["workers"]) == 2
    r = run_mpc("status", "--json", "--master", f"127.0.0.1:{port}", "--authkey-file", session_env["MPC_AUTHKEY_HOST_FILE"])
    assert r.returncode == 0 and last_json(r.stdout)["alive"] == 2


def test_plain_compose_scale_joins_workers(shared):
    shared.compose("up", "-d", "--scale", "worker=5")  # what a user types, no make
    st = shared.wait_workers(5)
    assert st["alive"] == 5
    s = shared.submit("--tasks", "15", "--seconds", "0.5")
    assert s["results"] == 15 and len(s["workers"]) >= 3


def test_the_lessons_worker_in_a_container_serves_a_classic_job(make_cluster, session_env):
    c = make_cluster(workers=0)
    client = c.exec_job("submit", "--protocol", "classic", "--tasks", "5", "--json", "--timeout", "60")
    client.expect(r"Try get results", 60)  # the job's ints are on the lesson's task queue
    lesson = c.compose("run", "--rm", "--no-deps", "-v", f"{session_env['LESSON_DIR']}:/lesson:ro",
                       "-e", "LESSON_MASTER=master", "-e", "LESSON_PORT=5000",
                       "-e", "LESSON_AUTHKEY_FILE=/run/secrets/authkey",
                       "--entrypoint", "python3", "worker", "/lesson/task_worker.py", timeout=120)
    s = c.finish(client, 60)
    out = client.text
    text = clean(lesson.stdout)
    assert "Connect to server master..." in text and "worker exit." in text
    ran = sorted(int(n) for n in re.findall(r"run task (\d+) \* \d+\.\.\.", text))
    assert s["results"] == 5 and s["missing"] == [] and s["wrong"] == 0
    puts = sorted(int(n) for n in re.findall(r"Put task (\d+)", out))
    assert ran == puts


def test_our_worker_image_serves_the_lessons_own_master(make_cluster):
    c = make_cluster(workers=2, files=("compose.yaml", "tests/integration/compose_fixtures/lesson-master/compose.yaml"),
                     wait=False)
    c.wait_log("master", r"master exit\.", 90)
    log = c.logs("master")
    puts = sorted(int(n) for n in re.findall(r"Put task (\d+)\.\.\.", log))
    results = re.findall(r"Result: (\d+) \* (\d+) = (\d+)", log)
    assert len(puts) == 10 and sorted(int(a) for a, _, _ in results) == puts
    assert all(int(a) * int(b) == int(v) for a, b, v in results)
    wlog = c.logs("worker")
    assert wlog.count("serving it the classic way") == 2
    assert len(re.findall(r"run task \d+ \* \d+\.\.\.", wlog)) == 10
