"""No task lost, none counted twice: fault injection against real containers.

Leases are short here (4 s, heartbeat 1 s) so each case finishes quickly; the defaults are 10 s and 2 s.
Every case asserts that each task's result was recorded exactly once with the right value, and that the job's
summary reports the redeliveries it saw.
"""

from __future__ import annotations

import random
import subprocess
import time

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.faults]

FAST = {"MPC_LEASE_SECONDS": "4", "MPC_HEARTBEAT_SECONDS": "1"}


def exactly_once(s: dict, tasks: int) -> None:
    assert (s["tasks"], s["results"], s["missing"], s["duplicates"], s["wrong"], s["errors"]) == (tasks, tasks, [], 0, [], 0)
    assert sum(s["workers"].values()) == tasks


def test_sigkill_one_of_three_workers_mid_task(make_cluster):
    c = make_cluster(workers=3, **FAST)
    c.wait_workers(3)
    client, job = c.start_job("--tasks", "24", "--seconds", "1")
    victim, name = c.busy_worker(job)
    c.docker("kill", name)
    s = c.finish(client)
    exactly_once(s, 24)
    assert s["redeliveries"] >= 1  # the task it was running went back to the queue and ran elsewhere
    assert c.inspect(name)["State"]["ExitCode"] == 137 or c.inspect(name)["RestartCount"] >= 1


def test_kill_every_worker_then_new_ones_finish_the_job(make_cluster):
    c = make_cluster(workers=2, **FAST)
    c.wait_workers(2)
    client, job = c.start_job("--tasks", "16", "--seconds", "1")
    c.busy_worker(job)
    old = c.worker_names()
    for name in old.values():
        c.docker("rm", "-f", name)  # SIGKILL, and gone for good
    c.compose("up", "-d", "--no-recreate", "--scale", "worker=2")
    s = c.finish(client)
    exactly_once(s, 16)
    assert s["redeliveries"] >= 1
    new = set(c.worker_names())
    assert new and not new & set(old)
    assert sum(s["workers"].get(w, 0) for w in new) >= 1  # the new workers finished the job


def test_scale_down_five_to_one_mid_job_loses_nothing_and_redelivers_nothing(make_cluster):
    c = make_cluster(workers=5, **FAST)
    c.wait_workers(5)
    names = sorted(c.worker_names().values())
    waits = {n: subprocess.Popen(["docker", "wait", n], stdout=subprocess.PIPE, text=True) for n in names}
    client, job = c.start_job("--tasks", "40", "--seconds", "1")
    c.wait_job(job, "progress", lambda j: j["done"] >= 5)
    started = time.monotonic()
    c.compose("up", "-d", "--no-recreate", "--scale", "worker=1")  # SIGTERM to 4 of them
    stop_seconds = time.monotonic() - started
    s = c.finish(client)
    exactly_once(s, 40)
    assert s["redeliveries"] == 0 and s["duplicates_dropped"] == 0  # nothing finished ran twice
    survivors = set(c.worker_names().values())
    stopped = [n for n in names if n not in survivors]
    assert len(stopped) == 4
    codes = {n: int(waits[n].communicate(timeout=30)[0].strip()) for n in stopped}
    assert codes == {n: 0 for n in stopped}  # clean exits
    assert stop_seconds < 15  # well inside the stop grace period (stop_grace_period: 15s)
    for p in waits.values():
        p.kill()


@pytest.mark.parametrize("fault", ["network", "pause"])
def test_a_worker_cut_off_past_its_lease_has_its_late_result_dropped(make_cluster, fault):
    c = make_cluster(workers=2, **FAST)
    c.wait_workers(2)
    client, job = c.start_job("--tasks", "6", "--seconds", "3")
    victim, name = c.busy_worker(job)
    network = f"{c.project}_cluster"
    c.docker(*(["network", "disconnect", network, name] if fault == "network" else ["pause", name]))
    try:
        c.wait_job(job, "a redelivery", lambda j: j["redeliveries"] >= 1, 30)
        s = c.finish(client, 120)  # the job completes on the other worker meanwhile
    finally:
        c.docker(*(["network", "connect", network, name] if fault == "network" else ["unpause", name]))
    exactly_once(s, 6)
    assert s["redeliveries"] >= 1
    # The victim finishes the task it was cut off in, reconnects, and delivers it late: dropped and counted.
    j = c.wait_job(job, "the late duplicate", lambda j: j["duplicates_dropped"] >= 1, 120)
    assert j["done"] == 6 and j["duplicates_dropped"] == j["redeliveries"] >= 1
    w = next(w for w in c.status()["workers"] if w["id"] == victim)
    assert w["duplicates"] >= 1 and w["state"] == "alive"


@pytest.mark.parametrize("how", ["restart", "sigkill"])
def test_the_job_survives_a_master_restart(make_cluster, how):
    c = make_cluster(workers=3, **FAST)
    c.wait_workers(3)
    client, job = c.start_job("--tasks", "30", "--seconds", "1")
    c.wait_job(job, "progress", lambda j: j["done"] >= 5)
    master = c.containers("master")[0].Name
    if how == "restart":
        c.compose("restart", "master")
    else:
        c.docker("kill", master)
        if c.inspect(master)["State"]["Status"] != "running":
            c.docker("start", master)
    client.expect(r"lost the master at master:5000", 60)
    s = c.finish(client)
    exactly_once(s, 30)
    assert s["master_restarts"] >= 1
    assert "restored from the journal" in c.logs("master")


def test_soak_2000_tasks_while_workers_are_killed_and_restarted(make_cluster):
    c = make_cluster(workers=5, **FAST)
    c.wait_workers(5)
    client, job = c.start_job("--tasks", "2000", "--seconds", "0.08", "--quiet")
    rng = random.Random(2026)
    kills = 0
    for _ in range(60):  # bounded: at most 60 rounds, one kill every ~2 s while the job runs
        if client.p.poll() is not None:
            break
        names = sorted(c.worker_names().values())
        victim = rng.choice(names)
        c.docker("kill", victim)
        kills += 1
        c.docker("start", victim, check=False)
        try:
            client.p.wait(timeout=2)  # the pace of the chaos: stop as soon as the job is done
        except subprocess.TimeoutExpired:
            pass
    s = c.finish(client, 300)
    exactly_once(s, 2000)
    j = c.job(job)
    print(f"\nSOAK: tasks=2000 kills={kills} redeliveries={s['redeliveries']} "
          f"duplicates_dropped={j['duplicates_dropped']} missing={len(s['missing'])} duplicates={s['duplicates']} "
          f"seconds={s['seconds']}")
    assert kills >= 5 and s["redeliveries"] >= 1
