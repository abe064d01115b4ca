"""The master process: serves the lesson's two queues and the dispatcher on one port, runs the demo job, checks
itself for the health probe, serves the status page, and keeps serving until SIGTERM."""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
from multiprocessing.managers import BaseManager

from ..config import ConfigError, MasterSettings, read_authkey
from ..protocol import DISPATCHER, RESULT_QUEUE, TASK_QUEUE
from ..stopping import Stop
from .bridge import ClassicBridge, NotifyingQueue
from .demo import run_demo
from .dispatcher import Dispatcher
from .health import stamp_health
from .journal import Journal
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

    stop = Stop()
    stop.install()

    def reaper() -> None:
        while not stop.is_set():
            _dispatcher.expire()
            for line in _dispatcher.drain_events():
                log.info("%s", line)
            server.refused.flush()
            stop.wait(0.5)

    threading.Thread(target=reaper, name="reaper", daemon=True).start()
    if settings.health_file:
        threading.Thread(target=stamp_health, args=(settings.health_file, settings.port, key, _dispatcher, stop),
                         name="health", daemon=True).start()
    # A restored, unfinished demo job carries on by itself; otherwise every start shows the demo.
    demo = _dispatcher.newest_job("demo-")
    if settings.demo_tasks and not (demo and not demo["complete"]):
        threading.Thread(target=run_demo, args=(_dispatcher, settings.demo_tasks, stop), name="demo",
                         daemon=True).start()
    while not stop.wait_main(5.0):
        pass
    log.info("master stopping (%s)%s", stop.signal_name or "asked to",
             ": the journal keeps finished results" if journal else "")
    server.close()
    if page is not None:
        page.close()
    if journal is not None:
        journal.close()
    return 0
