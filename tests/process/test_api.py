"""Your own task kinds and the Python API, with a real master and real workers on 127.0.0.1 (no Docker)."""

import json
import re

import pytest

from mpcluster import Client, TaskFailed
from tests.support import last_json, mpc, run_mpc, wait_until

USER_KINDS = '''
import time

import mpcluster


@mpcluster.task("t-square")
def t_square(n):
    return n * n


@mpcluster.task("t-fail")
def t_fail(n):
    if n % 3 == 0:
        raise ValueError(f"no multiples of three: {n}")
    return n


@mpcluster.task("t-nap")
def t_nap(seconds):
    time.sleep(seconds)
    return seconds


@mpcluster.task("t-words")
def t_words(text):
    return {"words": len(text.split()), "first": text.split()[0]}
'''


@pytest.fixture
def user_workers(spawn, node_env, master, tmp_path):
    """Two workers that import a module of user task kinds from their MPC_TASKS_DIR."""
    (tmp_path / "kinds").mkdir()
    (tmp_path / "kinds" / "userkinds.py").write_text(USER_KINDS)
    env = {**node_env, "MPC_TASKS_DIR": str(tmp_path / "kinds")}
    ws = [spawn(mpc("worker"), env) for _ in range(2)]
    for w in ws:
        w.expect(r"offers .*t-square", 15)
    return ws


@pytest.fixture
def client(node_env, user_workers):
    with Client(f"127.0.0.1:{node_env['MPC_PORT']}", authkey_file=node_env["MPC_AUTHKEY_FILE"]) as c:
        yield c


def cli(node_env, *args, timeout=120):
    return run_mpc(*args, "--master", f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file",
                   node_env["MPC_AUTHKEY_FILE"], timeout=timeout)


def test_map_yields_every_value_in_input_order_with_a_bounded_window(client):
    assert list(client.map("t-square", ({"n": i} for i in range(700)), window=150)) == [i * i for i in range(700)]
    assert list(client.map("t-square", iter(()))) == []  # an empty job is done at once


def test_map_raises_task_failed_with_the_workers_traceback(client):
    got = []
    with pytest.raises(TaskFailed) as e:
        for value in client.map("t-fail", ({"n": n} for n in range(1, 10))):
            got.append(value)
    assert got == [1, 2]  # the values before the failed task, in order
    assert (e.value.task_id, e.value.type, e.value.message) == (2, "ValueError", "no multiples of three: 3")
    assert 'raise ValueError(f"no multiples of three: {n}")' in e.value.traceback
    assert e.value.worker.startswith(tuple(w["id"] for w in client.status()["workers"]))


def test_submit_follow_attach_status_and_cancel(client, node_env):
    job = client.submit("t-nap", [{"seconds": 0.05}] * 20)
    other = Client(f"127.0.0.1:{node_env['MPC_PORT']}", authkey_file=node_env["MPC_AUTHKEY_FILE"])
    records = list(other.attach(job.id).results())
    assert sorted(r["id"] for r in records) == list(range(20)) and all(r["value"] == 0.05 for r in records)
    s = job.status()
    assert (s["state"], s["done"], s["tasks"], sum(s["workers"].values())) == ("done", 20, 20, 20)
    long = client.submit("t-nap", [{"seconds": 0.5}] * 40)
    wait_until(lambda: long.status()["done"] >= 2, 20, "two results of the long job", every=0.1)
    c = long.cancel()
    assert c["state"] == "cancelled" and c["done"] < 40
    assert sorted(r["id"] for r in long.results()) == sorted(set(r["id"] for r in other.attach(long.id).results()))
    assert client.status()["queues"]["pending"] == 0
    other.close()


def test_jsonl_in_and_out_in_task_order(node_env, user_workers, tmp_path):
    lines = [f"word{i} " * (i + 1) for i in range(30)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines) + "\n")
    r = cli(node_env, "submit", "--kind", "t-words", "--input", str(tmp_path / "in.jsonl"), "--output",
            str(tmp_path / "out.jsonl"), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    s = last_json(r.stdout)
    assert (s["tasks"], s["results"], s["missing"], s["errors"], s["wrong"]) == (30, 30, [], 0, None)
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["id"] for x in out] == list(range(30))
    assert [x["value"] for x in out] == [{"words": i + 1, "first": f"word{i}"} for i in range(30)]
    assert {x["worker"] for x in out} <= set(s["workers"])


def test_identical_tasks_from_args_and_bad_input_refused_with_one_line(node_env, user_workers, tmp_path):
    r = cli(node_env, "submit", "--kind", "t-square", "--tasks", "5", "--args", '{"n": 7}', "--json")
    assert r.returncode == 0 and last_json(r.stdout)["results"] == 5
    assert sorted(re.findall(r"\] task (\d+): (\d+)  \(worker", r.stdout)) == [(str(i), "49") for i in range(5)]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n[1, 2]\n')
    r = cli(node_env, "submit", "--kind", "t-words", "--input", str(tmp_path / "bad.jsonl"))
    assert r.returncode == 2
    assert f"--input={str(tmp_path / 'bad.jsonl')!r} line 2: task 1 is not valid: expected a JSON object" in r.stderr
    r = cli(node_env, "submit", "--kind", "no-such-kind", "--tasks", "2")
    assert r.returncode == 2 and "no live worker offers task kind 'no-such-kind'" in r.stderr
    assert "t-square" in r.stderr  # where it looked: the kinds the live workers offer


def test_results_follows_a_job_submitted_earlier_and_cancel_stops_its_client(node_env, client, spawn):
    job = client.submit("t-nap", [{"seconds": 0.05}] * 10)
    r = cli(node_env, "results", job.id, "--json")
    s = last_json(r.stdout)
    assert r.returncode == 0 and (s["job"], s["results"], s["missing"], s["state"]) == (job.id, 10, [], "done")
    follower = spawn(mpc("submit", "--kind", "t-nap", "--tasks", "60", "--args", '{"seconds": 0.5}', "--master",
                         f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"]))
    job_id = follower.expect(r"submitted job (\S+):", 30).group(1)
    follower.expect(r"\[ ?\d+/60\] task", 30)
    r = cli(node_env, "cancel", job_id)
    assert r.returncode == 0 and f"job {job_id}: cancelled" in r.stdout
    assert follower.wait(10) == 3  # the follower notices within a few seconds and exits non-zero
    assert f"job {job_id} was cancelled" in follower.text
