"""Clients of a running master: ``submit`` (a job, waiting for every result), ``status``, and ``health``."""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
import uuid

from . import tasks as kinds
from .protocol import AuthFailed, Link, Unreachable

log = logging.getLogger("mpcluster")

PRINT_EACH_UP_TO = 200  # larger jobs print a progress line every 2 s instead of a line per result


def out(line: str = "") -> None:
    print(line, flush=True)


def make_tasks(n_tasks: int, kind: str, seconds: float, seed: int | None) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for i in range(n_tasks):
        if kind == "square":
            args = {"n": rng.randint(0, 10000), "seconds": seconds}
        elif kind == "sleep":
            args = {"seconds": seconds}
        else:
            args = {"n": rng.randint(1000, 20000)}
        items.append({"id": i, "kind": kind, "args": args})
    return items


def expected_value(task: dict):
    """What a correct worker returns, computed here independently, for the summary's 'wrong' check."""
    a = task["args"]
    if task["kind"] == "square" and isinstance(a.get("n"), int):
        return a["n"] * a["n"]
    if task["kind"] == "sleep":
        return a.get("seconds")
    if task["kind"] == "primes" and isinstance(a.get("n"), int) and 0 <= a["n"] <= 10**6:
        return kinds.count_primes(a["n"])
    return None


def connect(link: Link, stop: threading.Event, timeout: float, role: str) -> None:
    deadline = time.monotonic() + timeout
    if not link.open_with_retry(stop, role, deadline):
        raise Unreachable(f"could not reach the master at {link.where} within {timeout:g} s")


def submit(link: Link, items: list[dict], *, as_json: bool, timeout: float, connect_timeout: float,
           job_id: str | None = None, quiet: bool = False) -> int:
    """Submit a job, follow its results (resuming after a master restart), print a summary; 0 iff complete."""
    for t in items:
        try:
            kinds.validate(t["kind"], t["args"])
        except kinds.TaskError as e:
            print(f"mpcluster submit: error: task {t['id']} is not valid: {e}", file=sys.stderr)
            return 2
    stop = threading.Event()
    connect(link, stop, connect_timeout, "submit")
    if link.mode != "mpcluster":
        out(f"mpcluster submit: the master at {link.where} only offers the lesson's queues: use --protocol classic")
        return 2
    job_id = job_id or "job-" + uuid.uuid4().hex[:12]
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    by_id = {t["id"]: t for t in items}
    seen: dict[int, dict] = {}
    duplicates = 0
    cursor, submitted, summary = 0, False, None
    last_progress = 0.0
    last_result = started
    per_line = len(items) <= PRINT_EACH_UP_TO and not quiet
    while True:
        try:
            if not submitted:
                link.call("submit", {"id": job_id, "tasks": items})
                submitted = True
                out(f"submitted job {job_id}: {len(items)} tasks to the master at {link.where}")
            cursor, chunk, summary = link.call("results", job_id, cursor, 2.0)
        except Unreachable as e:
            out(f"lost the master at {link.where} ({e}); reconnecting to follow job {job_id}")
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0 or not link.open_with_retry(
                    stop, "submit", None if deadline is None else time.monotonic() + remaining):
                break
            continue
        except ValueError as e:
            print(f"mpcluster submit: error: the master refused the job: {e}", file=sys.stderr)
            return 2
        except KeyError as e:
            out(f"mpcluster submit: {e.args[0] if e.args else e}")
            break
        except Exception as e:  # the master answered with an error of its own (e.g. its disk is full)
            print(f"mpcluster submit: error: the master could not {'follow' if submitted else 'take'} job {job_id}: "
                  f"{type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
            return 1
        for r in chunk:
            if r["id"] in seen:
                duplicates += 1
                continue
            seen[r["id"]] = r
            if per_line:
                shown = r["value"] if r["ok"] else "error: " + str(r["error"])
                out(f"[{len(seen):>{len(str(len(items)))}}/{len(items)}] task {r['id']}: {shown}  "
                    f"(worker {r['worker']} at {r['ip']})")
        now = time.monotonic()
        if chunk:
            last_result = now
        if not per_line and not quiet and now - last_progress >= 2:
            out(f"{len(seen)}/{len(items)} results after {now - started:.1f} s")
            last_progress = now
        if now - last_result >= 10 and len(seen) < len(items):
            last_result = now  # never silent for long: say what the job is waiting for
            try:
                st = link.call("status")
                out(f"waiting: {len(seen)}/{len(items)} results; {st['alive']} workers alive, "
                    f"{st['queues']['pending']} tasks pending, {st['queues']['leased']} leased")
            except Unreachable:
                pass
        if len(seen) == len(items):
            break
        if deadline is not None and now > deadline:
            out(f"mpcluster submit: gave up after --timeout {timeout:g} s")
            break
    return report(job_id, items, by_id, seen, duplicates, summary, time.monotonic() - started, as_json)


def report(job_id, items, by_id, seen, duplicates, summary, seconds, as_json) -> int:
    workers: dict[str, int] = {}
    ips: dict[str, str] = {}
    errors, wrong = 0, []
    for r in seen.values():
        workers[r["worker"]] = workers.get(r["worker"], 0) + 1
        ips[r["worker"]] = r.get("ip", "")
        if not r["ok"]:
            errors += 1
        elif (want := expected_value(by_id[r["id"]])) is not None and r["value"] != want:
            wrong.append(r["id"])
    missing = sorted(set(by_id) - set(seen))
    summary = summary or {}
    out(f"job {job_id}: {len(seen)}/{len(items)} results in {seconds:.1f} s, {errors} errors, "
        f"{len(missing)} missing, {summary.get('redeliveries', 0)} redeliveries, "
        f"{summary.get('duplicates_dropped', 0)} late duplicates dropped")
    for w, c in sorted(workers.items(), key=lambda kv: (-kv[1], kv[0])):
        out(f"  worker {w} ({ips[w]}): {c} tasks")
    if as_json:
        out(json.dumps({
            "job": job_id, "tasks": len(items), "results": len(seen), "missing": missing, "duplicates": duplicates,
            "errors": errors, "wrong": wrong, "workers": workers, "ips": ips, "seconds": round(seconds, 3),
            "redeliveries": summary.get("redeliveries", 0), "duplicates_dropped": summary.get("duplicates_dropped", 0),
            "handed_back": summary.get("handed_back", 0), "master_restarts": summary.get("master_restarts", 0),
        }))
    return 0 if not missing else 1


def status(link: Link, *, as_json: bool, wait_workers: int, wait_job: str, timeout: float,
           connect_timeout: float) -> int:
    """Print the cluster as the master sees it; optionally wait (up to ``timeout``) until ``wait_workers`` are
    alive and the newest job whose id starts with ``wait_job`` is complete."""
    stop = threading.Event()
    connect(link, stop, connect_timeout, "status")
    if link.mode != "mpcluster":
        out(f"the master at {link.where} is a plain classic master (only the lesson's queues): no registry")
        return 1
    deadline = time.monotonic() + timeout
    while True:
        st = link.call("status")
        job = link.call("newest_job", wait_job) if wait_job else None
        if (st["alive"] >= wait_workers and (not wait_job or (job and job["complete"]))) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling a remote registry until it shows what we wait for, bounded by --timeout
    if as_json:
        out(json.dumps(st))
    else:
        m, q = st["master"], st["queues"]
        out(f"master: Python {m['python']}, up {m['uptime_s']:.0f} s, lease {m['lease_seconds']:g} s, "
            f"heartbeat {m['heartbeat_seconds']:g} s, restarts {m['restarts']}, journal {'on' if m['journal'] else 'off'}")
        out(f"queues: {q['pending']} pending, {q['leased']} leased, classic {q['classic_tasks']} tasks / "
            f"{q['classic_results']} results waiting")
        out(f"workers: {st['alive']} alive of {len(st['workers'])} seen")
        for w in st["workers"]:
            out(f"  {w['id']:<20} {w['ip']:<15} {w['state']:<8} last heartbeat {w['last_heartbeat_s']:>6.1f} s ago  "
                f"leased {w['leased']:>3}  done {w['done']:>6}  errors {w['errors']}  Python {w['python']}")
        for j in st["jobs"]:
            out(f"  job {j['job']}: {j['done']}/{j['tasks']} done, {j['errors']} errors, "
                f"{j['redeliveries']} redeliveries{'' if j['complete'] else ' (running)'}")
    if st["alive"] < wait_workers:
        print(f"mpcluster status: only {st['alive']} of {wait_workers} workers alive after {timeout:g} s",
              file=sys.stderr)
        return 1
    if wait_job and not (job and job["complete"]):
        shown = f"{job['done']}/{job['tasks']} results" if job else "no such job"
        print(f"mpcluster status: job {wait_job}* not complete after {timeout:g} s ({shown})", file=sys.stderr)
        return 1
    return 0


def health(link: Link) -> int:
    """Docker HEALTHCHECK: a full authkey handshake and a dispatcher call, not just a TCP connect."""
    try:
        link.open()
        if link.mode != "mpcluster":
            return 1
        return 0 if link.call("ping").get("ok") else 1
    except (Unreachable, AuthFailed) as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1
