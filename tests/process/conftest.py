from __future__ import annotations

import sys

import pytest

from tests.support import LESSON, Proc, free_port, mpc, write_key


@pytest.fixture
def key_file(tmp_path):
    return write_key(tmp_path / "authkey")


@pytest.fixture
def node_env(key_file):
    """Environment for master and workers on 127.0.0.1 with short leases, so failures show quickly."""
    port = free_port()
    return {"MPC_PORT": str(port), "MPC_MASTER_HOST": "127.0.0.1", "MPC_AUTHKEY_FILE": str(key_file),
            "MPC_DEMO_TASKS": "0", "MPC_LEASE_SECONDS": "3", "MPC_HEARTBEAT_SECONDS": "0.5",
            "MPC_HANDSHAKE_TIMEOUT": "2"}


@pytest.fixture
def spawn():
    procs: list[Proc] = []

    def start(args, env=None) -> Proc:
        p = Proc(args, env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def master(spawn, node_env) -> Proc:
    p = spawn(mpc("master"), node_env)
    p.expect(r"master listening on", 15)
    return p


@pytest.fixture
def workers(spawn, node_env, master):
    def start(n: int) -> list[Proc]:
        ps = [spawn(mpc("worker"), node_env) for _ in range(n)]
        for p in ps:
            p.expect(r"connected to master", 15)
        return ps

    return start


@pytest.fixture
def lesson_worker(spawn, node_env):
    def start() -> Proc:
        return spawn([sys.executable, str(LESSON / "task_worker.py")],
                     {"LESSON_MASTER": "127.0.0.1", "LESSON_PORT": node_env["MPC_PORT"],
                      "LESSON_AUTHKEY_FILE": node_env["MPC_AUTHKEY_FILE"]})

    return start
