"""The worker registry: every worker the master has heard from, and what state it is in.

A worker is known by its id (the container's hostname) and, within that id, by a *session* (one per worker
process). A container restarted by Docker keeps its hostname but starts a new session, which is how the master
knows that the old process is dead and its leases will never be acknowledged.

No lock and no clock of its own: the dispatcher holds the lock and passes ``now``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from .. import kinds

# What a worker reports about itself that the registry keeps (for `status` and the page).
INFO_FIELDS = ("ip", "host", "pid", "python", "version", "batch", "mode", "threads", "processes", "kinds")
#: Each worker's throughput is sampled this often, and this many samples are kept (five minutes).
SAMPLE_SECONDS = 5.0
SAMPLES_KEPT = 60


class WorkerStatus(Enum):
    ALIVE = "alive"  # heartbeats arrive
    STOPPING = "stopping"  # got SIGTERM: finishing the task in hand, leasing no more
    GONE = "gone"  # silent for longer than a lease: presumed dead, its leases expire
    LEFT = "left"  # said goodbye


@dataclass
class WorkerState:
    """What the master knows of one worker. Not to be confused with ``mpcluster.worker.process.Worker``, the
    worker process itself."""

    id: str
    first_seen: float
    last_seen: float
    status: WorkerStatus = WorkerStatus.ALIVE
    session: str = ""
    ip: str = ""
    info: dict = field(default_factory=dict)
    done: int = 0
    errors: int = 0
    duplicates: int = 0
    restarts: int = 0  # new processes seen under this id
    history: deque = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))  # tasks done per sample
    _done_at_sample: int = 0

    @property
    def slots(self) -> int:
        """Tasks it runs at once: its threads plus its processes, as it reported them."""
        n = 0
        for name, default in (("threads", 1), ("processes", 0)):
            v = self.info.get(name, default)
            n += v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1000 else 0
        return max(1, n)


@dataclass
class Touch:
    """What one call from a worker changed in the registry (the dispatcher turns it into events)."""

    worker: WorkerState
    joined: bool = False
    back_from: WorkerStatus | None = None  # it was gone or left and is alive again
    restarted: bool = False  # a new session under a known id: the previous process is dead
    stopping: bool = False  # it just said it is stopping

    def events(self, requeued: int = 0) -> list[str]:
        """The event lines it makes (``requeued``: tasks of the previous process queued again)."""
        w, out = self.worker, []
        if self.joined:
            out.append(f"worker {w.id} joined" + (f" from {w.ip}" if w.ip else ""))
        if self.back_from is not None:
            out.append(f"worker {w.id} is back after being {self.back_from.value}")
        if self.restarted:
            out.append(f"worker {w.id} restarted" + (f": {requeued} tasks of its previous run queued again"
                                                       if requeued else ""))
        return out


class Registry:
    def __init__(self) -> None:
        self._workers: dict[str, WorkerState] = {}
        self._sampled = 0.0

    def __iter__(self):
        return iter(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, worker_id: str) -> WorkerState | None:
        return self._workers.get(worker_id)

    def touch(self, worker_id: str, info: dict | None, now: float) -> Touch:
        """Record a call from a worker: ``info`` (may be None) is what it says about itself."""
        info = info if isinstance(info, dict) else {}
        w = self._workers.get(worker_id)
        t = Touch(w) if w is not None else None
        if w is None:
            w = self._workers[worker_id] = WorkerState(worker_id, first_seen=now, last_seen=now)
            t = Touch(w, joined=True)
        session = str(info.get("session") or "")
        new_process = bool(session) and session != w.session
        if w.status is WorkerStatus.GONE or (w.status is WorkerStatus.LEFT and new_process):
            # A worker that said goodbye comes back only as a new process: a retried goodbye, an empty ack or a
            # heartbeat that crossed the goodbye come from the old one, on its way out.
            t.back_from, w.status = w.status, WorkerStatus.ALIVE
        if new_process:
            t.restarted = bool(w.session)
            w.restarts += t.restarted
            w.session = session
        w.info.update({k: v for k, v in info.items() if k in INFO_FIELDS})
        w.ip = str(w.info.get("ip", w.ip))
        if info.get("state") == "stopping" and w.status is WorkerStatus.ALIVE:
            w.status, t.stopping = WorkerStatus.STOPPING, True
        w.last_seen = now
        return t

    def silent(self, now: float, timeout: float) -> list[WorkerState]:
        """Mark workers not heard from for ``timeout`` seconds gone; return those newly marked."""
        out = []
        for w in self._workers.values():
            if w.status in (WorkerStatus.ALIVE, WorkerStatus.STOPPING) and now - w.last_seen > timeout:
                w.status = WorkerStatus.GONE
                out.append(w)
        return out

    def leave(self, worker_id: str) -> WorkerState | None:
        w = self._workers.get(worker_id)
        if w is not None:
            w.status = WorkerStatus.LEFT
        return w

    def sample(self, now: float) -> None:
        """Every SAMPLE_SECONDS, note how many tasks each worker finished since the last sample."""
        if now - self._sampled < SAMPLE_SECONDS:
            return
        self._sampled = now
        for w in self._workers.values():
            w.history.append(w.done - w._done_at_sample)
            w._done_at_sample = w.done

    def rows(self, now: float, leased, timeout: float) -> list[dict]:
        """One plain dict per worker, for `status` and the page (``leased(worker id)`` counts its leases;
        ``gone_in_s`` counts down to the moment a silent worker is marked gone, after ``timeout``)."""
        out = []
        for w in self._workers.values():
            age = now - w.last_seen
            live = w.status in (WorkerStatus.ALIVE, WorkerStatus.STOPPING)
            out.append({
                "id": w.id, "ip": w.ip, "state": w.status.value, "last_heartbeat_s": round(age, 2),
                "gone_in_s": round(max(0.0, timeout - age), 2) if live else None,
                "leased": leased(w.id), "done": w.done, "errors": w.errors, "duplicates": w.duplicates,
                "python": w.info.get("python", ""), "version": w.info.get("version", ""),
                "host": w.info.get("host", ""), "mode": w.info.get("mode", ""),
                "threads": w.info.get("threads", 1), "processes": w.info.get("processes", 0),
                "kinds": list(w.info.get("kinds", ())), "history": list(w.history),
                "restarts": w.restarts, "first_seen": round(w.first_seen, 3),
            })
        return out

    def alive_slots(self) -> int:
        """Tasks the live workers run at once (each a thread or process slot of its own)."""
        return sum(w.slots for w in self._workers.values() if w.status is WorkerStatus.ALIVE)

    def offered_kinds(self) -> set[str]:
        """The task kinds some live worker offers."""
        return {k for w in self._workers.values() if w.status is WorkerStatus.ALIVE
                for k in w.info.get("kinds") or () if isinstance(k, str)}

    def offers(self, kind: str) -> bool:
        """Whether a job of ``kind`` can run: a built-in kind, or one some live worker offers."""
        return kind in kinds.BUILTIN or kind in self.offered_kinds()

    def no_such_kind(self, kind: str) -> str:
        """The one line that refuses a job of a kind nobody offers."""
        offered = sorted(self.offered_kinds() | set(kinds.BUILTIN))
        return (f"no live worker offers task kind {kind!r} ({self.alive()} workers alive offer "
                f"{', '.join(offered)}): workers import it from MPC_TASKS_DIR (MPC_TASK_MODULES); put its module "
                "there and restart them")

    def credit(self, w: WorkerState, plan, classic_ok: int) -> None:
        """What one acknowledgement from ``w`` counts for it: results recorded (errors among them) and late
        duplicates dropped, the lesson's queue's included."""
        w.done += len(plan.fresh) + classic_ok
        w.errors += sum(1 for _, rec in plan.fresh if not rec["ok"])
        w.duplicates += len(plan.dupes) + len(plan.classic) - classic_ok

    def alive(self) -> int:
        return sum(1 for w in self._workers.values() if w.status is WorkerStatus.ALIVE)
