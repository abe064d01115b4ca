"""Settings: MPC_* variables, command-line flags and the authkey file, checked in this process. A bad one is refused
with one line naming the variable or flag (never echoing the key), and the command line turns that line into exit
status 2 (tests/process/test_config_errors.py shows it reaching a user of a real `python -m mpcluster`)."""

import os
import socket

import pytest

from mpcluster import cli
from mpcluster.config import (
    ClientSettings,
    ConfigError,
    MasterSettings,
    WorkerSettings,
    parse_address,
    read_authkey,
)
from tests.support import write_key


def refusal(call) -> str:
    with pytest.raises(ConfigError) as e:
        call()
    return str(e.value)


# ---- variables ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"MPC_PORT": "70000"}, "MPC_PORT='70000' is out of range: expected a whole number from 1 to 65535"),
        ({"MPC_PORT": "abc"}, "MPC_PORT='abc' is not valid: expected a whole number from 1 to 65535"),
        ({"MPC_DEMO_TASKS": "-1"}, "MPC_DEMO_TASKS='-1' is out of range: expected a whole number from 0 to 100000"),
        ({"MPC_LOG_LEVEL": "chatty"},
         "MPC_LOG_LEVEL='chatty' is not valid: expected one of DEBUG, INFO, WARNING, ERROR"),
        ({"MPC_LEASE_SECONDS": "0"},
         "MPC_LEASE_SECONDS='0' is out of range: expected a number of seconds from 1 to 3600"),
        ({"MPC_LEASE_SECONDS": "4", "MPC_HEARTBEAT_SECONDS": "3"},
         "MPC_HEARTBEAT_SECONDS=3 is too long for MPC_LEASE_SECONDS=4: expected a heartbeat at most half the lease, "
         "so a live worker keeps its leases"),
        ({"MPC_HANDSHAKE_TIMEOUT": "nan"},
         "MPC_HANDSHAKE_TIMEOUT='nan' is out of range: expected a number of seconds from 0.5 to 600"),
    ],
)
def test_bad_master_variables_are_refused(env, line):
    assert refusal(lambda: MasterSettings.from_env(env)) == line


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"MPC_MASTER_HOST": "bad host!"},
         "MPC_MASTER_HOST='bad host!' is not valid: expected a host name or IP address"),
        ({"MPC_BATCH_MAX": "0"}, "MPC_BATCH_MAX='0' is out of range: expected a whole number from 1 to 10000"),
        ({"MPC_STOP_GRACE": "-2"}, "MPC_STOP_GRACE='-2' is out of range: expected a number of seconds from 0 to 3600"),
        ({"MPC_WORKER_ID": "a b/c"},
         "MPC_WORKER_ID='a b/c' is not valid: expected 1-128 letters, digits, '.', '_' or '-'"),
        ({"MPC_WORKER_THREADS": "many"},
         "MPC_WORKER_THREADS='many' is not valid: expected a whole number from 1 to 256"),
        ({"MPC_WORKER_PROCESSES": "65"},
         "MPC_WORKER_PROCESSES='65' is out of range: expected a whole number from 0 to 64"),
        ({"MPC_TASK_MODULES": "a b"},
         "MPC_TASK_MODULES='a b' is not valid: expected module names separated by commas, e.g. wordcount,images"),
    ],
)
def test_bad_worker_variables_are_refused(env, line):
    assert refusal(lambda: WorkerSettings.from_env(env)) == line


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"MPC_MASTER_HOST": "bad host!"},
         "MPC_MASTER_HOST='bad host!' is not valid: expected a host name or IP address"),
        ({"MPC_PORT": "0"}, "MPC_PORT='0' is out of range: expected a whole number from 1 to 65535"),
        ({"MPC_LOG_LEVEL": "loud"}, "MPC_LOG_LEVEL='loud' is not valid: expected one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_bad_client_variables_are_refused(env, line):
    assert refusal(lambda: ClientSettings.from_env(env)) == line


def test_each_role_reads_only_its_own_variables():
    """A variable meant for another role (here: bad on purpose) never stops a role from starting."""
    masters_only = {"MPC_LEASE_SECONDS": "soon", "MPC_JOURNAL": "/proc/no/such/dir/j", "MPC_DEMO_TASKS": "-1",
                    "MPC_HANDSHAKE_TIMEOUT": "never", "MPC_WEB_PORT": "web"}
    workers_only = {"MPC_BATCH_MAX": "0", "MPC_STOP_GRACE": "-2", "MPC_MASTER_HOST": "bad host!",
                    "MPC_WORKER_ID": "a b/c", "MPC_WORKER_THREADS": "many", "MPC_TASK_MODULES": "a b"}
    assert WorkerSettings.from_env({**masters_only, "MPC_MASTER_HOST": "127.0.0.1"}).master_host == "127.0.0.1"
    assert ClientSettings.from_env({**masters_only, "MPC_BATCH_MAX": "0"}).master_host == "master"
    assert MasterSettings.from_env({**workers_only, "MPC_DEMO_TASKS": "0"}).demo_tasks == 0


def test_settings_are_read_with_surrounding_spaces_and_defaults():
    m = MasterSettings.from_env({"MPC_PORT": " 5001 ", "MPC_LOG_LEVEL": "debug", "MPC_LEASE_SECONDS": "20"})
    assert (m.port, m.log_level, m.lease_seconds, m.heartbeat_seconds, m.journal) == (5001, "DEBUG", 20.0, 2.0, "")
    w = WorkerSettings.from_env({"MPC_MASTER_HOST": "10.0.0.5", "MPC_WORKER_THREADS": "4", "MPC_PORT": ""})
    assert (w.master_host, w.port, w.threads, w.processes, w.batch_max) == ("10.0.0.5", 5000, 4, 0, 1000)


@pytest.mark.parametrize(
    ("raw", "address"),
    [("master:5000", ("master", 5000)), ("127.0.0.1:1", ("127.0.0.1", 1)), ("[::1]:65535", ("::1", 65535))],
)
def test_an_address_is_host_and_port(raw, address):
    assert parse_address("--master", raw) == address


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ("nohostport", "--master='nohostport' is not valid: expected HOST:PORT, e.g. master:5000 or 127.0.0.1:5000"),
        (":5000", "--master=':5000' is not valid: expected HOST:PORT, e.g. master:5000 or 127.0.0.1:5000"),
        ("127.0.0.1:0", "--master='0' is out of range: expected a whole number from 1 to 65535"),
        ("bad host!:5000", "--master='bad host!' is not valid: expected a host name or IP address"),
    ],
)
def test_a_bad_address_is_refused(raw, line):
    assert refusal(lambda: parse_address("--master", raw)) == line


# ---- the authkey file --------------------------------------------------------------------------------------------

def test_the_key_is_the_file_with_surrounding_whitespace_stripped(tmp_path):
    (tmp_path / "a").write_text("0123456789abcdef0123\n")
    (tmp_path / "b").write_text("  0123456789abcdef0123  \r\n")
    assert read_authkey(str(tmp_path / "a")) == read_authkey(str(tmp_path / "b")) == b"0123456789abcdef0123"


#: (the file's content, or None for no file; what is said after "<source>='<path>'")
BAD_KEYS = [
    (None, ": no authkey file there; create one (make key) or point {source} at it"),
    ("", ": the authkey file is empty; expected at least 16 bytes"),
    ("   \n", ": the authkey file is empty; expected at least 16 bytes"),
    ("short-key-123", ": the authkey is too short (13 bytes); expected at least 16 bytes"),
]


@pytest.mark.parametrize(("content", "said"), BAD_KEYS)
@pytest.mark.parametrize("source", ["MPC_AUTHKEY_FILE", "--authkey-file"])
def test_a_missing_empty_or_short_key_is_refused_naming_where_it_was_looked_for(tmp_path, content, said, source):
    path = tmp_path / "authkey"
    if content is not None:
        path.write_text(content)
    line = refusal(lambda: read_authkey(str(path), source))
    assert line == f"{source}={str(path)!r}" + said.format(source=source)
    if content and content.strip():
        assert content.strip() not in line  # the key is never echoed


def test_a_folder_is_not_a_key(tmp_path):
    assert refusal(lambda: read_authkey(str(tmp_path))) == \
        f"MPC_AUTHKEY_FILE={str(tmp_path)!r} is a directory: expected a file holding the authkey"


# ---- the command line, in this process ---------------------------------------------------------------------------

@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean MPC_* environment: a good key, and the master's address on a port another socket holds, so a role
    that should have refused but starts anyway fails at once instead of serving (the worker is stopped before it
    starts). Returns a function that sets more variables."""
    for name in [n for n in os.environ if n.startswith("MPC_")]:
        monkeypatch.delenv(name)
    busy = socket.socket()
    busy.bind(("", 0))
    busy.listen()
    key = write_key(tmp_path / "authkey")
    monkeypatch.setenv("MPC_AUTHKEY_FILE", str(key))
    monkeypatch.setenv("MPC_MASTER_HOST", "127.0.0.1")
    monkeypatch.setenv("MPC_PORT", str(busy.getsockname()[1]))

    def worker_started(*args, **kwargs):
        raise AssertionError("the worker started despite a bad setting")

    monkeypatch.setattr("mpcluster.worker.process.main", worker_started)

    def setenv(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    yield setenv
    busy.close()


def refused(capsys, *argv: str) -> str:
    """``python -m mpcluster ARGV`` in this process: exit status 2, exactly one line on stderr and nothing else;
    that line."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.endswith("\n") and err.count("\n") == 1 and out == "", out + err  # one line: no traceback
    return err[:-1]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["submit", "--tasks", "0"],
         "mpcluster submit: error: --tasks='0' is out of range: expected a whole number from 1 to 1000000"),
        (["submit", "--tasks", "5", "--kind", "a cube"],
         "mpcluster submit: error: --kind='a cube' is not valid: expected a task kind's name (1-128 letters, "
         "digits, '.', '_' or '-')"),
        (["submit", "--tasks", "5", "--seconds", "1e9"],
         "mpcluster submit: error: task 0 is not valid: seconds=1000000000.0 is out of range: expected 0 to 3600"),
        (["submit", "--tasks", "5", "--seconds", "soon"],
         "mpcluster submit: error: --seconds='soon' is not valid: expected a number of seconds >= 0"),
        (["submit", "--tasks", "5", "--protocol", "http"],
         "mpcluster submit: error: --protocol='http' is not valid: expected mpcluster or classic"),
        (["submit", "--tasks", "5", "--master", "nohostport"],
         "mpcluster submit: error: --master='nohostport' is not valid: expected HOST:PORT, e.g. master:5000 or "
         "127.0.0.1:5000"),
        (["status", "--master", "127.0.0.1:0"],
         "mpcluster status: error: --master='0' is out of range: expected a whole number from 1 to 65535"),
        (["status", "--wait-workers", "many"],
         "mpcluster status: error: --wait-workers='many' is not valid: expected a whole number from 0 to 100000"),
    ],
)
def test_bad_flags_are_refused(env, capsys, tmp_path, args, line):
    assert refused(capsys, *args, "--authkey-file", str(write_key(tmp_path / "k"))) == line


@pytest.mark.parametrize(
    ("args", "variables", "line"),
    [
        (["--threads", "0"], {}, "--threads='0' is out of range: expected a whole number from 1 to 256"),
        ([], {"MPC_WORKER_THREADS": "many"},
         "MPC_WORKER_THREADS='many' is not valid: expected a whole number from 1 to 256"),
        ([], {"MPC_WORKER_PROCESSES": "65"},
         "MPC_WORKER_PROCESSES='65' is out of range: expected a whole number from 0 to 64"),
        (["--processes", "two"], {}, "--processes='two' is not valid: expected a whole number from 0 to 64"),
        (["--tasks-dir", "/no/such/folder"], {},
         "--tasks-dir='/no/such/folder' is not a folder: expected the folder that holds your task modules"),
        ([], {"MPC_TASKS_DIR": "/no/such/folder"},
         "MPC_TASKS_DIR='/no/such/folder' is not a folder: expected the folder that holds your task modules"),
        ([], {"MPC_TASK_MODULES": "a b"},
         "MPC_TASK_MODULES='a b' is not valid: expected module names separated by commas, e.g. wordcount,images"),
        (["--task-modules", "x;y"], {},
         "--task-modules='x;y' is not valid: expected module names separated by commas, e.g. wordcount,images"),
        ([], {"MPC_STOP_GRACE": "-2"},
         "MPC_STOP_GRACE='-2' is out of range: expected a number of seconds from 0 to 3600"),
    ],
)
def test_bad_worker_settings_are_refused(env, capsys, args, variables, line):
    env(**variables)
    assert refused(capsys, "worker", *args) == f"mpcluster worker: error: {line}"


def test_a_bad_master_variable_is_refused_by_the_master(env, capsys):
    env(MPC_LEASE_SECONDS="0")
    assert refused(capsys, "master") == \
        "mpcluster master: error: MPC_LEASE_SECONDS='0' is out of range: expected a number of seconds from 1 to 3600"


def test_a_journal_that_cannot_be_opened_is_refused_by_the_master(env, capsys):
    env(MPC_JOURNAL="/proc/no/such/dir/j.sqlite3")
    line = refused(capsys, "master")
    assert line.startswith("mpcluster master: error: MPC_JOURNAL='/proc/no/such/dir/j.sqlite3' cannot be opened (")
    assert line.endswith("): expected a writable file path (in the containers, the journal volume)")


@pytest.mark.parametrize(("content", "said"), BAD_KEYS)
@pytest.mark.parametrize("role", ["master", "worker", "submit"])
def test_missing_empty_or_short_keys_are_refused_on_every_node(env, capsys, tmp_path, content, said, role):
    path = tmp_path / "other-key"
    if content is not None:
        path.write_text(content)
    env(MPC_AUTHKEY_FILE=str(path))
    args = [role] + (["--tasks", "1"] if role == "submit" else [])
    line = refused(capsys, *args)
    assert line == f"mpcluster {role}: error: MPC_AUTHKEY_FILE={str(path)!r}" + said.format(source="MPC_AUTHKEY_FILE")
    if content and content.strip():
        assert content.strip() not in line  # the key is never echoed


def test_argparse_errors_are_one_line_and_exit_status_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["results"])
    _, err = capsys.readouterr()
    assert e.value.code == 2
    assert err == "mpcluster results: error: the following arguments are required: JOB (see --help)\n"
