"""Bad settings are refused at start: one clear line naming the variable, exit status 2 (real processes)."""

import pytest

from tests.support import run_mpc, write_key


@pytest.mark.parametrize(
    ("role", "env", "line"),
    [
        ("master", {"MPC_PORT": "70000"}, "MPC_PORT='70000' is out of range: expected a whole number from 1 to 65535"),
        ("master", {"MPC_PORT": "abc"}, "MPC_PORT='abc' is not valid: expected a whole number from 1 to 65535"),
        ("master", {"MPC_DEMO_TASKS": "-1"}, "MPC_DEMO_TASKS='-1' is out of range"),
        ("master", {"MPC_LOG_LEVEL": "chatty"}, "MPC_LOG_LEVEL='chatty' is not valid: expected one of DEBUG, INFO, WARNING, ERROR"),
        ("master", {"MPC_LEASE_SECONDS": "0"}, "MPC_LEASE_SECONDS='0' is out of range: expected a number of seconds from 1 to 3600"),
        ("master", {"MPC_LEASE_SECONDS": "4", "MPC_HEARTBEAT_SECONDS": "3"}, "MPC_HEARTBEAT_SECONDS=3 is too long for MPC_LEASE_SECONDS=4"),
        ("master", {"MPC_HANDSHAKE_TIMEOUT": "nan"}, "MPC_HANDSHAKE_TIMEOUT='nan' is out of range"),
        ("worker", {"MPC_MASTER_HOST": "bad host!"}, "MPC_MASTER_HOST='bad host!' is not valid: expected a host name or IP address"),
        ("worker", {"MPC_BATCH_MAX": "0"}, "MPC_BATCH_MAX='0' is out of range"),
        ("worker", {"MPC_STOP_GRACE": "-2"}, "MPC_STOP_GRACE='-2' is out of range"),
        ("worker", {"MPC_WORKER_ID": "a b/c"}, "MPC_WORKER_ID='a b/c' is not valid: expected 1-128 letters"),
        ("master", {"MPC_JOURNAL": "/proc/no/such/dir/j.sqlite3"}, "MPC_JOURNAL='/proc/no/such/dir/j.sqlite3' cannot be opened"),
    ],
)
def test_bad_variables_are_refused(tmp_path, role, env, line):
    key = write_key(tmp_path / "k")
    r = run_mpc(role, env={"MPC_AUTHKEY_FILE": str(key), **env}, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert line in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["submit", "--tasks", "0"], "--tasks='0' is out of range: expected a whole number from 1 to 1000000"),
        (["submit", "--tasks", "5", "--kind", "a cube"], "--kind='a cube' is not valid: expected a task kind's name"),
        (["submit", "--tasks", "5", "--seconds", "1e9"], "task 0 is not valid: seconds=1000000000.0 is out of range"),
        (["submit", "--tasks", "5", "--seconds", "soon"], "--seconds='soon' is not valid"),
        (["submit", "--tasks", "5", "--protocol", "http"], "--protocol='http' is not valid"),
        (["submit", "--tasks", "5", "--master", "nohostport"], "--master='nohostport' is not valid: expected HOST:PORT"),
        (["status", "--master", "127.0.0.1:0"], "--master='0' is out of range"),
        (["status", "--wait-workers", "many"], "--wait-workers='many' is not valid"),
    ],
)
def test_bad_flags_are_refused(tmp_path, args, line):
    key = write_key(tmp_path / "k")
    r = run_mpc(*args, "--authkey-file", str(key), timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert line in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (None, "no authkey file there"),
        ("", "the authkey file is empty; expected at least 16 bytes"),
        ("   \n", "the authkey file is empty"),
        ("short-key-123", "the authkey is too short (13 bytes); expected at least 16 bytes"),
    ],
)
@pytest.mark.parametrize("role", ["master", "worker", "submit"])
def test_missing_empty_or_short_keys_are_refused_on_every_node(tmp_path, content, line, role):
    path = tmp_path / "authkey"
    if content is not None:
        path.write_text(content)
    args = [role] + (["--tasks", "1"] if role == "submit" else [])
    r = run_mpc(*args, env={"MPC_AUTHKEY_FILE": str(path), "MPC_MASTER_HOST": "127.0.0.1"}, timeout=30)
    assert r.returncode == 2
    assert line in r.stderr and f"MPC_AUTHKEY_FILE='{path}'" in r.stderr
    if content and content.strip():
        assert content.strip() not in r.stderr + r.stdout  # the key is never echoed


def test_each_role_reads_only_its_own_variables(tmp_path, spawn):
    """A variable meant for another role (here: bad on purpose) never stops a node from starting."""
    from tests.support import free_port, mpc

    key, port = write_key(tmp_path / "k"), str(free_port())
    common = {"MPC_AUTHKEY_FILE": str(key), "MPC_PORT": port, "MPC_MASTER_HOST": "127.0.0.1"}
    w = spawn(mpc("worker"), {**common, "MPC_LEASE_SECONDS": "soon", "MPC_JOURNAL": "/proc/no/such/dir/j",
                              "MPC_DEMO_TASKS": "-1"})
    w.expect(r"cannot reach master at 127\.0\.0\.1:\d+ \(connection refused\); retrying", 15)
    m = spawn(mpc("master"), {**common, "MPC_DEMO_TASKS": "0", "MPC_BATCH_MAX": "0", "MPC_STOP_GRACE": "-2",
                              "MPC_MASTER_HOST": "bad host!", "MPC_WORKER_ID": "a b/c"})
    m.expect(r"master listening on", 15)
    w.expect(r"connected to master", 30)


def test_help_lists_the_public_commands_only():
    r = run_mpc("--help", timeout=30)
    assert r.returncode == 0 and "{master,worker,submit,results,cancel,status,doctor}" in r.stdout
    assert "SUPPRESS" not in r.stdout and "health" not in r.stdout
