"""Fixtures for real clusters (the Cluster helper itself is tests/integration/cluster.py).

Every session gets its own Compose project names, its own key, image tag and ephemeral host ports, so
`make test` never collides with a cluster the user has running; everything is torn down (`down -v`).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.integration.cluster import SESSION, Cluster, docker_problem
from tests.support import LESSON, ROOT, write_key

_counter = iter(range(1, 10_000))


@pytest.fixture(scope="session")
def docker_ready():
    problem = docker_problem()
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {problem}: the Docker tests must run in CI")
        pytest.skip(f"{problem}: Docker tests skipped (they are required under CI=true)")


@pytest.fixture(scope="session")
def session_env(docker_ready, tmp_path_factory):
    """Variables every test cluster shares: its own key, image tag, and an ephemeral published port."""
    key = write_key(tmp_path_factory.mktemp("key") / "authkey")
    key.chmod(0o644)
    env = {"MPC_AUTHKEY_HOST_FILE": str(key), "MPC_IMAGE_TAG": f"test-{SESSION}", "MPC_HOST_PORT": "0",
           "MPC_DEMO_TASKS": "0", "LESSON_DIR": str(LESSON)}
    env["MPC_WEB_PORT"] = "0"  # the status page on any free host port too, never the user's 8080
    build = subprocess.run(["docker", "compose", "-p", f"mpct{SESSION}build", "build", "-q"], cwd=ROOT,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    yield env
    subprocess.run(["docker", "image", "rm", "-f", f"mpcluster-master:test-{SESSION}", f"mpcluster-worker:test-{SESSION}"],
                   capture_output=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def make_cluster(session_env, request):
    """Start clusters for one test; on failure their logs go to test-logs/; always `down -v`."""
    started: list[Cluster] = []

    def make(workers: int = 3, files: tuple[str, ...] = ("compose.yaml",), wait: bool = True, **env: str) -> Cluster:
        c = Cluster(context=str(ROOT), compose_file_name=list(files), workers=workers, wait_up=wait,
                    env={**session_env, **{k: str(v) for k, v in env.items()}},
                    project=f"mpct{SESSION}{next(_counter)}")
        started.append(c)
        c.start()
        return c

    yield make
    failed = any(getattr(request.node, f"rep_{w}", None) and getattr(request.node, f"rep_{w}").failed
                 for w in ("setup", "call"))
    for c in started:
        if failed:
            print(f"\ncluster logs saved to {c.save_logs(request.node.name + '-' + c.project)}")
        c.compose("down", "-v", "--remove-orphans", "-t", "3", check=False)
