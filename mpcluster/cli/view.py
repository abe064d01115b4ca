"""What the command line shows: a live progress line on a terminal, the end-of-job summary with its per-worker
table, and the cluster's status as text (``status``, ``status --watch``)."""

from __future__ import annotations

import sys
import time


def _out(line: str = "") -> None:
    print(line, flush=True)


class Progress:
    """One line redrawn in place on a terminal (done/total, rate, ETA, workers busy); plain lines otherwise."""

    def __init__(self, total: int, live: bool):
        self.total, self.live = total, live
        self._drawn = self._last = 0.0
        self._busy, self._busy_at = 0, 0.0

    def show(self, done: int, summary: dict, elapsed: float, client) -> None:
        now = time.monotonic()
        if self.live:
            if now - self._drawn < 0.5:
                return
            if now - self._busy_at >= 2:  # how many workers hold leases: one status call every 2 s at most
                st = client.status()
                self._busy, self._busy_at = sum(1 for w in st["workers"] if w["leased"]), now
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = f"ETA {(self.total - done) / rate:.0f} s" if rate > 0 and done < self.total else ""
            line = f"{done}/{self.total} results  {rate:,.0f}/s  {eta}  {self._busy} workers busy"
            sys.stdout.write("\r\x1b[K" + line)
            sys.stdout.flush()
            self._drawn = now
        elif now - self._last >= 2:
            _out(f"{done}/{self.total} results after {elapsed:.1f} s")
            self._last = now

    def say(self, line: str) -> None:
        if self.live:
            sys.stdout.write("\r\x1b[K")
        _out(line)

    def end(self) -> None:
        if self.live and self._drawn:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()


def report(job_id: str, s: dict, workers: dict[str, dict], failures: list[dict], *, seconds: float, received: int,
           total: int, missing: int, errors: int) -> None:
    """The summary line, a table per worker (tasks, share, mean task time, redeliveries, dropped duplicates) and
    the first few failures with the end of their worker-side traceback."""
    _out(f"job {job_id}: {received}/{total} results in {seconds:.1f} s, {errors} errors, {missing} missing, "
         f"{s.get('redeliveries', 0)} redeliveries, {s.get('duplicates_dropped', 0)} late duplicates dropped"
         + (f", {s['poisoned']} poisoned" if s.get("poisoned") else ""))
    per = s.get("per_worker", {})
    if workers:
        _out(f"  {'worker':<24} {'ip':<15} {'tasks':>7} {'share':>6} {'mean task':>10} {'redelivered':>12} "
             f"{'dup dropped':>12}")
    for w, v in sorted(workers.items(), key=lambda kv: (-kv[1]["tasks"], kv[0])):
        p = per.get(w, {})
        mean = p.get("seconds", 0.0) / p["tasks"] if p.get("tasks") else 0.0
        _out(f"  {w:<24} {v['ip']:<15} {v['tasks']:>7} {v['tasks'] / max(1, received):>6.0%} {mean:>8.3f} s "
             f"{p.get('redeliveries', 0):>12} {p.get('duplicates_dropped', 0):>12}")
    for r in failures:
        e = r["error"]
        _out(f"  task {r['id']} failed on worker {r['worker']}: {e['type']}: {e['message']}")
        for line in (e.get("traceback") or "").rstrip().splitlines()[-4:]:
            _out(f"      {line}")


def render_status(st: dict) -> str:
    m, q = st["master"], st["queues"]
    lines = [
        f"master: Python {m['python']}, up {m['uptime_s']:.0f} s, lease {m['lease_seconds']:g} s, "
        f"heartbeat {m['heartbeat_seconds']:g} s, restarts {m['restarts']}, journal {'on' if m['journal'] else 'off'}",
        f"queues: {q['pending']} pending, {q['leased']} leased, classic {q['classic_tasks']} tasks / "
        f"{q['classic_results']} results waiting",
        f"workers: {st['alive']} alive of {len(st['workers'])} seen",
    ]
    for w in st["workers"]:
        slots = f"{w.get('threads', 1)}t/{w.get('processes', 0)}p"
        lines.append(f"  {w['id']:<20} {w['ip']:<15} {w['state']:<8} last heartbeat {w['last_heartbeat_s']:>6.1f} s "
                     f"ago  leased {w['leased']:>3}  done {w['done']:>6}  errors {w['errors']}  {slots}  "
                     f"Python {w['python']}  kinds {','.join(w.get('kinds') or []) or '?'}")
    for j in st["jobs"]:
        lines.append(f"  job {j['job']} ({j['kind']}): {j['done']}/{j['tasks']} done, {j['errors']} errors, "
                     f"{j['redeliveries']} redeliveries, {j['state']}")
    return "\n".join(lines)
