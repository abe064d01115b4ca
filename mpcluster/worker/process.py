"""The worker: slots that lease tasks from the master, run them by name and acknowledge the results, one heartbeat
thread meanwhile, and a graceful stop.

Concurrency inside a worker comes in slots (``slots.Slot``): ``threads`` thread slots (default 1, the lesson's one
task at a time; right for I/O-bound kinds) and ``processes`` process slots (default 0; each runs CPU-bound kinds in
a child process of its own, because threads share one GIL). With process slots, thread slots lease only the kinds
that are not CPU-bound and process slots only those that are.

Against a plain classic master (only the lesson's two queues) it falls back to the lesson's loop, on one thread.
SIGTERM: stop leasing, say so in a heartbeat at once, let every slot finish the task in hand within MPC_STOP_GRACE
seconds (else hand it back), hand back what was not started, acknowledge what is done, say goodbye, exit 0.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
import time
import uuid
from collections.abc import Callable

from .. import kinds
from ..config import WorkerSettings
from ..link import Link
from ..protocol import AuthFailed, Unreachable
from ..stopping import Stop
from ..version import __version__
from .executors import ProcessExecutor, ThreadExecutor
from .heartbeat import Heartbeat
from .lesson import serve_lesson_master
from .slots import Holdings, Slot

log = logging.getLogger("mpcluster")

#: After the stop grace, how long slots get to hand back and acknowledge before the goodbye goes anyway.
AFTER_GRACE = 5.0


def default_worker_id(configured: str = "") -> str:
    """MPC_WORKER_ID if set; else the container's hostname (unique per replica); outside a container (not PID 1),
    hostname-pid so that several workers can share a host."""
    if configured:
        return configured
    host = socket.gethostname()
    return host if os.getpid() == 1 else f"{host}-{os.getpid()}"


def slot_kinds(processes: int) -> tuple[list[str] | None, list[str]]:
    """What thread slots and process slots lease: with process slots, CPU-bound kinds go to them and the rest to
    threads; without, threads take every kind (None)."""
    cpu = sorted(name for name, kind in kinds.KINDS.items() if kind.cpu)
    if processes == 0:
        return None, []
    return sorted(set(kinds.KINDS) - set(cpu)), cpu


class Worker:
    """One worker process: its slots, its heartbeat, its stop. Not to be confused with ``registry.WorkerState``,
    what the master knows of a worker."""

    def __init__(self, new_link: Callable[[], Link], worker_id: str, *, threads: int = 1, processes: int = 0,
                 batch_max: int = 1000, stop_grace: float = 5.0, heartbeat_seconds: float = 2.0,
                 tasks_dir: str = "tasks", task_modules: str | None = None):
        """``new_link`` makes an unopened link to the master (one per thread); ``heartbeat_seconds`` is only where
        it starts: the master's setting arrives with the first heartbeat reply."""
        self._new_link = new_link
        # The lesson's ThreadLocal idea: every thread (each slot's runner, the heartbeat, the main thread) keeps its
        # own connection to the master in a threading.local. No connection is shared, so no call needs a lock, and
        # one thread reconnecting after a lost master never pulls the connection from under another's call.
        self._local = threading.local()
        self.id, self.threads, self.processes = worker_id, threads, processes
        self.batch_max, self.stop_grace = batch_max, stop_grace
        self.heartbeat = Heartbeat(self, heartbeat_seconds)
        self.tasks_dir, self.task_modules = tasks_dir, task_modules
        self.stop = Stop()  # SIGTERM seen (or a slot cannot go on): no more leasing
        self.abort = threading.Event()  # classic fallback only: the grace is over, interrupt the task in hand
        self.leaving = threading.Event()  # saying goodbye: heartbeats (which keep leases alive) end here
        self.holdings = Holdings()  # what every slot holds: the heartbeats name these keys
        self.slots: list[Slot] = []
        self.ip, self.mode = "", ""
        self.fatal: BaseException | None = None
        self._kept: list[dict] = []  # results slots could not deliver on their way out
        self._kept_lock = threading.Lock()
        self.session = uuid.uuid4().hex  # tells the master a restarted container is a new process

    def link(self) -> Link:
        """This thread's own link to the master (made on first use)."""
        link = getattr(self._local, "link", None)
        if link is None:
            link = self._local.link = self._new_link()
        return link

    @property
    def done(self) -> int:
        return sum(s.done for s in self.slots)

    def info(self) -> dict:
        return {"session": self.session, "state": "stopping" if self.stop.is_set() else "alive", "ip": self.ip,
                "host": socket.gethostname(), "pid": os.getpid(), "python": platform.python_version(),
                "version": __version__, "mode": self.mode, "threads": self.threads, "processes": self.processes,
                "kinds": sorted(kinds.KINDS), "batch": max((s.batch for s in self.slots), default=1)}

    def fail(self, e: BaseException) -> None:
        """A slot cannot go on (e.g. the master now refuses our key): the whole worker stops."""
        self.fatal = self.fatal or e
        self.stop.set()

    def keep(self, results: list[dict]) -> None:
        with self._kept_lock:
            self._kept.extend(results)

    @property
    def signal_name(self) -> str:
        return self.stop.signal_name

    def install_signals(self) -> None:
        """SIGTERM and SIGINT stop the worker gracefully (``stopping.Stop``: the main thread sets the event)."""
        self.stop.install()

    # ---- the main thread -----------------------------------------------------------------------------------
    def run(self) -> int:
        link = self.link()
        if not link.open_with_retry(self.stop, f"worker {self.id}"):
            return 0
        self.ip, self.mode = link.ip, link.mode
        if link.mode == "classic":
            log.info("worker %s: connected to master at %s from %s (classic protocol)", self.id, link.where, link.ip)
            return self._serve_lesson(link)
        self.slots = self._make_slots()
        # The first heartbeat before saying anything: once these lines are out, the master knows what we offer.
        self.heartbeat.once(link, "introduce itself to")
        log.info("worker %s: connected to master at %s from %s (mpcluster protocol)", self.id, link.where,
                 link.ip or "?")
        log.info("worker %s: offers %s (threads %d, processes %d)", self.id, ", ".join(sorted(kinds.KINDS)),
                 self.threads, self.processes)
        self.heartbeat.start()
        for slot in self.slots:
            slot.thread.start()
        while not self.stop.wait_main(1.0):
            pass
        if self.fatal is None:
            log.info("worker %s: stopping (%s): finishing the tasks in hand, handing back the rest", self.id,
                     self.signal_name or "asked to")
        # Before any slot hands anything back: the master ends our long polls and grants us nothing more, so a task
        # one slot hands back is not leased again by another.
        try:
            self.heartbeat.once(link, "tell it is stopping to")
        except AuthFailed as e:  # the key changed under us: the slots find out too; the stop goes on
            log.warning("worker %s: %s", self.id, e)
        for slot in self.slots:
            slot.wake()
        self._drain_slots()
        code = self._leave()
        if isinstance(self.fatal, AuthFailed):
            raise self.fatal
        return 1 if self.fatal is not None else code

    def _serve_lesson(self, link: Link) -> int:
        """The lesson's loop on a thread of its own, so this (main) thread waits for the stop as in mpcluster mode;
        after the stop, the task in hand gets the stop grace, then ``abort`` ends it (handed back to the queue)."""
        codes: list[int] = []
        loop = threading.Thread(target=lambda: codes.append(serve_lesson_master(link, self.id, self.stop, self.abort)),
                                name="lesson", daemon=True)
        loop.start()
        while not self.stop.wait_main(1.0) and loop.is_alive():
            pass
        loop.join(self.stop_grace)
        self.abort.set()
        loop.join(AFTER_GRACE)
        return codes[0] if codes else 0

    def _make_slots(self) -> list[Slot]:
        thread_kinds, cpu_kinds = slot_kinds(self.processes)
        slots = [Slot(self, f"thread {i + 1}", ThreadExecutor(self.id, self.ip), thread_kinds)
                 for i in range(self.threads)]
        slots += [Slot(self, f"process {i + 1}",
                       ProcessExecutor(self.id, self.ip, self.tasks_dir, self.task_modules), cpu_kinds)
                  for i in range(self.processes)]
        return slots

    def _drain_slots(self) -> None:
        """Let the tasks in hand finish within the grace; then stop them (handed back) and wait a little more."""
        grace_end = time.monotonic() + self.stop_grace
        for slot in self.slots:
            slot.thread.join(max(0.0, grace_end - time.monotonic()))
        for slot in self.slots:
            slot.grace_over()
        end = time.monotonic() + AFTER_GRACE
        for slot in self.slots:
            slot.thread.join(max(0.0, end - time.monotonic()))
            if slot.thread.is_alive():
                log.warning("worker %s: %s did not finish in time; the goodbye hands back what it holds",
                            self.id, slot.name)

    def _leave(self) -> int:
        """Acknowledge what the slots could not, and say goodbye (which hands back anything still leased to this
        worker), trying briefly to reach the master if the link is down or it answers with an error."""
        link = self.link()
        with self._kept_lock:
            outbox, self._kept = self._kept, []
        # Results to deliver or leases to hand back are worth the whole grace; a goodbye alone, one second.
        deadline = time.monotonic() + (max(1.0, self.stop_grace) if outbox or self.holdings.keys() else 1.0)
        said_error = False
        while time.monotonic() < deadline:
            try:
                if link.dispatcher is None:
                    link.open()
                if outbox:
                    link.call("ack", self.id, outbox)
                    self.holdings.discard([(r["job"], r["id"]) for r in outbox])
                    outbox = []
                self.leaving.set()
                n = link.call("goodbye", self.id)
                log.info("worker %s: done %d tasks, handed back %s; bye", self.id, self.done, n)
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
            if link.dispatcher is not None:
                link.call("goodbye", self.id)  # hands back what we hold now, instead of waiting for expiry
        except Exception:  # the leases expire on the master instead
            pass
        return 0

def main(settings: WorkerSettings, new_link: Callable[[], Link]) -> int:
    worker_id = default_worker_id(settings.worker_id)
    tasks_dir = os.path.abspath(settings.tasks_dir)
    for problem in kinds.load_modules(tasks_dir, settings.task_modules or None):
        log.warning("worker %s: %s", worker_id, problem)
    worker = Worker(new_link, worker_id, threads=settings.threads, processes=settings.processes,
                    batch_max=settings.batch_max, stop_grace=settings.stop_grace, tasks_dir=tasks_dir,
                    task_modules=settings.task_modules or None)
    worker.install_signals()
    try:
        return worker.run()
    except AuthFailed as e:
        log.error("worker %s: %s", worker.id, e)
        return 2
