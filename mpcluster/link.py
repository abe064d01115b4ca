"""The wire protocol: the lesson's manager typeids plus one for the mpcluster dispatcher, and the client-side
link that connects to a master, detects a plain classic master, and rebuilds itself after the master goes away.

Records on the wire are plain dicts, lists, strs and numbers, so any Python >= 3.8 on either end can read them.
The dispatcher's calls a worker makes (each a method on the ``get_dispatcher`` proxy):

``lease(worker, max_n, wait_s, info, kinds)`` -> [task, ...]
    Long-poll up to ``wait_s`` for up to ``max_n`` tasks of the ``kinds`` named (None: any kind). A task:
    ``{"job": str, "id": int, "kind": str, "args": str (a JSON object's text), "timeout": float | None,
    "attempt": int}`` (``attempt`` counts from 1; ``timeout`` is the job's per-task time limit in seconds).
``heartbeat(worker, info, keys)`` -> ``{"leases": int, "lease_seconds": float, "heartbeat_seconds": float,
    "cancel": [[job, id], ...]}``
    Renews the leases named in ``keys`` ([[job, id], ...]: the tasks the worker knows it holds, done or not, until
    acknowledged or handed back) and no others. ``cancel`` lists named keys whose job was cancelled: stop them
    and drop their results. The worker heartbeats every ``heartbeat_seconds`` (the master's setting).
``ack(worker, [result, ...])`` -> ``{"accepted": int, "dropped": int}``
    A result: ``{"job": str, "id": int, "ok": bool, "value": JSON value (ok), "error": {"type": str,
    "message": str, "traceback": str} (not ok), "elapsed": float, "ip": str}``.
``release(worker, [[job, id], ...])`` -> int: hand back tasks not started (a stopping worker).
``goodbye(worker)`` -> int: leaving; hands back whatever is still leased to it.

``info`` is what the worker says about itself: ``{"session": str (one per process), "state": "alive" |
"stopping", "ip", "host", "pid", "python", "version", "mode", "threads": int, "processes": int,
"kinds": [str, ...], "batch": int}``. A heartbeat with ``"state": "stopping"`` also ends the worker's long
polls at once.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import threading
import time
from contextlib import contextmanager
from multiprocessing import AuthenticationError, connection
from multiprocessing.managers import BaseManager, RemoteError

TASK_QUEUE = "get_task_queue"
RESULT_QUEUE = "get_result_queue"
DISPATCHER = "get_dispatcher"
CLASSIC_JOB = "classic"  # job name of tasks drained from the lesson's task queue

# One rule for every name that travels: job ids and worker ids (a hostname, or hostname-pid outside a container).
ID_RULE = "1-128 letters, digits, '.', '_' or '-'"
_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None

log = logging.getLogger("mpcluster")


class ClusterManager(BaseManager):
    """Client side: the lesson's two typeids plus the dispatcher (absent on a plain classic master)."""


ClusterManager.register(TASK_QUEUE)
ClusterManager.register(RESULT_QUEUE)
ClusterManager.register(DISPATCHER)


class AuthFailed(Exception):
    """The master refused our key (or we refused its): not worth retrying."""


class Unreachable(Exception):
    """The master could not be reached or went away; the link can be reopened."""


@contextmanager
def _socket_of(fd: int):
    """A socket object over a Connection's fd (a dup, so closing it leaves the Connection alone)."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        yield sock
    finally:
        sock.close()


def set_socket_timeouts(fd: int, seconds: float) -> None:
    """Bound blocking reads/writes on a Connection's fd (0 = block forever), keeping it in blocking mode.

    multiprocessing.connection reads with os.read on the raw fd, so socket.settimeout (non-blocking mode) would
    break it; SO_RCVTIMEO/SO_SNDTIMEO make a stuck read fail with EAGAIN instead.
    """
    whole = int(seconds)
    tv = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    with _socket_of(fd) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def prove_key(conn: connection.Connection, authkey: bytes, timeout: float) -> None:
    """The manager's handshake from the client's side, bounded by ``timeout``: we prove we hold the key, then the
    server proves it does. Raises AuthenticationError (a key refused), or EOFError / OSError / TimeoutError."""
    set_socket_timeouts(conn.fileno(), timeout)
    connection.answer_challenge(conn, authkey)
    connection.deliver_challenge(conn, authkey)


def set_keepalive(fd: int, idle: int = 20, interval: int = 5, count: int = 3) -> None:
    """Let the kernel notice a peer that vanished without closing (cable cut, SIGKILLed host)."""
    with _socket_of(fd) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def local_ip(fd: int) -> str:
    with _socket_of(fd) as sock:
        return sock.getsockname()[0]


def peer_address(fd: int) -> str:
    """host:port of the other end, or "?" if it is already gone."""
    try:
        with _socket_of(fd) as sock:
            host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


FAST_RETRY_S = 3.0  # Link.open_with_retry: how long to retry every 0.2 s before backing off


class Link:
    """One client's connection to a master: manager, proxies, call timeouts, reconnection with backoff.

    Proxies never reconnect by themselves (CPython gh-87495), so after any connection error the whole manager
    and its proxies are dropped and rebuilt by ``reopen``.
    """

    def __init__(self, host: str, port: int, authkey: bytes, call_timeout: float = 30.0):
        self.host, self.port, self._key = host, port, authkey
        self.call_timeout = call_timeout
        self.manager: ClusterManager | None = None
        self.dispatcher = None
        self.mode = ""  # "mpcluster" or "classic" once open
        self.ip = ""
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def open(self) -> None:
        """Connect once; raises AuthFailed (wrong key) or Unreachable."""
        manager = ClusterManager(address=(self.host, self.port), authkey=self._key)
        try:
            manager.connect()
        except AuthenticationError:
            raise AuthFailed(
                f"the authkey did not match the master's at {self.where}: use the same key file on every node "
                "(MPC_AUTHKEY_FILE / --authkey-file)"
            ) from None
        except (OSError, EOFError) as e:
            raise Unreachable(_reason(e)) from None
        try:
            dispatcher = getattr(manager, DISPATCHER)()
            mode = "mpcluster"
        except RemoteError as e:
            if DISPATCHER not in str(e):
                raise Unreachable(f"master refused {DISPATCHER}: {str(e).strip().splitlines()[-1]}") from None
            dispatcher, mode = None, "classic"  # a plain lesson master: only the two queues
        except (OSError, EOFError) as e:
            raise Unreachable(_reason(e)) from None
        with self._lock:
            self.manager, self.dispatcher, self.mode = manager, dispatcher, mode
        if dispatcher is not None:
            self._prepare_thread()

    def open_with_retry(self, stop: threading.Event, role: str, deadline: float | None = None) -> bool:
        """Keep trying: every 0.2 s for the first FAST_RETRY_S seconds (a master starting next to us answers
        within them, and each tenth of a second counts in `make up`), then with backoff doubling to 10 s. The
        first line comes when the quick tries run out, then one every 10 s.
        Returns False if ``stop`` was set or ``deadline`` (time.monotonic) passed; raises AuthFailed at once.
        """
        started, delay, attempt, last_said = time.monotonic(), 0.2, 0, 0.0
        while not stop.is_set():
            attempt += 1
            try:
                self.open()
                if attempt > 1:
                    log.info("%s: connected to master at %s after %d attempts", role, self.where, attempt)
                return True
            except Unreachable as e:
                now = time.monotonic()
                if now - started >= FAST_RETRY_S:
                    delay = min(delay * 2, 10.0)
                    if not last_said or now - last_said >= 10:
                        log.warning("%s: cannot reach master at %s (%s); retrying (attempt %d, next in %.1f s)",
                                    role, self.where, e, attempt, delay)
                        last_said = now
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            stop.wait(delay)
        return False

    def close(self) -> None:
        with self._lock:
            self.manager = self.dispatcher = None

    def _prepare_thread(self) -> None:
        """Open this thread's proxy connection now, so its reads can be bounded and its address known."""
        proxy = self.dispatcher
        if proxy is None:
            raise Unreachable("not connected")
        if getattr(proxy._tls, "connection", None) is None:
            try:
                proxy._connect()
            except AuthenticationError:
                raise AuthFailed(f"the authkey did not match the master's at {self.where}") from None
            fd = proxy._tls.connection.fileno()
            set_socket_timeouts(fd, self.call_timeout)
            set_keepalive(fd)
            self.ip = self.ip or local_ip(fd)

    def call(self, method: str, *args):
        """Call a dispatcher method; connection trouble becomes Unreachable (and the link is dropped)."""
        proxy = self.dispatcher
        if proxy is None:
            raise Unreachable("not connected")
        try:
            self._prepare_thread()
            return getattr(proxy, method)(*args)
        except (OSError, EOFError) as e:
            if self.dispatcher is proxy:
                self.close()
            raise Unreachable(_reason(e)) from None


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.gaierror):
        return f"name not resolved: {e.strerror or e}"
    if isinstance(e, BlockingIOError):
        return "no answer within the call timeout"
    if isinstance(e, EOFError):
        return "connection closed by the master"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
