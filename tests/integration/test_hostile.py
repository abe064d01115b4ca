"""Hostile input against real containers: wrong keys, garbage on the wire, floods, bad config and bad tasks.

All traffic goes to the test's own containers, through the master's port published on 127.0.0.1.
Every loop here is bounded in count and time.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import BAD_INPUT_LINES, BAD_JOB_REFUSAL, bad_inputs_through_the_link, link_to, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

HANDSHAKE = {"MPC_HANDSHAKE_TIMEOUT": "3"}


def master_proc(c) -> dict:
    """Threads and resident memory of the master process (PID 1 of its container)."""
    text = c.compose("exec", "-T", "master", "cat", "/proc/1/status").stdout
    return {"threads": int(re.search(r"^Threads:\s+(\d+)", text, re.M).group(1)),
            "rss_kb": int(re.search(r"^VmRSS:\s+(\d+)", text, re.M).group(1))}


def wait_threads_at_most(c, limit: int, timeout: float) -> dict:
    seen: list[dict] = []

    def at_most() -> dict | None:
        seen[:] = [master_proc(c)]
        return seen[0] if seen[0]["threads"] <= limit else None

    return wait_until(at_most, timeout, lambda: f"master threads back to {limit} (now {seen[0]['threads']})",
                      every=0.5)


def steady(c, timeout: float = 30) -> dict:
    """The master's thread count once it stops changing (workers' heartbeat connections all open)."""
    seen: list[dict] = []

    def settled() -> dict | None:
        seen.append(master_proc(c))
        return seen[-1] if len(seen) >= 4 and len({x["threads"] for x in seen[-4:]}) == 1 else None

    return wait_until(settled, timeout, lambda: f"master thread count settled ({[x['threads'] for x in seen]})",
                      every=0.5)


def test_a_wrong_key_worker_exits_2_clearly_without_a_restart_storm(make_cluster, tmp_path, session_env):
    wrong = tmp_path / "wrongkey"
    wrong.write_text("not-the-cluster-key-" + os.urandom(16).hex() + "\n")
    wrong.chmod(0o644)
    c = make_cluster(workers=2, wait=False, MPC_WRONG_KEY_FILE=str(wrong),
                     files=("compose.yaml", "tests/integration/compose_fixtures/intruder/compose.yaml"))
    c.wait_workers(2, 90)
    job = c.exec_job("submit", "--json", "--quiet", "--tasks", "12", "--seconds", "0.5")
    [intruder] = c.containers("intruder", include_all=True)
    seen: list[dict] = []

    def down_for_good() -> dict | None:  # on-failure:3 — three restarts, then it stays down
        seen[:] = [c.inspect(intruder.Name)]
        return seen[0] if seen[0]["State"]["Status"] == "exited" and seen[0]["RestartCount"] >= 3 else None

    st = wait_until(down_for_good, 90, lambda: f"the intruder down after its restarts ({seen[0]['State']}, "
                                               f"restarts={seen[0]['RestartCount']})", every=0.5)
    assert st["State"]["ExitCode"] == 2 and st["RestartCount"] == 3
    log = c.logs("intruder")
    lines = [ln for ln in log.splitlines() if ln.strip()]
    refusals = [ln for ln in lines if "the authkey did not match the master's at master:5000" in ln]
    assert len(refusals) == 4 and "Traceback" not in log  # one clear line per start, nothing else alarming
    s = c.finish(job, 180)
    assert s["results"] == 12 and s["missing"] == []  # the master's job carried on
    mlog = c.logs("master")
    assert re.search(r"refused connection from [\d.]+:\d+: wrong authkey", mlog)
    key = wrong.read_text().strip()
    assert key not in log + mlog


def _payloads(rng: random.Random) -> list[tuple[str, bytes, bool]]:
    """(category, bytes, read the server's challenge first). 530 cases."""
    hello = bytes.fromhex("16030100a5010000a10303") + bytes(rng.getrandbits(8) for _ in range(32)) + \
        bytes.fromhex("00002cc02bc02fc02cc030cca9cca8c009c013c00ac014009c009d002f0035c012000a0100004c")
    out = []
    for _ in range(150):
        out.append(("random bytes", rng.randbytes(rng.randint(1, 2048)), rng.random() < 0.5))
    for _ in range(100):  # a well-framed answer to the challenge, but not the right digest
        body = rng.randbytes(rng.choice([16, 20, 32, 40, 64, 255]))
        out.append(("wrong digest", struct.pack("!i", len(body)) + body, True))
    for _ in range(60):
        header = rng.choice([struct.pack("!i", -1) + struct.pack("!Q", 2**40), struct.pack("!i", 2**31 - 1),
                             struct.pack("!i", 257), struct.pack("!i", 0), struct.pack("!i", -7)])
        out.append(("bad length header", header + rng.randbytes(rng.randint(0, 64)), rng.random() < 0.5))
    for _ in range(60):
        out.append(("truncated handshake", rng.choice([b"\x00", b"\x00\x00", struct.pack("!i", 32) + rng.randbytes(10)]), True))
    for _ in range(40):
        out.append(("http request", rng.choice([b"GET / HTTP/1.1\r\nHost: master\r\n\r\n",
                                                b"POST /api HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"]), False))
    for _ in range(40):
        out.append(("tls clienthello", hello, False))
    for _ in range(40):
        out.append(("connect and close", b"", rng.random() < 0.5))
    for _ in range(40):  # a pickle-looking frame before authenticating: never unpickled
        body = b"\x80\x04\x95" + rng.randbytes(40)
        out.append(("pickle before auth", struct.pack("!i", len(body)) + body, True))
    rng.shuffle(out)
    return out


def _send(port: int, payload: bytes, read_first: bool) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if read_first:
                s.recv(4096)  # the master's challenge
            if payload:
                s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):  # until the master closes on us
                pass
        return "closed"
    except OSError as e:
        return type(e).__name__


def test_fuzzing_the_port_while_a_job_runs(make_cluster):
    c = make_cluster(workers=3, **HANDSHAKE)
    c.wait_workers(3)
    before = steady(c)
    job = c.exec_job("submit", "--json", "--quiet", "--tasks", "60", "--seconds", "0.5")
    port = c.host_port()
    cases = _payloads(random.Random(4))
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda p: _send(port, p[1], p[2]), cases))
    fuzz_seconds = time.monotonic() - started
    s = c.finish(job, 180)
    assert s["results"] == 60 and s["missing"] == [] and s["wrong"] == [] and s["duplicates"] == 0
    after = wait_threads_at_most(c, before["threads"], 30)  # every fuzz thread gone again
    counts: dict[str, int] = {}
    for cat, *_ in cases:
        counts[cat] = counts.get(cat, 0) + 1
    print(f"\nFUZZ: {len(cases)} payloads in {fuzz_seconds:.1f} s {counts}; outcomes "
          f"{ {o: outcomes.count(o) for o in set(outcomes)} }; master threads {before['threads']} -> {after['threads']}, "
          f"RSS {before['rss_kb']} kB -> {after['rss_kb']} kB")
    assert len(cases) >= 500 and fuzz_seconds < 60
    assert c.inspect(c.containers("master")[0].Name)["RestartCount"] == 0
    # Rate-limited: about one line per peer per 10 s, and the rest summed up when the window ends.
    summed = c.wait_log("master", r"refused (\d+) more connections from [\d.]+ in the last 10 s", 40)
    log = c.logs("master")
    refused = re.findall(r"refused connection from [\d.]+:\d+: (.*)", log)
    assert refused and len(refused) < 20 and int(summed.group(1)) > 100
    assert "Traceback" not in log
    # still healthy and serving after all that
    assert c.submit("--tasks", "6", "--seconds", "0")["results"] == 6


def test_hundreds_of_idle_connections_do_not_stop_the_job_and_are_dropped(make_cluster):
    c = make_cluster(workers=2, **HANDSHAKE)
    c.wait_workers(2)
    before = steady(c)
    port = c.host_port()
    idle = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        idle.append(s)
    try:
        s = c.submit("--tasks", "10", "--seconds", "0.2")
        assert s["results"] == 10 and s["missing"] == []
        # each idle peer got the challenge and then, after the handshake timeout, the connection was closed
        open_, closed, broken = set(idle), [], []
        for sock in idle:
            sock.setblocking(False)

        def all_ended() -> bool:
            for sock in list(open_):
                try:
                    while sock.recv(4096):  # the challenge, then the end of the stream
                        pass
                    closed.append(sock)
                except BlockingIOError:
                    continue  # still open
                except OSError:
                    broken.append(sock)  # reset: not the clean close expected
                open_.discard(sock)
            return not open_

        wait_until(all_ended, 3 + 30, lambda: f"the master closing every idle connection ({len(open_)} still open)",
                   every=0.2)
        assert len(closed) == 300, f"{len(broken)} connections were reset, not closed"
    finally:
        for sock in idle:
            sock.close()
    after = wait_threads_at_most(c, before["threads"], 30)
    assert after["threads"] <= before["threads"]
    assert re.search(r"no handshake within 3 s", c.logs("master"))


def test_fifty_workers_connecting_at_once_all_join(make_cluster):
    c = make_cluster(workers=50)
    st = c.wait_workers(50, 240)
    assert st["alive"] == 50 and len({w["ip"] for w in st["workers"]}) == 50
    s = c.submit("--tasks", "100", "--seconds", "0.2")
    assert s["results"] == 100 and s["missing"] == [] and len(s["workers"]) >= 25


def test_no_key_material_in_inspect_history_status_or_images(make_cluster, session_env):
    c = make_cluster(workers=2)
    c.wait_workers(2)
    c.submit("--tasks", "2", "--seconds", "0")
    key = open(session_env["MPC_AUTHKEY_HOST_FILE"]).read().strip()
    keys = [key]
    user_key = os.path.join(os.path.dirname(__file__), "..", "..", ".secrets", "authkey")
    if os.path.exists(user_key):
        keys.append(open(user_key).read().strip())
    names = [x.Name for x in c.get_containers()]
    texts = {f"docker inspect {n}": c.docker("inspect", n).stdout for n in names}
    tag = session_env["MPC_IMAGE_TAG"]
    for image in (f"mpcluster-master:{tag}", f"mpcluster-worker:{tag}"):
        texts[f"docker history {image}"] = c.docker("history", "--no-trunc", image).stdout
        texts[f"docker image inspect {image}"] = c.docker("image", "inspect", image).stdout
        saved = subprocess.run(["docker", "save", image], capture_output=True, timeout=300).stdout
        assert saved and not any(k.encode() in saved for k in keys), f"key material inside {image}"
    texts["status"] = c.mpc("status", "--json").stdout
    texts["logs"] = c.logs()
    for what, text in texts.items():
        assert text and not any(k in text for k in keys), f"key material in {what}"


def test_bad_config_in_a_container_exits_2_with_one_line(make_cluster):
    c = make_cluster(workers=1)
    r = c.compose("run", "--rm", "--no-deps", "-T", "-e", "MPC_STOP_GRACE=soon", "worker", "worker", check=False)
    assert r.returncode == 2
    assert "MPC_STOP_GRACE='soon' is not valid: expected a number of seconds from 0 to 3600" in r.stderr + r.stdout


def test_bad_tasks_give_error_results_and_the_workers_carry_on(make_cluster, session_env):
    c = make_cluster(workers=2)
    c.wait_workers(2)
    r = c.mpc("submit", "--tasks", "3", "--seconds", "1e9", check=False)
    assert r.returncode == 2 and "task 0 is not valid: seconds=1000000000.0 is out of range: expected 0 to 3600" in r.stderr
    refusal, lines = bad_inputs_through_the_link(link_to(c.host_port(), session_env["MPC_AUTHKEY_HOST_FILE"]))
    assert refusal == BAD_JOB_REFUSAL and lines == sorted(BAD_INPUT_LINES)
    s = c.submit("--tasks", "6", "--seconds", "0.1")
    assert s["results"] == 6 and s["errors"] == 0 and len(s["workers"]) == 2
    assert all(c.inspect(w.Name)["RestartCount"] == 0 for w in c.containers())
