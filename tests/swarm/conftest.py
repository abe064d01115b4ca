"""Fixtures for the swarm tests (the node plumbing itself is tests/swarm/nodes.py).

Same rule as the integration tests: without Docker, or when a swarm cannot be created here, the tests skip with
the reason — except under CI=true, where that is a failure. The images are built once per session by
`make stack-images` (the runbook's own step) under this session's tag, with this session's key.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.cluster import SESSION, docker_problem
from tests.support import write_key
from tests.swarm.nodes import Engine


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cannot_run(reason: str):
    if in_ci():
        pytest.fail(f"CI=true but {reason}: the swarm tests must run in CI")
    pytest.skip(f"{reason}: swarm tests skipped (they are required under CI=true)")


@pytest.fixture(scope="session")
def swarm_env(tmp_path_factory):
    problem = docker_problem()
    if problem:
        cannot_run(problem)
    key = write_key(tmp_path_factory.mktemp("swarmkey") / "authkey")
    key.chmod(0o644)
    env = {"MPC_AUTHKEY_HOST_FILE": str(key), "MPC_IMAGE_TAG": f"test-{SESSION}", "MPC_DEMO_TASKS": "0"}
    Engine().make("stack-images", env=env)
    yield env
    Engine().docker("image", "rm", "-f", f"mpcluster-master:test-{SESSION}", f"mpcluster-worker:test-{SESSION}",
                    check=False)
