"""Master and workers as real processes on 127.0.0.1 with a real key (no Docker)."""

import re

from tests.support import (
    BAD_INPUT_LINES,
    BAD_JOB_REFUSAL,
    LESSON,
    bad_inputs_through_the_link,
    clean,
    last_json,
    link_to,
    mpc,
    run_mpc,
    wait_until,
    write_key,
)


def submit(env, *args, timeout=120):
    return run_mpc("submit", "--master", f"127.0.0.1:{env['MPC_PORT']}", "--authkey-file", env["MPC_AUTHKEY_FILE"],
                   "--json", *args, timeout=timeout)


def test_an_mpcluster_job_completes_with_every_result(node_env, workers):
    workers(2)
    r = submit(node_env, "--tasks", "12", "--seconds", "0.05", "--seed", "7")
    assert r.returncode == 0, r.stdout + r.stderr
    s = last_json(r.stdout)
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (12, 12, [], 0, 0, [])
    assert sum(s["workers"].values()) == 12 and len(s["workers"]) == 2
    # the values are the squares of the numbers the client drew
    import random

    rng = random.Random(7)
    numbers = [rng.randint(0, 10000) for _ in range(12)]
    shown = dict(re.findall(r"task (\d+): (\d+) ", r.stdout))
    assert {int(k): int(v) for k, v in shown.items()} == {i: n * n for i, n in enumerate(numbers)}


def test_the_other_kinds_and_bad_tasks_give_error_results(node_env, workers):
    workers(1)
    r = submit(node_env, "--tasks", "3", "--kind", "primes")
    assert r.returncode == 0 and last_json(r.stdout)["wrong"] == []
    r = submit(node_env, "--tasks", "2", "--kind", "sleep", "--seconds", "0.1")
    assert r.returncode == 0 and last_json(r.stdout)["results"] == 2
    # bad input that skips the client's check: the master refuses a bad job; bad items on the lesson's queue
    # give error results, and the worker carries on
    refusal, lines = bad_inputs_through_the_link(link_to(int(node_env["MPC_PORT"]), node_env["MPC_AUTHKEY_FILE"]))
    assert refusal == BAD_JOB_REFUSAL
    assert lines == sorted(BAD_INPUT_LINES)
    r = submit(node_env, "--tasks", "3", "--seconds", "0")
    assert r.returncode == 0 and last_json(r.stdout)["errors"] == 0


def test_a_bad_task_is_refused_at_submit_time(node_env, master):
    r = submit(node_env, "--tasks", "2", "--seconds", "5000")
    assert r.returncode == 2
    assert "task 0 is not valid: seconds=5000.0 is out of range: expected 0 to 3600" in r.stderr


def test_the_lessons_worker_serves_a_classic_job_on_our_master(node_env, master, lesson_worker, spawn):
    client = spawn(mpc("submit", "--protocol", "classic", "--tasks", "4", "--json", "--timeout", "30",
                       "--master", f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"]))
    client.expect(r"Try get results", 15)
    lw = lesson_worker()
    assert client.wait(60) == 0, client.text
    s = last_json(client.text)
    assert (s["results"], s["missing"], s["wrong"], s["errors"]) == (4, [], 0, 0)
    puts = [int(n) for n in re.findall(r"Put task (\d+)", client.text)]
    assert sorted(int(n) for n in re.findall(r"Result: (\d+) \* ", client.text)) == sorted(puts)
    assert lw.wait(30) == 0
    assert sorted(int(n) for n in re.findall(r"run task (\d+) \*", lw.text)) == sorted(puts)


def test_our_worker_serves_a_classic_job_on_our_master_with_leases(node_env, workers, spawn):
    workers(2)
    r = run_mpc("submit", "--protocol", "classic", "--tasks", "4", "--json", "--timeout", "30",
                "--master", f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert last_json(r.stdout)["results"] == 4
    st = run_mpc("status", "--json", "--master", f"127.0.0.1:{node_env['MPC_PORT']}",
                 "--authkey-file", node_env["MPC_AUTHKEY_FILE"])
    assert last_json(st.stdout)["classic"]["done"] == 4


def test_our_worker_falls_back_against_the_lessons_own_master(spawn, node_env):
    import sys

    lm = spawn([sys.executable, str(LESSON / "task_master.py")],
               {"LESSON_PORT": node_env["MPC_PORT"], "LESSON_AUTHKEY_FILE": node_env["MPC_AUTHKEY_FILE"]})
    lm.expect(r"Try get results", 15)
    w = spawn(mpc("worker"), node_env)
    lm.expect(r"master exit\.", 60)
    results = re.findall(r"Result: (\d+) \* (\d+) = (\d+)", lm.text)
    assert len(results) == 10 and all(int(a) * int(b) == int(c) for a, b, c in results)
    puts = sorted(int(n) for n in re.findall(r"Put task (\d+)", lm.text))
    assert sorted(int(a) for a, _, _ in results) == puts
    w.expect(r"only the lesson's queues: serving it the classic way", 5)
    assert len(re.findall(r"run task \d+ \* \d+\.\.\.", clean(w.text))) == 10


def test_a_wrong_key_is_refused_with_one_clear_line(node_env, master, tmp_path, spawn):
    wrong = write_key(tmp_path / "wrong")
    w = spawn(mpc("worker"), {**node_env, "MPC_AUTHKEY_FILE": str(wrong)})
    assert w.wait(20) == 2
    assert "the authkey did not match the master's at 127.0.0.1:" in w.text and "Traceback" not in w.text
    r = submit({**node_env, "MPC_AUTHKEY_FILE": str(wrong)}, "--tasks", "1")
    assert r.returncode == 2 and "the authkey did not match" in r.stderr
    master.expect(r"refused connection from 127\.0\.0\.1:\d+: wrong authkey", 10)
    assert wrong.read_text().strip() not in master.text + w.text + r.stdout + r.stderr


def test_a_worker_says_when_it_cannot_reach_the_master(node_env, spawn):
    w = spawn(mpc("worker"), node_env)  # no master on this port
    w.expect(r"cannot reach master at 127\.0\.0\.1:\d+ \(connection refused\); retrying", 15)


def _wait_leased(env, n=1, timeout=20):
    seen = []

    def leased():
        seen[:] = [last_json(run_mpc("status", "--json", "--master", f"127.0.0.1:{env['MPC_PORT']}",
                                     "--authkey-file", env["MPC_AUTHKEY_FILE"]).stdout)]
        return seen[0] if seen[0]["queues"]["leased"] >= n else None

    return wait_until(leased, timeout, lambda: f"{n} tasks leased (status: {seen})", every=0.2)


def _sigterm_mid_task(node_env, spawn, grace: str):
    """A worker with MPC_STOP_GRACE=grace gets SIGTERM 1 s into a 4 s task (the lease here is 3 s)."""
    import signal

    w = spawn(mpc("worker"), {**node_env, "MPC_STOP_GRACE": grace})
    w.expect(r"connected to master", 15)
    client = spawn(mpc("submit", "--json", "--tasks", "1", "--seconds", "4", "--master",
                       f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"]))
    _wait_leased(node_env)
    w.p.send_signal(signal.SIGTERM)
    return w, client


def test_a_stopping_worker_finishes_its_task_and_keeps_its_lease_meanwhile(node_env, master, spawn):
    w, client = _sigterm_mid_task(node_env, spawn, "10")
    assert w.wait(20) == 0
    assert client.wait(30) == 0
    s = last_json(client.text)  # the 4 s task outlived the 3 s lease: heartbeats kept it
    assert (s["results"], s["redeliveries"], s["handed_back"]) == (1, 0, 0)
    assert "done 1 tasks, handed back 0; bye" in w.text


def test_a_stopping_worker_hands_back_a_task_that_outlasts_its_grace(node_env, master, spawn):
    w, client = _sigterm_mid_task(node_env, spawn, "0.5")
    assert w.wait(10) == 0
    spawn(mpc("worker"), node_env)  # someone to finish it
    assert client.wait(30) == 0
    s = last_json(client.text)
    assert (s["results"], s["redeliveries"], s["handed_back"]) == (1, 0, 1)


def test_a_job_with_no_workers_says_what_it_is_waiting_for(node_env, master, spawn):
    client = spawn(mpc("submit", "--json", "--tasks", "2", "--seconds", "0", "--master",
                       f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"]))
    client.expect(r"waiting: 0/2 results; 0 workers alive, 2 tasks pending, 0 leased", 20)
    spawn(mpc("worker"), node_env)
    assert client.wait(30) == 0 and last_json(client.text)["results"] == 2
