"""The command line's clients of a running master: ``submit``, ``results``, ``cancel``, ``status`` and the
container health check. A thin layer over the Python API (``mpcluster.client.Client``): what it adds is what a terminal shows.

A job is followed with bounded memory: a byte per task (seen or not), the per-worker figures, and the few
results kept for ``--output`` until the earlier ones arrive (written in task order).
"""

from __future__ import annotations

import json
import sys
import time
from array import array
from collections.abc import Iterable, Iterator

from .. import kinds
from ..client import Client, Job
from ..link import Link
from ..protocol import AuthFailed, Unreachable
from .view import Progress, render_status, report

PRINT_EACH_UP_TO = 200  # larger jobs show a progress line instead of a line per result
WAITING_SAY_EVERY = 10.0  # a job with no result for this long says what it waits for


def out(line: str = "") -> None:
    print(line, flush=True)


class Expected:
    """What a correct worker returns for the built-in kinds, computed here from the arguments sent (a number per
    task, so a million-task job costs 8 MB), for the summary's ``wrong`` list."""

    def __init__(self, kind: str):
        self.kind, self.n = kind, array("q")

    def wrap(self, args: Iterable[dict]) -> Iterator[dict]:
        for a in args:
            self.n.append(a.get("n", 0) if self.kind in ("square", "primes") else 0)
            yield a

    def wrong(self, r: dict, seconds: float) -> bool:
        if not r["ok"] or self.kind not in kinds.BUILTIN:
            return False
        n = self.n[r["id"]] if r["id"] < len(self.n) else None
        want = {"square": lambda: n * n, "sleep": lambda: seconds, "primes": lambda: kinds.count_primes(n)}
        return n is not None and r["value"] != want[self.kind]()


class Follower:
    """Reads a job's results and shows them: a line per result for small jobs, else a progress line; keeps what
    the summary needs; writes ``--output`` in task order."""

    def __init__(self, job: Job, total: int, *, quiet: bool, output: str | None, expected: Expected | None,
                 seconds: float = 0.0):
        self.job, self.total, self.quiet, self.expected, self.seconds = job, total, quiet, expected, seconds
        self.seen, self.duplicates, self.errors, self.wrong, self.failures = bytearray(total), 0, 0, [], []
        self.workers: dict[str, dict] = {}
        self.received, self.started = 0, time.monotonic()
        self.per_line = total <= PRINT_EACH_UP_TO and not quiet
        self.progress = Progress(total, sys.stdout.isatty() and not quiet and not self.per_line)
        self._out = open(output, "w", encoding="utf-8") if output else None  # noqa: SIM115 - closed in finish()
        self._next, self._held = 0, {}

    def take(self, records: list[dict]) -> None:
        for r in records:
            i = r["id"]
            if i >= len(self.seen):  # a job followed by `results` may have grown since we looked
                self.seen.extend(bytes(i + 1 - len(self.seen)))
            if self.seen[i]:
                self.duplicates += 1
                continue
            self.seen[i] = 1
            self.received += 1
            w = self.workers.setdefault(r["worker"], {"ip": r.get("ip", ""), "tasks": 0})
            w["tasks"] += 1
            if not r["ok"]:
                self.errors += 1
                if len(self.failures) < 3:
                    self.failures.append(r)
            if self.expected is not None and self.expected.wrong(r, self.seconds):
                self.wrong.append(i)
            if self.per_line:
                shown = r["value"] if r["ok"] else f"error: {r['error']['type']}: {r['error']['message']}"
                out(f"[{self.received:>{len(str(self.total))}}/{self.total}] task {i}: {shown}  "
                    f"(worker {r['worker']} at {r['ip']})")
            if self._out is not None:
                self._held[i] = r
                while self._next in self._held:
                    self._out.write(json.dumps(self._held.pop(self._next)) + "\n")
                    self._next += 1

    def follow(self, timeout: float) -> str:
        """Until every result is in, the job is cancelled, or ``timeout`` (0: none) passes; returns why it stopped."""
        deadline = self.started + timeout if timeout else None
        last_result = last_said = time.monotonic()
        while True:
            records, summary = self.job.poll()
            self.take(records)
            now = time.monotonic()
            if records:
                last_result = now
            self.total = max(self.total, summary["tasks"])
            if self.job.finished() or (summary["state"] == "done" and self.received >= summary["tasks"]):
                self.progress.end()
                return summary["state"]
            if not self.per_line and not self.quiet:
                self.progress.show(self.received, summary, now - self.started, self.job.client)
            if now - max(last_result, last_said) >= WAITING_SAY_EVERY:
                last_said = now  # never silent for long: say what the job is waiting for
                st = self.job.client.status()
                self.progress.say(f"waiting: {self.received}/{self.total} results; {st['alive']} workers alive, "
                                  f"{st['queues']['pending']} tasks pending, {st['queues']['leased']} leased")
            if deadline is not None and now > deadline:
                self.progress.end()
                out(f"mpcluster: gave up after --timeout {timeout:g} s")
                return "timeout"

    def finish(self, as_json: bool) -> int:
        if self._out is not None:
            for i in sorted(self._held):  # a gap (a missing result) leaves the rest to be written in order here
                self._out.write(json.dumps(self._held[i]) + "\n")
            self._out.close()
        s = self.job.summary or {}
        missing = [i for i in range(self.total) if i >= len(self.seen) or not self.seen[i]]
        report(self.job.id, s, self.workers, self.failures, seconds=time.monotonic() - self.started,
               received=self.received, total=self.total, missing=len(missing), errors=self.errors)
        if as_json:
            out(json.dumps({
                "job": self.job.id, "state": s.get("state"), "tasks": self.total, "results": self.received,
                "missing": missing, "duplicates": self.duplicates, "errors": self.errors,
                "wrong": self.wrong if self.expected is not None else None,
                "workers": {w: v["tasks"] for w, v in self.workers.items()},
                "ips": {w: v["ip"] for w, v in self.workers.items()},
                "seconds": round(time.monotonic() - self.started, 3),
                "redeliveries": s.get("redeliveries", 0), "duplicates_dropped": s.get("duplicates_dropped", 0),
                "handed_back": s.get("handed_back", 0), "poisoned": s.get("poisoned", 0),
                "master_restarts": s.get("master_restarts", 0), "per_worker": s.get("per_worker", {}),
            }))
        return 0 if not missing and s.get("state") == "done" else 1


def submit(client: Client, kind: str, args: Iterable[dict], total: int, *, as_json: bool, timeout: float,
           quiet: bool = False, output: str | None = None, task_timeout: float | None = None,
           max_attempts: int = 3, seconds: float = 0.0) -> int:
    """Submit a job, follow its results (resuming after a master restart), print a summary; 0 iff complete."""
    expected = Expected(kind) if kind in kinds.BUILTIN else None
    try:
        job = client.submit(kind, expected.wrap(args) if expected else args, task_timeout=task_timeout,
                            max_attempts=max_attempts)
    except ValueError as e:
        print(f"mpcluster submit: error: the master refused the job: {e}", file=sys.stderr)
        return 2
    out(f"submitted job {job.id}: {job.sent} tasks of {kind} to the master at {client.where}")
    f = Follower(job, job.sent, quiet=quiet, output=output, expected=expected, seconds=seconds)
    return _finish(f, timeout, as_json)


def results(client: Client, job_id: str, *, as_json: bool, timeout: float, quiet: bool = False,
            output: str | None = None) -> int:
    """Follow a job submitted earlier (from its first result), with the same output as ``submit``."""
    job = client.attach(job_id)
    out(f"following job {job.id}: {job.sent} tasks of {job.kind} on the master at {client.where}")
    return _finish(Follower(job, job.sent, quiet=quiet, output=output, expected=None), timeout, as_json)


def _finish(f: Follower, timeout: float, as_json: bool) -> int:
    why = f.follow(timeout)
    if why == "cancelled":
        out(f"job {f.job.id} was cancelled: {f.received}/{f.total} results arrived before")
    code = f.finish(as_json)
    return code if why != "cancelled" else 3


def cancel(client: Client, job_id: str, as_json: bool) -> int:
    s = client.attach(job_id).cancel()
    out(f"job {job_id}: {s['state']}; {s['done']}/{s['tasks']} results kept")
    if as_json:
        out(json.dumps(s))
    return 0


def status(client: Client, *, as_json: bool, wait_workers: int, wait_job: str, timeout: float, watch: bool) -> int:
    """Print the cluster as the master sees it; optionally wait (up to ``timeout``) until ``wait_workers`` are
    alive and the newest job whose id starts with ``wait_job`` is complete; ``watch`` redraws every second."""
    deadline = time.monotonic() + timeout
    while True:
        st = client.status()
        job = client.call("newest_job", wait_job) if wait_job else None
        ready = st["alive"] >= wait_workers and (not wait_job or (job and job["complete"]))
        if watch:
            text = render_status(st)
            out(("\x1b[H\x1b[2J" if sys.stdout.isatty() else "") + text)
        elif ready or time.monotonic() > deadline:
            break
        time.sleep(1.0 if watch else 0.2)  # the pace of a redraw, or of polling for what we wait for (`make up`)
    out(json.dumps(st) if as_json else render_status(st))
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
