"""Workers from anywhere, mixed Python versions, and `doctor` in a real cluster.

- A worker process on this host, and a `docker run` of the worker image, both pointed at a Compose cluster's
  published port, take tasks of one job next to the container workers.
- A master on Python 3.11 with workers on 3.13, and the reverse, complete a job with every result (the
  authkey digest changed in 3.12: the handshake negotiates it both ways).
- doctor from the host (through the published port: every check passes, the port is on loopback only) and
  from inside the cluster's containers.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.integration.cluster import SESSION
from tests.support import ROOT, Proc, last_json, mpc, run_mpc

pytestmark = pytest.mark.docker

PY313 = f"test-{SESSION}-py313"


def test_a_host_process_and_a_docker_run_worker_join_through_the_published_port(make_cluster, session_env):
    c = make_cluster(workers=1)
    port, key = c.host_port(), session_env["MPC_AUTHKEY_HOST_FILE"]
    host = Proc(mpc("worker", "--master", f"127.0.0.1:{port}", "--authkey-file", key))
    outsider = f"{c.project}-outsider"
    try:
        host_id = host.expect(r"worker (\S+): connected to master at 127\.0\.0\.1:\d+ from 127\.0\.0\.1", 30).group(1)
        # The worker image, as on any machine with Docker: the key mounted where the image looks for it.
        c.docker("run", "-d", "--name", outsider, "--network", "host", "-e", f"MPC_WORKER_ID={outsider}",
                 "-v", f"{key}:/run/secrets/authkey:ro", f"mpcluster-worker:{session_env['MPC_IMAGE_TAG']}",
                 "worker", "--master", f"127.0.0.1:{port}")
        st = c.wait_workers(3)
        assert {host_id, outsider} <= {w["id"] for w in st["workers"] if w["state"] == "alive"}
        s = c.submit("--tasks", "18", "--seconds", "0.5", "--seed", "18")
        assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (18, 18, [], 0, 0, [])
        inside = c.inspect(c.containers()[0].Name)["Config"]["Hostname"]
        assert set(s["workers"]) == {inside, host_id, outsider} and min(s["workers"].values()) >= 1, s["workers"]
        assert s["ips"][host_id] == s["ips"][outsider] == "127.0.0.1"  # both came in through the published port
        assert s["ips"][inside] == c.ip_of(c.containers()[0].Name)
    finally:
        host.stop()
        c.docker("rm", "-f", outsider, check=False)
    assert host.p.returncode == 0 and re.search(r"worker \S+: done \d+ tasks, handed back 0; bye", host.text), host.text


@pytest.fixture(scope="module")
def py313_images(session_env):
    """Master and worker images on Debian trixie's Python 3.13, next to the session's bookworm (3.11) ones."""
    base = subprocess.run([str(ROOT / "scripts" / "ensure-base"), "trixie"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert base.returncode == 0, base.stdout + base.stderr
    env = {**session_env, "BASE_IMAGE": "mpcluster-base:trixie", "MPC_IMAGE_TAG": PY313}
    build = subprocess.run(["docker", "compose", "-p", f"mpct{SESSION}build313", "build", "-q"], cwd=ROOT,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout + build.stderr
    yield PY313
    subprocess.run(["docker", "image", "rm", "-f", f"mpcluster-master:{PY313}", f"mpcluster-worker:{PY313}"],
                   capture_output=True)


@pytest.mark.parametrize("master_on", ["3.11", "3.13"])
def test_a_master_and_workers_on_different_pythons_complete_a_job(make_cluster, session_env, py313_images, master_on):
    bookworm = session_env["MPC_IMAGE_TAG"]
    tags = (bookworm, py313_images) if master_on == "3.11" else (py313_images, bookworm)
    workers_on = "3.13" if master_on == "3.11" else "3.11"
    c = make_cluster(workers=2, files=("compose.yaml", "tests/integration/compose_fixtures/mixed/compose.yaml"),
                     MPC_MASTER_TAG=tags[0], MPC_WORKER_TAG=tags[1])
    st = c.wait_workers(2)
    assert st["master"]["python"].startswith(master_on + ".")
    assert [w["python"][:4] for w in st["workers"]] == [workers_on] * 2
    s = c.submit("--tasks", "12", "--seconds", "0.2", "--seed", "12")
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["errors"], s["wrong"]) == (12, 12, [], 0, 0, [])
    assert len(s["workers"]) == 2
    # The lesson's protocol crosses versions too: its queues carry plain ints and strings.
    classic = c.submit("--protocol", "classic", "--tasks", "4", "--seed", "4")
    assert (classic["results"], classic["missing"], classic["errors"], classic["wrong"]) == (4, [], 0, 0)
    # doctor in a worker sees the other version's challenge, and says mixed versions are fine.
    r = c.compose("exec", "-T", "worker", "python3", "-m", "mpcluster", "doctor", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    digest = "SHA256: Python >= 3.12" if master_on == "3.13" else "MD5: Python <= 3.11"
    assert f"ok    handshake  the peer sent a manager challenge (HMAC-{digest} there)" in r.stdout
    assert "(mixed Python versions work)" in r.stdout


def test_doctor_passes_from_the_host_and_inside_the_cluster(make_cluster, session_env):
    c = make_cluster(workers=1)
    port = c.host_port()
    r = run_mpc("doctor", "--master", f"127.0.0.1:{port}", "--authkey-file", session_env["MPC_AUTHKEY_HOST_FILE"])
    assert r.returncode == 0, r.stdout + r.stderr
    # Published on 127.0.0.1 by compose.yaml: docker-proxy listens on loopback only.
    assert f"ok    exposure   port {port} listens on 127.0.0.1 only (loopback)" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith(f"verdict: OK: this machine can use the master at 127.0.0.1:{port}")
    master_ip = c.ip_of(c.containers("master")[0].Name)
    r = c.compose("exec", "-T", "worker", "python3", "-m", "mpcluster", "doctor", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok    name       master resolves to {master_ip}" in r.stdout
    assert f"skip  exposure   the master is on another host ({master_ip}): run doctor there" in r.stdout
    r = c.compose("exec", "-T", "master", "python3", "-m", "mpcluster", "doctor", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skip  exposure   inside the master's container" in r.stdout
    s = last_json(c.mpc("submit", "--json", "--tasks", "2", "--seconds", "0").stdout)
    assert s["results"] == 2  # doctor's connections left the master serving
