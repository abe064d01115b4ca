"""Your own work on real containers: the lesson's scripts as the cluster, a mounted module of task kinds on
scaled workers, failures (a raise, a hang past its time limit, a task that kills its worker), cancel, and
following a job after its client died. In each case every other result arrives exactly once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.cluster import SESSION
from tests.support import ANSI, ROOT, last_json, run_mpc

pytestmark = pytest.mark.docker

FAST = {"MPC_LEASE_SECONDS": "4", "MPC_HEARTBEAT_SECONDS": "1"}
KINDS = '''
import os
import socket
import time

import mpcluster


@mpcluster.task("host-square")
def host_square(n):
    return {"square": n * n, "host": socket.gethostname()}


@mpcluster.task("boom")
def boom(n):
    if n == 3:
        raise RuntimeError(f"task {n} is broken")
    return n


@mpcluster.task("hang")
def hang(seconds):
    time.sleep(seconds)
    return seconds


@mpcluster.task("crash")
def crash(n):
    if n == 0:
        os._exit(17)  # takes its whole worker down, every time
    return n
'''


@pytest.fixture(scope="module")
def tasks_dir():
    """A folder of task modules the containers' user can read (it is bind-mounted into every worker)."""
    d = Path(tempfile.mkdtemp(prefix=f"mpct{SESSION}-tasks-"))
    (d / "testkinds.py").write_text(KINDS)
    d.chmod(0o755)
    (d / "testkinds.py").chmod(0o644)
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def host_submit(c, key: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`submit` from the host, through the published port (where --input and --output files live)."""
    return run_mpc("submit", "--master", f"127.0.0.1:{c.host_port()}", "--authkey-file", key, "--json", *args,
                   timeout=timeout)


def exactly_once(s: dict, tasks: int, errors: int = 0) -> None:
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"]) == (tasks, tasks, [], 0, errors)
    assert sum(s["workers"].values()) == tasks


def test_make_lesson_runs_the_lessons_scripts_as_the_cluster(session_env):
    env = {**os.environ, **session_env, "LESSON_PROJECT": f"mpct{SESSION}lesson", "WORKERS": "3"}
    r = subprocess.run(["make", "--no-print-directory", "lesson"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    out = ANSI.sub("", r.stdout)  # (not clean(): the lesson's lines keep their host prefixes here)
    assert r.returncode == 0, out + r.stderr
    hosts = dict(re.findall(r"mpct\w+lesson-(worker-\d+) is host (\w+) at [\d.]+", out))
    assert len(hosts) == 3 and len(set(hosts.values())) == 3  # three worker hosts of their own
    puts = sorted(int(n) for n in re.findall(r"master-1\s+\| Put task (\d+)\.\.\.", out))
    results = re.findall(r"master-1\s+\| Result: (\d+) \* (\d+) = (\d+)", out)
    runs = re.findall(r"(worker-\d+)\s+\| run task (\d+) \* \d+\.\.\.", out)
    assert len(puts) == 10 and sorted(int(a) for a, _, _ in results) == puts
    assert all(int(a) * int(b) == int(v) for a, b, v in results)
    assert sorted(int(n) for _, n in runs) == puts and len({w for w, _ in runs}) >= 2  # the work spread
    assert "master exit." in out
    left = subprocess.run(["docker", "compose", "-p", f"mpct{SESSION}lesson", "ps", "-aq"], capture_output=True,
                          text=True, cwd=ROOT)
    assert left.stdout.strip() == ""  # and then the containers are gone


@pytest.fixture(scope="module")
def cluster(session_env, tasks_dir, request):
    """One cluster of three workers with the test's task modules, shared by the cases that do not break it."""
    from tests.integration.cluster import Cluster

    c = Cluster(context=str(ROOT), compose_file_name=["compose.yaml"], workers=3, project=f"mpct{SESSION}yours",
                env={**session_env, **FAST, "MPC_TASKS_DIR": str(tasks_dir)})
    c.start()
    c.wait_workers(3)
    yield c
    if request.session.testsfailed:
        c.save_logs(f"yours-{c.project}")
    c.compose("down", "-v", "--remove-orphans", "-t", "3", check=False)


def test_a_mounted_module_serves_a_job_on_scaled_workers(cluster, session_env, tmp_path):
    st = cluster.status()
    assert all({"host-square", "boom", "hang", "crash", "square"} <= set(w["kinds"]) for w in st["workers"])
    r = host_submit(cluster, session_env["MPC_AUTHKEY_HOST_FILE"], "--kind", "host-square",
                    "--input", str(jsonl(tmp_path / "in.jsonl", [{"n": n} for n in range(30)])),
                    "--output", str(tmp_path / "out.jsonl"))
    assert r.returncode == 0, r.stdout + r.stderr
    exactly_once(last_json(r.stdout), 30)
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["id"] for x in out] == list(range(30)) and [x["value"]["square"] for x in out] == [n * n for n in range(30)]
    hosts = {x["value"]["host"] for x in out}
    assert hosts == {x["worker"] for x in out} and len(hosts) >= 2  # computed on the workers' own hosts
    assert hosts <= set(cluster.worker_names())


def test_a_task_that_raises_is_an_error_result_with_its_traceback(cluster, session_env, tmp_path):
    r = host_submit(cluster, session_env["MPC_AUTHKEY_HOST_FILE"], "--kind", "boom",
                    "--input", str(jsonl(tmp_path / "in.jsonl", [{"n": n} for n in range(8)])),
                    "--output", str(tmp_path / "out.jsonl"))
    s = last_json(r.stdout)
    assert r.returncode == 0 and s["errors"] == 1
    exactly_once(s, 8, errors=1)
    out = {x["id"]: x for x in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert out[3]["error"]["type"] == "RuntimeError" and out[3]["error"]["message"] == "task 3 is broken"
    assert 'raise RuntimeError(f"task {n} is broken")' in out[3]["error"]["traceback"]
    assert "task 3 failed on worker" in r.stdout and "RuntimeError: task 3 is broken" in r.stdout
    assert [out[i]["value"] for i in range(8) if i != 3] == [0, 1, 2, 4, 5, 6, 7]


def test_a_task_past_its_time_limit_is_stopped_and_the_worker_carries_on(cluster, session_env, tmp_path):
    seconds = [0.1, 60, 0.1, 60, 0.1, 0.1]
    r = host_submit(cluster, session_env["MPC_AUTHKEY_HOST_FILE"], "--kind", "hang", "--task-timeout", "2",
                    "--input", str(jsonl(tmp_path / "in.jsonl", [{"seconds": s} for s in seconds])),
                    "--output", str(tmp_path / "out.jsonl"), timeout=60)
    s = last_json(r.stdout)
    exactly_once(s, 6, errors=2)
    out = {x["id"]: x for x in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert {i for i, x in out.items() if not x["ok"]} == {1, 3}
    assert all(out[i]["error"]["type"] == "TaskTimeout" for i in (1, 3))
    assert s["seconds"] < 30  # not the 60 s the hung tasks asked for
    after = cluster.submit("--tasks", "6", "--seconds", "0.1")  # the workers are still serving
    exactly_once(after, 6)


def test_cancel_mid_job_stops_it_and_its_follower(cluster):
    client = cluster.exec_job("submit", "--json", "--kind", "hang", "--tasks", "60", "--args", '{"seconds": 1}')
    job = client.expect(r"submitted job (\S+):", 60).group(1)
    cluster.wait_job(job, "progress", lambda j: j["done"] >= 3)
    r = cluster.mpc("cancel", job, "--json")
    s = last_json(r.stdout)
    assert s["state"] == "cancelled" and s["done"] < 60
    assert client.wait(15) == 3 and f"job {job} was cancelled" in client.text
    # the running tasks were told to stop at their workers' next heartbeat: nothing stays leased
    st = cluster.wait_status("no task leased", lambda st: st["queues"]["leased"] == 0, timeout=15)
    assert st["queues"]["pending"] == 0 and cluster.job(job)["state"] == "cancelled"
    after = cluster.submit("--tasks", "6", "--seconds", "0.1")
    exactly_once(after, 6)


def test_results_follows_a_job_after_its_submitting_client_was_killed(cluster):
    client, job = cluster.start_job("--kind", "hang", "--tasks", "12", "--args", '{"seconds": 0.5}')
    cluster.wait_job(job, "progress", lambda j: j["done"] >= 2)
    runs = [c.Name for c in cluster.get_containers(include_all=True) if "-run-" in c.Name]
    assert runs, "the submitting client's container"
    cluster.docker("kill", *runs)
    client.wait(30)
    r = cluster.mpc("results", job, "--json", timeout=120)
    s = last_json(r.stdout)
    exactly_once(s, 12)
    assert s["state"] == "done" and s["job"] == job


def test_a_task_that_kills_its_worker_every_time_is_failed_after_max_attempts(make_cluster, tasks_dir, session_env,
                                                                               tmp_path):
    c = make_cluster(workers=3, MPC_TASKS_DIR=str(tasks_dir), **FAST)
    c.wait_workers(3)
    r = host_submit(c, session_env["MPC_AUTHKEY_HOST_FILE"], "--kind", "crash", "--max-attempts", "3",
                    "--input", str(jsonl(tmp_path / "in.jsonl", [{"n": n} for n in range(20)])),
                    "--output", str(tmp_path / "out.jsonl"), timeout=240)
    s = last_json(r.stdout)
    exactly_once(s, 20, errors=1)
    assert s["poisoned"] == 1 and s["redeliveries"] >= 3
    out = {x["id"]: x for x in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert out[0]["error"]["type"] == "PoisonTask" and "died or was cut off 3 times" in out[0]["error"]["message"]
    assert [out[i]["value"] for i in range(1, 20)] == list(range(1, 20))
    assert "PoisonTask" in r.stdout
