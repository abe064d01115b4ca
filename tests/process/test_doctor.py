"""`mpcluster doctor` against real processes on 127.0.0.1, one per way a connection goes wrong: a name that does
not resolve, nothing listening, packets dropped, an HTTP server, a listener that says nothing, one that hangs up at once, a wrong
or missing key, a plain lesson master, and a real master listening on every address (exposed)."""

from __future__ import annotations

import re
import signal
import socket
import sys

import pytest

import mpcluster
from tests.support import LESSON, free_port, run_mpc, write_key

CHECKS = ("name", "connect", "handshake", "key", "service", "versions", "clock", "exposure")
LINE = re.compile(r"^(ok|FAIL|skip) +(\w+) +(.*)$")


def doctor(*args: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run doctor; returns its exit status, {check: (status, rest of line)} and the verdict line."""
    r = run_mpc("doctor", *args, timeout=60)
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert lines[0].startswith("mpcluster doctor: the master at "), text
    checks = {m.group(2): (m.group(1), m.group(3)) for m in map(LINE.match, lines[1:-1]) if m}
    assert tuple(checks) == CHECKS and len(lines) == len(CHECKS) + 2, text  # one line per check, in order
    assert lines[-1].startswith("verdict: "), text
    return r.returncode, checks, lines[-1]


def failed_at(checks: dict, name: str) -> str:
    """The failing check is `name`, everything before it passed, everything after it was skipped."""
    i = CHECKS.index(name)
    assert [checks[c][0] for c in CHECKS[:i]] == ["ok"] * i, checks
    assert checks[name][0] == "FAIL", checks
    assert all(checks[c][0] == "skip" for c in CHECKS[i + 1:-1]), checks
    assert "; fix: " in checks[name][1], checks[name]
    return checks[name][1]


def listener(spawn, port: int, then: str):
    """A plain TCP listener on 127.0.0.1 that, for each connection, does `then` (say nothing, or hang up)."""
    code = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); held = []\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        f"    {'held.append(c)' if then == 'silent' else 'c.close()'}\n"
    )
    p = spawn([sys.executable, "-c", code])
    p.expect("listening", 15)
    return p


def test_a_healthy_master_passes_every_check_but_exposure_on_all_addresses(master, node_env):
    port = node_env["MPC_PORT"]
    code, checks, verdict = doctor("--master", f"127.0.0.1:{port}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"])
    assert code == 1
    detail = failed_at(checks, "exposure")  # the master binds every address; only this check objects
    assert f"port {port} listens on 0.0.0.0 (every address of this host)" in detail
    assert checks["handshake"][1].startswith("the peer sent a manager challenge (HMAC-")
    assert checks["service"][1].startswith("the master offers the dispatcher")
    py = ".".join(map(str, sys.version_info[:3]))
    v = mpcluster.__version__
    assert checks["versions"][1] == f"master: mpcluster {v}, Python {py}; here: mpcluster {v}, Python {py}"
    assert re.match(r"the master's clock is \d+\.\d{3} s (ahead of|behind) this one", checks["clock"][1])
    assert verdict.startswith("verdict: FAIL at exposure: ")
    code, checks, verdict = doctor("--master", f"localhost:{port}", "--authkey-file", node_env["MPC_AUTHKEY_FILE"],
                                   "--allow-exposed")
    assert code == 0 and all(s == "ok" for s, _ in checks.values()), checks
    assert checks["name"][1].startswith("localhost resolves to ")
    assert verdict == f"verdict: OK: this machine can use the master at localhost:{port} (an mpcluster master, same key)"


def test_a_name_that_does_not_resolve(key_file):
    code, checks, verdict = doctor("--master", "no-such-host.invalid:5000", "--authkey-file", str(key_file))
    assert code == 1 and checks["exposure"][0] == "skip"
    assert failed_at(checks, "name").startswith("'no-such-host.invalid' does not resolve")
    assert verdict.startswith("verdict: FAIL at name: ")


def test_nothing_listening(key_file):
    port = free_port()
    code, checks, _ = doctor("--master", f"127.0.0.1:{port}", "--authkey-file", str(key_file))
    assert code == 1 and checks["exposure"][0] == "skip"
    assert failed_at(checks, "connect").startswith(f"nothing listens on 127.0.0.1:{port} (connection refused)")


def test_a_port_whose_packets_are_dropped(spawn, key_file):
    # A firewall that drops packets, on loopback: a listener that never accepts, its queue full, so the kernel
    # drops further connection attempts without an answer (no other address and no firewall rule involved).
    port = free_port()
    spawn([sys.executable, "-c", "import socket, time\n"
           f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(0); print('listening', flush=True)\n"
           "time.sleep(600)\n"]).expect("listening", 15)
    held = []
    try:
        for _ in range(8):  # fill the queue until an attempt goes unanswered
            c = socket.socket()
            held.append(c)
            c.settimeout(0.5)
            try:
                c.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.fail("the listener's queue never filled")
        code, checks, _ = doctor("--master", f"127.0.0.1:{port}", "--authkey-file", str(key_file), "--timeout", "1")
    finally:
        for c in held:
            c.close()
    assert code == 1
    assert failed_at(checks, "connect").startswith(f"no answer from 127.0.0.1:{port} within 1 s (packets dropped)")


def test_an_http_server(spawn, key_file):
    port = free_port()
    spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]).expect("Serving HTTP", 15)
    code, checks, _ = doctor("--master", f"127.0.0.1:{port}", "--authkey-file", str(key_file))
    assert code == 1
    assert failed_at(checks, "handshake").startswith("the peer speaks HTTP (HTTP/1.0 200 OK, SimpleHTTP/")
    assert checks["exposure"] == ("ok", f"port {port} listens on 127.0.0.1 only (loopback): other machines cannot connect")


def test_a_listener_that_says_nothing(spawn, key_file):
    port = free_port()
    listener(spawn, port, "silent")
    code, checks, _ = doctor("--master", f"127.0.0.1:{port}", "--authkey-file", str(key_file), "--timeout", "2")
    assert code == 1
    assert failed_at(checks, "handshake").startswith("the peer accepted the connection but said nothing in 2 s")


def test_a_listener_that_hangs_up_at_once(spawn, key_file):
    port = free_port()
    listener(spawn, port, "close")
    code, checks, _ = doctor("--master", f"127.0.0.1:{port}", "--authkey-file", str(key_file))
    assert code == 1
    assert failed_at(checks, "handshake").startswith("the peer closed the connection without a word")


def test_a_wrong_key(master, node_env, tmp_path):
    other = write_key(tmp_path / "other")
    code, checks, _ = doctor("--master", f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", str(other))
    assert code == 1
    assert failed_at(checks, "key").startswith(f"the master refused this machine's key ({other})")
    master.expect(r"refused connection from 127\.0\.0\.1:\d+: wrong authkey", 15)  # and the master says so too


def test_a_missing_key_file(master, node_env, tmp_path):
    code, checks, _ = doctor("--master", f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file", str(tmp_path / "nope"))
    assert code == 1
    assert failed_at(checks, "key").startswith(f"this machine's key: --authkey-file='{tmp_path / 'nope'}': no authkey file")


def test_a_plain_lesson_master(spawn, node_env):
    lesson = spawn([sys.executable, str(LESSON / "task_master.py")],
                   {"LESSON_PORT": node_env["MPC_PORT"], "LESSON_AUTHKEY_FILE": node_env["MPC_AUTHKEY_FILE"]})
    lesson.expect("Try get results", 15)  # it waits 10 s for a first result: doctor is done well before
    code, checks, verdict = doctor("--master", f"127.0.0.1:{node_env['MPC_PORT']}", "--authkey-file",
                                   node_env["MPC_AUTHKEY_FILE"], "--allow-exposed")
    assert code == 0, checks
    assert checks["service"][1].startswith("a plain lesson master: only get_task_queue and get_result_queue")
    assert checks["versions"] == ("skip", "a lesson master tells no versions")
    assert verdict.endswith("(a plain lesson master, same key)")
    # SIGINT, not SIGTERM: the script unwinds and BaseManager's finalizer stops the server process it forked
    # (killed by a signal, it would leave that process listening, orphaned).
    lesson.p.send_signal(signal.SIGINT)
    lesson.wait(15)
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", int(node_env["MPC_PORT"])))


@pytest.mark.parametrize("bad", ["no-port", "127.0.0.1:99999"])
def test_a_malformed_address_is_refused_with_one_line(bad, key_file):
    r = run_mpc("doctor", "--master", bad, "--authkey-file", str(key_file))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("mpcluster doctor: error: --master=") and r.stderr.count("\n") == 1
