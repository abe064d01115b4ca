"""The client side of a connection to a master (a worker's, a client's, the doctor's): the manager with the
lesson's two typeids and the dispatcher's, call timeouts, detecting a plain classic master, and rebuilding the
whole connection after the master goes away.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.managers import BaseManager, RemoteError

from .protocol import DISPATCHER, RESULT_QUEUE, TASK_QUEUE, AuthFailed, Unreachable
from .sockets import local_ip, set_keepalive, set_socket_timeouts

log = logging.getLogger("mpcluster")


class ClusterManager(BaseManager):
    """Client side: the lesson's two typeids plus the dispatcher (absent on a plain classic master)."""


ClusterManager.register(TASK_QUEUE)
ClusterManager.register(RESULT_QUEUE)
ClusterManager.register(DISPATCHER)


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
