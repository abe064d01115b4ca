"""The master: serves the lesson's two queues and the dispatcher on one port, runs the demo job, keeps serving."""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import signal
import socket
import sqlite3
import threading
import uuid
from multiprocessing import AuthenticationError, connection
from multiprocessing.managers import BaseManager
from pathlib import Path

from .classic import ClassicBridge, NotifyingQueue
from .config import ConfigError, MasterSettings, read_authkey
from .dispatcher import Dispatcher
from .journal import Journal
from .protocol import DISPATCHER, RESULT_QUEUE, TASK_QUEUE, prove_key
from .server import MasterServer
from .web import serve_page

log = logging.getLogger("mpcluster")

# Module-level objects and functions (not lambdas): the registry must stay picklable under spawn/forkserver.
_task_queue: queue.Queue = NotifyingQueue()
_result_queue: queue.Queue = queue.Queue()
_dispatcher: Dispatcher | None = None


def get_task_queue() -> queue.Queue:
    return _task_queue


def get_result_queue() -> queue.Queue:
    return _result_queue


def get_dispatcher() -> Dispatcher:
    return _dispatcher


class MasterManager(BaseManager):
    """Server side of protocol.ClusterManager, served by our hardened server (the way CPython's own
    SharedMemoryManager plugs in SharedMemoryServer)."""

    _Server = MasterServer

    def get_server(self) -> MasterServer:
        # As SharedMemoryManager does: the stdlib's get_server() builds a plain Server, whatever _Server says.
        return self._Server(self._registry, self._address, self._authkey, self._serializer)


MasterManager.register(TASK_QUEUE, callable=get_task_queue)
MasterManager.register(RESULT_QUEUE, callable=get_result_queue)
MasterManager.register(DISPATCHER, callable=get_dispatcher)


def run_demo(dispatcher: Dispatcher, n_tasks: int, stop: threading.Event) -> None:
    """The lesson's job, in its words: random ints squared after 1 s of simulated work, plus who did each."""
    numbers = [random.randint(0, 10000) for _ in range(n_tasks)]
    for n in numbers:
        log.info("Put task %d...", n)
    job_id = "demo-" + uuid.uuid4().hex[:8]
    dispatcher.submit({"id": job_id, "kind": "square", "tasks": [{"n": n, "seconds": 1.0} for n in numbers]})
    log.info("Try get results...")
    cursor, summary = 0, None
    while not stop.is_set():  # a long poll of up to 1 s per round, so a stopping master is not held up
        cursor, chunk, summary = dispatcher.results(job_id, cursor, 1.0)
        for r in map(json.loads, chunk):
            n = numbers[r["id"]]
            if r["ok"]:
                log.info("Result: %d * %d = %d  (worker %s at %s)", n, n, r["value"], r["worker"], r["ip"])
            else:
                log.info("Result: task %d failed: %s  (worker %s at %s)", n, r["error"]["message"], r["worker"],
                         r["ip"])
        if summary["state"] != "running":
            break
    if summary and summary["complete"]:
        per = ", ".join(f"{w}={c}" for w, c in sorted(summary["workers"].items()))
        log.info("Demo job %s done: %d/%d results in %.1f s from %d workers (%s); redeliveries %d",
                 job_id, summary["done"], summary["tasks"], summary["seconds"], len(summary["workers"]), per,
                 summary["redeliveries"])


HEALTH_EVERY = 2.0  # seconds between the master's checks of itself


def check_health(port: int, key: bytes, dispatcher: Dispatcher, timeout: float = 5.0) -> str | None:
    """What a worker's first steps need, checked from inside the master: a new connection on its own port (the
    accept loop lives), the full authkey handshake both ways, one request served (the manager's ``dummy``, what
    ``BaseManager.connect`` sends first), and the dispatcher's lock free within ``timeout``. None when all
    passed, else why not. One connection, not a client Link's several (a proxy opens its own): about a tenth of
    the CPU, which matters every HEALTH_EVERY seconds on an idle master."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.setblocking(True)  # multiprocessing reads the raw fd: blocking, bounded by SO_RCVTIMEO instead
            conn = connection.Connection(sock.detach())
        try:
            prove_key(conn, key, timeout)
            conn.send((None, "dummy", (), {}))
            kind, _ = conn.recv()
        finally:
            conn.close()
    except AuthenticationError:
        return "the master refused its own key"
    except (EOFError, OSError) as e:  # refused, reset, or a read that timed out
        return f"its own port did not serve a request ({type(e).__name__}: {e})"
    if kind != "#RETURN":
        return f"its own port answered {kind!r} to the manager's first request"
    if not dispatcher.responsive(timeout):
        return f"the dispatcher's lock stayed taken for {timeout:g} s"
    return None


def stamp_health(path: str, port: int, key: bytes, dispatcher: Dispatcher, stop: threading.Event) -> None:
    """The container's health check, made cheap: a probe that starts an interpreter each time costs the master's
    container about 0.3 s of CPU, so the master checks itself every HEALTH_EVERY seconds, and after each check
    that passes touches ``path``; the image's HEALTHCHECK only asks how old that file is. A master whose accept
    loop or dispatcher stops answering stops touching it, and turns unhealthy within seconds."""
    said = False  # one warning per run of failures
    while not stop.is_set():
        why = check_health(port, key, dispatcher)
        if why is None:
            said = False
            try:
                Path(path).touch()
            except OSError as e:
                log.warning("health: cannot write %s (%s)", path, e)
        elif not said:
            said = True
            log.warning("health: the master's check of itself failed: %s", why)
        stop.wait(HEALTH_EVERY)


def main(settings: MasterSettings) -> int:
    global _dispatcher
    key = read_authkey(settings.authkey_file)
    journal = None
    if settings.journal:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(settings.journal)), exist_ok=True)
            journal = Journal(settings.journal)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"MPC_JOURNAL={settings.journal!r} cannot be opened ({e}): expected a writable file "
                              "path (in the containers, the journal volume)") from None
    _dispatcher = Dispatcher(settings.lease_seconds, settings.heartbeat_seconds, journal,
                             ClassicBridge(_task_queue, _result_queue))
    server = MasterManager(address=("", settings.port), authkey=key).get_server()
    server.handshake_timeout = settings.handshake_timeout
    server.start()
    log.info("master listening on 0.0.0.0:%d (lease %gs, heartbeat %gs, handshake timeout %gs, journal %s)",
             settings.port, settings.lease_seconds, settings.heartbeat_seconds, settings.handshake_timeout,
             settings.journal or "off")
    if journal is not None and journal.moved_aside:
        log.warning("the journal at %s was written by another version of mpcluster: moved aside to %s, starting "
                    "with no jobs", settings.journal, journal.moved_aside)
    page = serve_page(settings.web_port, _dispatcher.status)
    if _dispatcher.master_restarts:
        log.info("master restarted (start %d): job state restored from the journal", _dispatcher.master_restarts + 1)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def reaper() -> None:
        while not stop.is_set():
            _dispatcher.expire()
            for line in _dispatcher.drain_events():
                log.info("%s", line)
            server.refused.flush()
            stop.wait(0.5)

    threading.Thread(target=reaper, name="reaper", daemon=True).start()
    if settings.health_file:
        threading.Thread(target=stamp_health, args=(settings.health_file, settings.port, key, _dispatcher, stop), name="health",
                         daemon=True).start()
    # A restored, unfinished demo job carries on by itself; otherwise every start shows the demo.
    demo = _dispatcher.newest_job("demo-")
    if settings.demo_tasks and not (demo and not demo["complete"]):
        threading.Thread(target=run_demo, args=(_dispatcher, settings.demo_tasks, stop), name="demo",
                         daemon=True).start()
    while not stop.wait(1.0):
        pass
    log.info("master stopping (SIGTERM): the journal keeps finished results" if journal else "master stopping")
    server.close()
    if page is not None:
        page.close()
    if journal is not None:
        journal.close()
    return 0
