"""A bad setting reaches the user of a real `python -m mpcluster` as one line and exit status 2, and each role
starts whatever another role's variables say. (Every refusal's line is checked in tests/unit/test_config.py.)"""

from tests.support import free_port, mpc, run_mpc, write_key


def test_a_bad_setting_is_one_line_on_stderr_and_exit_status_2(tmp_path):
    key = write_key(tmp_path / "k")
    r = run_mpc("master", env={"MPC_AUTHKEY_FILE": str(key), "MPC_JOURNAL": "/proc/no/such/dir/j.sqlite3"}, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("mpcluster master: error: MPC_JOURNAL='/proc/no/such/dir/j.sqlite3' cannot be opened")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr + r.stdout


def test_each_role_reads_only_its_own_variables(tmp_path, spawn):
    """A variable meant for another role (here: bad on purpose) never stops a node from starting."""
    key, port = write_key(tmp_path / "k"), str(free_port())
    common = {"MPC_AUTHKEY_FILE": str(key), "MPC_PORT": port, "MPC_MASTER_HOST": "127.0.0.1"}
    w = spawn(mpc("worker"), {**common, "MPC_LEASE_SECONDS": "soon", "MPC_JOURNAL": "/proc/no/such/dir/j",
                              "MPC_DEMO_TASKS": "-1"})
    w.expect(r"cannot reach master at 127\.0\.0\.1:\d+ \(connection refused\); retrying", 15)
    m = spawn(mpc("master"), {**common, "MPC_DEMO_TASKS": "0", "MPC_BATCH_MAX": "0", "MPC_STOP_GRACE": "-2",
                              "MPC_MASTER_HOST": "bad host!", "MPC_WORKER_ID": "a b/c"})
    m.expect(r"master listening on", 15)
    w.expect(r"connected to master", 30)
