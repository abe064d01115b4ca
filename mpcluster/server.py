"""The master's manager server: the standard library's, with the handshake hardened.

``multiprocessing.managers.Server`` gives every accepted connection a thread and runs the authkey challenge
there with no timeout, so a peer that connects and never speaks pins a thread forever, and refused handshakes
are silent. Here the challenge runs under a deadline, refusals are logged (rate-limited, with the peer address),
served connections get TCP keepalive, and the listen backlog is raised so a burst of workers all get in.
Nothing is unpickled before the peer has proved it holds the key.
"""

from __future__ import annotations

import logging
import threading
import time
from multiprocessing import connection, util
from multiprocessing.managers import Server
from multiprocessing.process import current_process
from traceback import format_exc

from .protocol import set_keepalive, set_socket_timeouts

log = logging.getLogger("mpcluster")


class RateLimitedLog:
    """At most one line per peer address per ``every`` seconds; the rest are counted into the next line."""

    def __init__(self, every: float = 10.0, clock=time.monotonic):
        self.every, self._clock = every, clock
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self.total = 0

    def __call__(self, peer: str, message: str) -> bool:
        host = peer.rsplit(":", 1)[0]
        with self._lock:
            self.total += 1
            now = self._clock()
            last, suppressed = self._seen.get(host, (-1e18, 0))
            if now - last < self.every:
                self._seen[host] = (last, suppressed + 1)
                return False
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[host] = (now, 0)
        more = f" ({suppressed} more from {host} not shown)" if suppressed else ""
        log.warning("refused connection from %s: %s%s", peer, message, more)
        return True


def _peer(conn) -> str:
    import os
    import socket

    try:
        s = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            host, port = s.getpeername()[:2]
        finally:
            s.close()
        return f"{host}:{port}"
    except OSError:
        return "?"


class MasterServer(Server):
    def __init__(self, registry, address, authkey, serializer="pickle", handshake_timeout: float = 10.0):
        super().__init__(registry, address, authkey, serializer)
        self.handshake_timeout = handshake_timeout
        self.refused = RateLimitedLog()
        try:  # the stdlib listens with a backlog of 16: a burst of 50 workers would see SYN drops
            self.listener._listener._socket.listen(1024)
        except (AttributeError, OSError):
            pass

    def start(self) -> None:
        """Serve in background threads (the caller keeps its main thread for signals and the demo job)."""
        current_process()._manager_server = self
        self.stop_event = threading.Event()
        threading.Thread(target=self.accepter, name="accepter", daemon=True).start()

    def close(self) -> None:
        self.stop_event.set()
        try:
            self.listener.close()
        except OSError:
            pass

    def handle_request(self, conn) -> None:
        peer = _peer(conn)
        try:
            set_socket_timeouts(conn.fileno(), self.handshake_timeout)
            try:
                connection.deliver_challenge(conn, self.authkey)
                connection.answer_challenge(conn, self.authkey)
            except connection.AuthenticationError:
                self.refused(peer, "wrong authkey")
                return
            except BlockingIOError:
                self.refused(peer, f"no handshake within {self.handshake_timeout:g} s")
                return
            except EOFError:
                self.refused(peer, "closed before completing the handshake")
                return
            except Exception as e:  # garbage: bad lengths, wrong protocol, resets
                self.refused(peer, f"not a manager handshake ({type(e).__name__}: {str(e)[:80]})")
                return
            try:
                request = conn.recv()  # authenticated from here on: the peer holds the key
            except Exception:
                return
            set_socket_timeouts(conn.fileno(), 0)  # served connections may idle between calls
            set_keepalive(conn.fileno())
            self._serve_request(conn, request)
        except SystemExit:
            pass  # Server.serve_client() calls sys.exit(0) on EOF
        except OSError:
            pass
        finally:
            conn.close()

    def _serve_request(self, c, request) -> None:
        """What Server._handle_request does after the challenge (kept equivalent to the stdlib's)."""
        try:
            ignore, funcname, args, kwds = request
            assert funcname in self.public, f"{funcname!r} unrecognized"
            func = getattr(self, funcname)
        except Exception:
            msg = ("#TRACEBACK", format_exc())
        else:
            try:
                result = func(c, *args, **kwds)
            except Exception:
                msg = ("#TRACEBACK", format_exc())
            else:
                msg = ("#RETURN", result)
        try:
            c.send(msg)
        except Exception as e:
            try:
                c.send(("#TRACEBACK", format_exc()))
            except Exception:
                pass
            util.info("Failure to send message: %r", msg)
            util.info(" ... exception was %r", e)
