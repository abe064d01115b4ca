"""The status page of a real master process on 127.0.0.1 (no Docker): what it serves, what it never shows, and
MPC_WEB_PORT's three cases (a port, 0 = none, a bad value)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path

import pytest

from tests.support import free_port, last_json, mpc, run_mpc, write_key


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, bytes, bytes]:
    """(status, raw header block, body)"""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        head = "\r\n".join(f"{k}: {v}" for k, v in r.getheaders()).encode()
        return r.status, head, r.read()
    finally:
        c.close()


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, from /proc: its socket inodes matched against the LISTEN rows."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_master_serves_the_page_and_never_the_key(spawn, node_env, key_file):
    web = free_port()
    env = {**node_env, "MPC_WEB_PORT": str(web)}
    master = spawn(mpc("master"), env)
    master.expect(rf"status page listening on 0\.0\.0\.0:{web} ", 15)
    spawn(mpc("worker"), env).expect(r"connected to master", 15)
    r = run_mpc("submit", "--tasks", "4", "--seconds", "0", "--json", env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    job = last_json(r.stdout)["job"]

    status, head, body = fetch(web, "/api/status")
    assert status == 200
    page = json.loads(body)
    cli = last_json(run_mpc("status", "--json", env=env, timeout=60).stdout)
    assert page.keys() == cli.keys()  # the same JSON as `status --json`
    assert [w["id"] for w in page["workers"]] == [w["id"] for w in cli["workers"]] and len(page["workers"]) == 1
    assert [(j["job"], j["done"], j["state"]) for j in page["jobs"]] == [(job, 4, "done")]
    assert page["workers"][0]["done"] == 4

    key = key_file.read_bytes().strip()
    answers = [(status, head, body)] + [fetch(web, p, m) for p in ("/", "/app.js", "/style.css", "/api/status", "/x")
                                        for m in ("GET", "HEAD", "POST")]
    assert sorted({a[0] for a in answers}) == [200, 404, 405]
    for _, head, body in answers:
        assert key not in head + body and key.decode() not in (head + body).decode()


def test_mpc_web_port_0_means_nothing_listens_but_the_managers_port(spawn, node_env):
    master = spawn(mpc("master"), {**node_env, "MPC_WEB_PORT": "0"})
    master.expect(r"status page off \(MPC_WEB_PORT=0\)", 15)
    master.expect(r"master listening on", 15)
    assert listening_ports(master.p.pid) == {int(node_env["MPC_PORT"])}


def test_a_busy_web_port_costs_the_page_not_the_master(spawn, node_env):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        master = spawn(mpc("master"), {**node_env, "MPC_WEB_PORT": str(port)})
        master.expect(rf"status page not served: cannot listen on port {port} \(Address already in use\)", 15)
        r = run_mpc("status", "--json", env=node_env, timeout=60)
        assert r.returncode == 0 and last_json(r.stdout)["alive"] == 0  # the master serves on


@pytest.mark.parametrize(("value", "line"), [
    ("abc", "MPC_WEB_PORT='abc' is not valid: expected a whole number from 0 to 65535"),
    ("70000", "MPC_WEB_PORT='70000' is out of range: expected a whole number from 0 to 65535"),
    ("-1", "MPC_WEB_PORT='-1' is out of range: expected a whole number from 0 to 65535"),
    ("80.5", "MPC_WEB_PORT='80.5' is not valid: expected a whole number from 0 to 65535"),
])
def test_a_bad_mpc_web_port_is_refused_with_one_line(tmp_path, value, line):
    r = run_mpc("master", env={"MPC_AUTHKEY_FILE": str(write_key(tmp_path / "k")), "MPC_WEB_PORT": value}, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == f"mpcluster master: error: {line}"
