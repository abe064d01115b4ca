"""Workers with several slots, as real processes on 127.0.0.1: threads, process slots, the graceful stop with
several slots, user task modules, and their settings."""

import json
import os
import signal
import textwrap

import pytest

from tests.support import last_json, link_to, mpc, run_mpc, wait_until


def submit(env, *args, timeout=120):
    return run_mpc("submit", "--master", f"127.0.0.1:{env['MPC_PORT']}", "--authkey-file", env["MPC_AUTHKEY_FILE"],
                   "--json", *args, timeout=timeout)


def status(env) -> dict:
    return last_json(run_mpc("status", "--json", "--master", f"127.0.0.1:{env['MPC_PORT']}",
                             "--authkey-file", env["MPC_AUTHKEY_FILE"]).stdout)


def start_worker(spawn, env, *flags, extra_env=None):
    """A worker process and its id (from its first line: what it offers)."""
    w = spawn(mpc("worker", *flags), {**env, **(extra_env or {})})
    wid = w.expect(r"worker (\S+): offers ", 15).group(1)
    w.expect(r"connected to master", 15)
    return w, wid


def results_of(env, job: str) -> list[dict]:
    """Every result record of a finished job, as the master keeps them."""
    link = link_to(int(env["MPC_PORT"]), env["MPC_AUTHKEY_FILE"])
    try:
        _, chunk, summary = link.call("results", job, 0, 0)
    finally:
        link.close()
    assert summary["complete"], summary
    return [json.loads(r) if isinstance(r, str) else r for r in chunk]


def wait_leased(env, n, timeout=20):
    """Until the master has leased n tasks (asked over one link, so that each look takes milliseconds)."""
    link = link_to(int(env["MPC_PORT"]), env["MPC_AUTHKEY_FILE"])
    seen = []

    def leased() -> bool:
        seen[:] = [link.call("status")["queues"]]
        return seen[0]["leased"] >= n

    try:
        wait_until(leased, timeout, lambda: f"{n} tasks leased (queues: {seen})", every=0.02)
    finally:
        link.close()


def write_tasks(folder, **modules):
    folder.mkdir(exist_ok=True)
    for name, text in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    return folder


def test_four_thread_slots_run_eight_half_second_sleeps_in_about_a_second(node_env, master, spawn, tmp_path):
    w, wid = start_worker(spawn, node_env, "--threads", "4", "--tasks-dir", str(write_tasks(tmp_path / "none")))
    w.expect(rf"worker {wid}: offers primes, sleep, square \(threads 4, processes 0\)", 1)
    r = submit(node_env, "--tasks", "8", "--kind", "sleep", "--seconds", "0.5")
    assert r.returncode == 0, r.stdout + r.stderr
    s = last_json(r.stdout)
    assert (s["results"], s["missing"], s["duplicates"], s["errors"], s["workers"]) == (8, [], 0, 0, {wid: 8})
    # the job's wall time, from its arrival at the master to its last result (the client's own start-up, seconds
    # on a busy machine, is not the worker's): one slot would need 4 s
    assert s["seconds"] < 2.5, s
    results = results_of(node_env, s["job"])
    assert sorted(x["id"] for x in results) == list(range(8))  # every result exactly once
    assert all(x["ok"] and x["worker"] == wid and x["value"] == 0.5 and 0.5 <= x["elapsed"] < 1.0 for x in results)
    [row] = [x for x in status(node_env)["workers"] if x["id"] == wid]
    assert (row["threads"], row["processes"], row["kinds"], row["done"]) == (4, 0, ["primes", "sleep", "square"], 8)


def test_process_slots_run_cpu_kinds_in_distinct_child_processes(node_env, master, spawn, tmp_path):
    folder = write_tasks(tmp_path / "tasks", pidkind="""
        import os
        import time

        from mpcluster import task


        @task("pid_cpu", cpu=True)
        def pid_cpu(seconds: float = 0.3) -> int:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
            return os.getpid()
    """)
    w, wid = start_worker(spawn, node_env, "--threads", "1", "--processes", "2", "--tasks-dir", str(folder))
    w.expect(rf"worker {wid}: offers pid_cpu, primes, sleep, square \(threads 1, processes 2\)", 1)
    r = submit(node_env, "--kind", "pid_cpu", "--tasks", "6", "--args", "{}")
    s = last_json(r.stdout)
    assert (r.returncode, s["results"], s["errors"], s["workers"]) == (0, 6, 0, {wid: 6}), r.stdout + r.stderr
    results = results_of(node_env, s["job"])
    pids = {x["value"] for x in results}
    assert sorted(x["id"] for x in results) == list(range(6)) and all(x["ok"] for x in results)
    assert len(pids) == 2 and w.p.pid not in pids  # two children, neither the worker itself
    r = submit(node_env, "--tasks", "4", "--kind", "primes")  # the built-in CPU kind goes there too
    s = last_json(r.stdout)
    assert (r.returncode, s["results"], s["wrong"], s["workers"]) == (0, 4, [], {wid: 4})


def test_sigterm_mid_job_with_four_threads_finishes_the_tasks_in_hand(node_env, master, spawn):
    a, aid = start_worker(spawn, node_env, "--threads", "4", extra_env={"MPC_STOP_GRACE": "5"})
    client = spawn(mpc("submit", "--json", "--tasks", "8", "--kind", "sleep", "--seconds", "2", "--master",
                       f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"]))
    wait_leased(node_env, 4)
    a.p.send_signal(signal.SIGTERM)
    assert a.wait(10) == 0
    a.expect(rf"worker {aid}: done 4 tasks, handed back 0; bye", 1)
    b, bid = start_worker(spawn, node_env, "--threads", "4")
    assert client.wait(30) == 0, client.text
    s = last_json(client.text)
    assert (s["results"], s["missing"], s["duplicates"], s["redeliveries"], s["handed_back"]) == (8, [], 0, 0, 0)
    assert s["workers"] == {aid: 4, bid: 4}
    assert "Traceback" not in a.text


def test_sigterm_mid_job_with_four_threads_hands_back_what_outlasts_the_grace(node_env, master, spawn):
    a, aid = start_worker(spawn, node_env, "--threads", "4", extra_env={"MPC_STOP_GRACE": "0.3"})
    client = spawn(mpc("submit", "--json", "--tasks", "8", "--kind", "sleep", "--seconds", "2", "--master",
                       f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"]))
    wait_leased(node_env, 4)
    a.p.send_signal(signal.SIGTERM)
    assert a.wait(3) == 0  # its 0.3 s grace ends the tasks in hand
    a.expect(rf"worker {aid}: done 0 tasks, handed back 0; bye", 1)  # all four released before the goodbye
    b, bid = start_worker(spawn, node_env, "--threads", "4")
    assert client.wait(30) == 0, client.text
    s = last_json(client.text)
    assert (s["results"], s["missing"], s["duplicates"], s["redeliveries"], s["handed_back"]) == (8, [], 0, 0, 4)
    assert s["workers"] == {bid: 8}


def test_a_task_module_that_fails_to_import_is_one_line_and_the_worker_serves_the_rest(node_env, master, spawn,
                                                                                       tmp_path):
    folder = write_tasks(tmp_path / "tasks", good="""
        from mpcluster import task


        @task("t_good")
        def good(x: int) -> int:
            return 2 * x
    """, missing="import no_such_module_here\n", broken="x = 1\ndef broken(:\n")
    w, wid = start_worker(spawn, node_env, "--tasks-dir", str(folder))
    w.expect(rf"worker {wid}: offers primes, sleep, square, t_good \(threads 1, processes 0\)", 1)
    warnings = [line for line in w.lines if " WARNING " in line]
    assert len(warnings) == 2, warnings
    assert warnings[0].endswith(f"worker {wid}: cannot import task module 'broken' from {folder}: SyntaxError: "
                                "invalid syntax (broken.py, line 2)")
    assert warnings[1].endswith(f"worker {wid}: cannot import task module 'missing' from {folder}: "
                                "ModuleNotFoundError: No module named 'no_such_module_here'")
    r = submit(node_env, "--tasks", "3", "--seconds", "0")
    assert r.returncode == 0 and last_json(r.stdout)["workers"] == {wid: 3}
    [row] = [x for x in status(node_env)["workers"] if x["id"] == wid]
    assert row["kinds"] == ["primes", "sleep", "square", "t_good"]
    assert "Traceback" not in w.text
    # only the modules named are imported: no warning at all
    w2 = spawn(mpc("worker", "--tasks-dir", str(folder), "--task-modules", "good"), node_env)
    w2.expect(r"offers primes, sleep, square, t_good \(threads 1, processes 0\)", 15)
    w2.expect(r"connected to master", 15)
    assert not [line for line in w2.lines if " WARNING " in line]


LIMITS = """
    import os
    import time

    from mpcluster import task


    @task("stuck")
    def stuck(seconds: float) -> float:
        time.sleep(seconds)  # not tasks.pause: deaf to every request to stop, as a task stuck in a C call is
        return seconds


    @task("spin_cpu", cpu=True)
    def spin_cpu(seconds: float, pidfile: str = "") -> int:
        if pidfile:
            with open(pidfile, "a") as f:
                f.write(f"{os.getpid()}\\n")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return os.getpid()
"""


def test_a_task_past_its_time_limit_is_an_error_result_and_the_worker_carries_on(node_env, master, spawn, tmp_path):
    folder = write_tasks(tmp_path / "tasks", limits=LIMITS)
    w, wid = start_worker(spawn, node_env, "--threads", "2", "--processes", "1", "--tasks-dir", str(folder))
    # within 8 s, not the 20 s the tasks would take
    r = submit(node_env, "--kind", "stuck", "--tasks", "2", "--args", '{"seconds": 20}', "--task-timeout", "0.5",
               timeout=8)
    s = last_json(r.stdout)
    assert (s["results"], s["errors"], s["workers"]) == (2, 2, {wid: 2}), r.stdout + r.stderr
    for x in results_of(node_env, s["job"]):
        assert x["error"]["type"] == "TaskTimeout" and x["error"]["message"] == \
            "ran past its 0.5 s time limit; abandoned (a thread cannot be killed)"
        assert 0.5 <= x["elapsed"] < 3
    pidfile = tmp_path / "pids"
    r = submit(node_env, "--kind", "spin_cpu", "--tasks", "2", "--task-timeout", "0.5",
               "--args", json.dumps({"seconds": 20, "pidfile": str(pidfile)}))
    s = last_json(r.stdout)
    assert (s["results"], s["errors"]) == (2, 2), r.stdout + r.stderr
    assert {x["error"]["message"] for x in results_of(node_env, s["job"])} == {"ran past its 0.5 s time limit; killed"}
    killed = [int(p) for p in pidfile.read_text().split()]
    assert len(set(killed)) == 2, w.text  # the second task ran in a fresh child: the first was killed
    r = submit(node_env, "--kind", "spin_cpu", "--tasks", "1", "--args", '{"seconds": 0.1}')
    [x] = results_of(node_env, last_json(r.stdout)["job"])
    assert x["ok"] and x["value"] not in killed and x["worker"] == wid  # and the slot carries on in a third
    assert "Traceback" not in w.text


def test_cancel_stops_the_tasks_a_worker_holds_at_its_next_heartbeat(node_env, master, spawn, tmp_path):
    folder = write_tasks(tmp_path / "tasks", limits=LIMITS)
    w, wid = start_worker(spawn, node_env, "--threads", "2", "--processes", "1", "--tasks-dir", str(folder))
    pidfile = tmp_path / "pids"
    where = ["--master", f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"]]
    sleepy = spawn(mpc("submit", "--json", "--kind", "sleep", "--tasks", "4", "--seconds", "30", *where))
    spinny = spawn(mpc("submit", "--json", "--kind", "spin_cpu", "--tasks", "2", "--args",
                       json.dumps({"seconds": 30, "pidfile": str(pidfile)}), *where))
    jobs = [c.expect(r"submitted job (\S+):", 15).group(1) for c in (sleepy, spinny)]
    wait_leased(node_env, 3)  # two thread slots and the process slot are busy
    for job in jobs:
        r = run_mpc("cancel", job, *where, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    w.expect(rf"worker {wid}: the master cancelled \d of the tasks held here; stopping them", 10)
    assert sleepy.wait(10) == 3 and spinny.wait(10) == 3  # their clients hear the jobs were cancelled
    wait_until(lambda: not status(node_env)["queues"]["leased"], 10, "nothing leased any more", every=0.1)
    [child] = [int(p) for p in pidfile.read_text().split()]
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the process slot's child was killed
    # and the worker carries on: its thread slots are free again long before the 30 s sleeps would end
    r = submit(node_env, "--tasks", "3", "--seconds", "0", timeout=15)
    assert r.returncode == 0 and last_json(r.stdout)["workers"] == {wid: 3}
    assert "Traceback" not in w.text
