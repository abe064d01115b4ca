"""The worker: leases tasks from the master, runs them by name, acknowledges results, heartbeats meanwhile.

Against a plain classic master (only the lesson's two queues) it falls back to the lesson's loop.
SIGTERM: stop leasing, finish the task in hand within MPC_STOP_GRACE seconds (else hand it back), hand back
what was not started, acknowledge what is done, say goodbye, exit 0.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import socket
import threading
import time
import uuid

from . import tasks as kinds
from .classic import serve_lesson_master
from .config import WorkerSettings
from .protocol import AuthFailed, Link, Unreachable

log = logging.getLogger("mpcluster")

TARGET_BATCH_SECONDS = 0.2  # lease about this much work per round trip
LEASE_WAIT = 2.0


class _Interrupt(Exception):
    """Raised by the SIGTERM handler to cut an idle long-poll short."""


def default_worker_id(configured: str = "") -> str:
    """MPC_WORKER_ID if set; else the container's hostname (unique per replica); outside a container (not PID 1),
    hostname-pid so that several workers can share a host."""
    if configured:
        return configured
    host = socket.gethostname()
    return host if os.getpid() == 1 else f"{host}-{os.getpid()}"


def execute(task: dict, worker: str, ip: str, abort: threading.Event | None = None) -> dict:
    """Run one task; never raises for a bad task (error result instead). Raises kinds.Interrupted on abort."""
    started = time.monotonic()
    try:
        args = task.get("args")
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except ValueError as e:
            raise kinds.TaskError(f"the task's arguments are not JSON ({e})") from None
        value, ok, error = kinds.run(task.get("kind"), args, abort), True, None
    except kinds.Interrupted:
        raise
    except Exception as e:  # a task must never kill its worker
        value, ok, error = None, False, kinds.error_info(e)
    return {"job": task.get("job"), "id": task.get("id"), "ok": ok, "value": value, "error": error,
            "worker": worker, "ip": ip, "elapsed": round(time.monotonic() - started, 4)}


class Worker:
    def __init__(self, link: Link, worker_id: str, batch_max: int = 100, stop_grace: float = 5.0,
                 heartbeat_seconds: float = 2.0):
        """``heartbeat_seconds`` is only where it starts: the master's setting arrives with the first heartbeat."""
        self.link = link
        self.id = worker_id
        self.heartbeat_seconds = heartbeat_seconds
        self.batch_max = batch_max
        self.stop_grace = stop_grace
        self.stop = threading.Event()  # SIGTERM seen: no more leasing
        self.abort = threading.Event()  # grace over: interrupt the task in hand
        self.leaving = threading.Event()  # saying goodbye: heartbeats (which keep leases alive) end here
        self.batch = 1
        self.done = 0
        # Leases this worker knows it holds (granted and not yet acknowledged or handed back): heartbeats name
        # them, so a lease whose grant never reached us is not kept alive by us.
        self._held: set[tuple[str, int]] = set()
        self._held_lock = threading.Lock()
        self._interruptible = False
        self._avg: float | None = None
        self.session = uuid.uuid4().hex  # tells the master a restarted container is a new process

    # ---- signals -------------------------------------------------------------------------------------------
    def install_signals(self) -> None:
        def on_term(signum, frame):
            if not self.stop.is_set():
                log.info("worker %s: stopping (%s): finishing the task in hand, handing back the rest",
                         self.id, signal.Signals(signum).name)
                self.stop.set()
                timer = threading.Timer(self.stop_grace, self.abort.set)
                timer.daemon = True
                timer.start()
            if self._interruptible:
                self._interruptible = False
                raise _Interrupt()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def info(self) -> dict:
        return {"ip": self.link.ip, "host": socket.gethostname(), "pid": os.getpid(),
                "python": platform.python_version(), "batch": self.batch, "mode": self.link.mode,
                "session": self.session, "state": "stopping" if self.stop.is_set() else "alive"}

    # ---- main loop -----------------------------------------------------------------------------------------
    def run(self) -> int:
        if not self.link.open_with_retry(self.stop, f"worker {self.id}"):
            return 0
        log.info("worker %s: connected to master at %s from %s (%s protocol)",
                 self.id, self.link.where, self.link.ip or "?", self.link.mode)
        if self.link.mode == "classic":
            return serve_lesson_master(self.link, self.id, self.stop, self.abort)
        threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
        outbox: list[dict] = []
        held: list[dict] = []
        while not self.stop.is_set():
            try:
                if outbox:
                    self._ack(outbox)
                    outbox = []
                self._interruptible = True
                try:
                    if self.stop.is_set():
                        break
                    held = self.link.call("lease", self.id, self.batch, LEASE_WAIT, self.info())
                finally:
                    self._interruptible = False
                self._hold(held)
                started = time.monotonic()
                n_run = 0
                while held and not self.stop.is_set():
                    task = held[0]
                    try:
                        result = execute(task, self.id, self.link.ip, self.abort)
                    except kinds.Interrupted:
                        break
                    held.pop(0)
                    outbox.append(result)
                    n_run += 1
                    self.done += 1
                if n_run:
                    self._adapt((time.monotonic() - started) / n_run)
                if held:  # stopping: hand back what was not finished
                    self._hand_back(held)
                    held = []
                if outbox:
                    self._ack(outbox)
                    outbox = []
            except _Interrupt:
                self.link.close()  # a reply may be half read: never reuse that connection
            except Unreachable as e:
                if self.stop.is_set():
                    break
                log.warning("worker %s: lost the master at %s (%s); reconnecting, %d results kept for it",
                            self.id, self.link.where, e, len(outbox))
                if not self.link.open_with_retry(self.stop, f"worker {self.id}"):
                    break
                log.info("worker %s: reconnected to master at %s", self.id, self.link.where)
            except AuthFailed:
                raise
            except Exception as e:  # the master answered with an error (e.g. its disk is full): keep the results
                log.warning("worker %s: the master could not take a call (%s: %s); %d results kept, retrying in 1 s",
                            self.id, type(e).__name__, str(e)[:200], len(outbox))
                self.stop.wait(1.0)
        return self._leave(outbox)

    def _adapt(self, per_task: float) -> None:
        """Batch size from observed task time: about TARGET_BATCH_SECONDS of work per lease, 1 for slow tasks."""
        self._avg = per_task if self._avg is None else 0.7 * self._avg + 0.3 * per_task
        want = int(TARGET_BATCH_SECONDS / max(self._avg, 1e-6))
        self.batch = max(1, min(self.batch_max, want, self.batch * 4))

    def _hold(self, tasks: list[dict]) -> None:
        with self._held_lock:
            self._held.update((t["job"], t["id"]) for t in tasks)

    def _unhold(self, records: list[dict]) -> None:
        with self._held_lock:
            self._held.difference_update((r["job"], r["id"]) for r in records)

    def _ack(self, outbox: list[dict]) -> None:
        self.link.call("ack", self.id, outbox)
        self._unhold(outbox)

    def _hand_back(self, held: list[dict]) -> None:
        self._unhold(held)
        try:
            self.link.call("release", self.id, [(t["job"], t["id"]) for t in held])
        except Unreachable:
            pass  # the leases expire on the master and the tasks run elsewhere

    def _leave(self, outbox: list[dict]) -> int:
        """Acknowledge what is done and say goodbye (which hands back anything still leased to this worker),
        trying briefly to reach the master if the link is down or it answers with an error."""
        deadline = time.monotonic() + max(1.0, self.stop_grace)
        said_error = False
        while time.monotonic() < deadline:
            try:
                if self.link.dispatcher is None:
                    self.link.open()
                if outbox:
                    self._ack(outbox)
                    outbox = []
                self.leaving.set()
                n = self.link.call("goodbye", self.id)
                log.info("worker %s: done %d tasks, handed back %d; bye", self.id, self.done, n)
                return 0
            except Unreachable:
                pass
            except AuthFailed:
                break
            except Exception as e:  # the master answered with an error (e.g. its disk is full): keep trying briefly
                if not said_error:
                    log.warning("worker %s: the master could not take the last results (%s: %s); retrying until "
                                "the stop grace ends", self.id, type(e).__name__, str(e)[:200])
                    said_error = True
                if outbox and time.monotonic() + 0.2 >= deadline:
                    break  # the goodbye below still hands back what we hold
            time.sleep(0.2)
        log.warning("worker %s: could not hand over %d results to the master; their tasks will run again elsewhere",
                    self.id, len(outbox))
        self.leaving.set()
        try:
            if self.link.dispatcher is not None:
                self.link.call("goodbye", self.id)  # hands back what we hold now, instead of waiting for expiry
        except Exception:  # the leases expire on the master instead
            pass
        return 0

    def _heartbeats(self) -> None:
        # The first one at once, so the registry learns the worker's details early; they go on while a stopping
        # worker finishes its task, so that task's lease does not expire under it.
        while not self.leaving.is_set():
            with self._held_lock:
                keys = list(self._held)
            try:
                reply = self.link.call("heartbeat", self.id, self.info(), keys)
                if isinstance(reply, dict) and isinstance(reply.get("heartbeat_seconds"), (int, float)):
                    self.heartbeat_seconds = max(0.05, float(reply["heartbeat_seconds"]))  # the master's setting
            except Unreachable:
                pass  # the main loop notices and reconnects; heartbeats resume on the new link
            except Exception as e:
                log.warning("worker %s: heartbeat failed: %s", self.id, e)
            self.leaving.wait(self.heartbeat_seconds)

def main(settings: WorkerSettings, link: Link) -> int:
    worker = Worker(link, default_worker_id(settings.worker_id), settings.batch_max, settings.stop_grace)
    worker.install_signals()
    try:
        return worker.run()
    except AuthFailed as e:
        log.error("worker %s: %s", worker.id, e)
        return 2
