"""The master's check of itself (what the container's health probe reads): a real connection to its own port, the
key both ways, one request served, the dispatcher's lock free; and the stamp it leaves when that passes."""

from __future__ import annotations

import threading
import time

from mpcluster.config import read_authkey
from mpcluster.master.dispatcher import Dispatcher
from mpcluster.master.health import check_health
from tests.support import free_port, mpc, write_key


def test_a_running_master_passes_its_own_check(master, node_env):
    key = read_authkey(node_env["MPC_AUTHKEY_FILE"])
    assert check_health(int(node_env["MPC_PORT"]), key, Dispatcher()) is None


def test_each_broken_step_fails_the_check_with_its_reason(master, node_env, tmp_path):
    port = int(node_env["MPC_PORT"])
    other = read_authkey(str(write_key(tmp_path / "other")))
    assert check_health(port, other, Dispatcher()) == "the master refused its own key"
    assert check_health(free_port(), other, Dispatcher(), timeout=1).startswith(
        "its own port did not serve a request (ConnectionRefusedError")
    stuck = Dispatcher()
    taken = threading.Event()
    threading.Thread(target=lambda: (stuck._cond.acquire(), taken.set()), daemon=True).start()
    assert taken.wait(5)
    key = read_authkey(node_env["MPC_AUTHKEY_FILE"])
    assert check_health(port, key, stuck, timeout=0.5) == "the dispatcher's lock stayed taken for 0.5 s"


def test_the_master_stamps_its_health_file_while_it_passes(spawn, node_env, tmp_path):
    stamp = tmp_path / "health"
    p = spawn(mpc("master"), {**node_env, "MPC_HEALTH_FILE": str(stamp)})
    p.expect(r"master listening on", 15)
    deadline = time.monotonic() + 15
    while not stamp.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stamp.exists(), "the master never stamped its health file"
    first = stamp.stat().st_mtime
    deadline = time.monotonic() + 15
    while stamp.stat().st_mtime == first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stamp.stat().st_mtime > first, "the stamp was not renewed"
    assert abs(time.time() - stamp.stat().st_mtime) < 5
    assert "health:" not in p.text
