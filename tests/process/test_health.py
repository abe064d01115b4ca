"""The master's check of itself (what the container's health probe reads): a real connection to its own port, the
key both ways, one request served, the dispatcher's lock free; and the stamp it leaves when that passes."""

from __future__ import annotations

import threading
import time

from mpcluster.config import read_authkey
from mpcluster.master.dispatcher import Dispatcher
from mpcluster.master.health import check_health
from mpcluster.master.journal import Journal
from tests.support import free_port, mpc, wait_until, write_key


class StuckJournal(Journal):
    """A journal whose job writes hang (a disk that stopped answering) until ``release`` is set: the dispatcher
    holds its lock meanwhile, as it does around every journal write."""

    def __init__(self):
        super().__init__()
        self.writing, self.release = threading.Event(), threading.Event()

    def add_job(self, *args, **kwargs):
        self.writing.set()
        self.release.wait(30)
        return super().add_job(*args, **kwargs)


def test_a_running_master_passes_its_own_check(master, node_env):
    key = read_authkey(node_env["MPC_AUTHKEY_FILE"])
    assert check_health(int(node_env["MPC_PORT"]), key, Dispatcher()) is None


def test_each_broken_step_fails_the_check_with_its_reason(master, node_env, tmp_path):
    port = int(node_env["MPC_PORT"])
    other = read_authkey(str(write_key(tmp_path / "other")))
    assert check_health(port, other, Dispatcher()) == "the master refused its own key"
    assert check_health(free_port(), other, Dispatcher(), timeout=1).startswith(
        "its own port did not serve a request (ConnectionRefusedError")
    journal = StuckJournal()
    stuck = Dispatcher(journal=journal)
    submit = threading.Thread(target=stuck.submit, args=({"id": "j", "kind": "square", "tasks": [{"n": 1}]},),
                              daemon=True)
    submit.start()
    assert journal.writing.wait(5)  # the submit holds the dispatcher's lock, stuck in its journal write
    key = read_authkey(node_env["MPC_AUTHKEY_FILE"])
    try:
        assert check_health(port, key, stuck, timeout=0.5) == "the dispatcher's lock stayed taken for 0.5 s"
    finally:
        journal.release.set()
        submit.join(5)
    assert check_health(port, key, stuck, timeout=0.5) is None  # the write done, the lock is free again


def test_the_master_stamps_its_health_file_while_it_passes(spawn, node_env, tmp_path):
    stamp = tmp_path / "health"
    p = spawn(mpc("master"), {**node_env, "MPC_HEALTH_FILE": str(stamp)})
    p.expect(r"master listening on", 15)
    wait_until(stamp.exists, 15, "the master stamping its health file", every=0.1)
    first = stamp.stat().st_mtime
    wait_until(lambda: stamp.stat().st_mtime > first, 15, "the stamp renewed", every=0.1)
    assert abs(time.time() - stamp.stat().st_mtime) < 5
    assert "health:" not in p.text
