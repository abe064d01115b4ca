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

from ..sockets import peer_address, set_keepalive, set_socket_timeouts

log = logging.getLogger("mpcluster")

# Peers that have connected but not yet proved they hold the key. Each holds a thread for at most the
# handshake timeout; past this many, new connections are closed at once (and logged) until some finish.
MAX_PENDING_HANDSHAKES = 1000


class RateLimitedLog:
    """At most one line per peer address per ``every`` seconds; the rest are counted into the next line."""

    def __init__(self, every: float = 10.0, clock=time.monotonic):
        self.every, self._clock = every, clock
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, peer: str, message: str) -> bool:
        host = peer.rsplit(":", 1)[0]
        with self._lock:
            now = self._clock()
            last, suppressed, _ = self._seen.get(host, (-1e18, 0, ""))
            if now - last < self.every:
                self._seen[host] = (last, suppressed + 1, message)
                return False
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[host] = (now, 0, message)
        more = f" ({suppressed} more from {host} not shown)" if suppressed else ""
        log.warning("refused connection from %s: %s%s", peer, message, more)
        return True

    def flush(self) -> None:
        """Report what was held back once its window is over, so a burst is never silent."""
        with self._lock:
            now = self._clock()
            due = [(h, n, m) for h, (last, n, m) in self._seen.items() if n and now - last >= self.every]
            for host, _, _ in due:
                self._seen[host] = (now, 0, "")
        for host, n, message in due:
            log.warning("refused %d more connections from %s in the last %g s (latest: %s)", n, host, self.every,
                        message)


class MasterServer(Server):
    def __init__(self, registry, address, authkey, serializer="pickle", handshake_timeout: float = 10.0):
        super().__init__(registry, address, authkey, serializer)
        self.handshake_timeout = handshake_timeout
        self.stop_event = threading.Event()
        self.refused = RateLimitedLog()
        self._pending = threading.BoundedSemaphore(MAX_PENDING_HANDSHAKES)
        try:  # the stdlib listens with a backlog of 16: a burst of 50 workers would see SYN drops
            self.listener._listener._socket.listen(1024)
        except (AttributeError, OSError):
            pass

    def accepter(self) -> None:
        """Accept connections; each handshake gets a thread, up to MAX_PENDING_HANDSHAKES at once.

        Unlike the stdlib's loop this one survives a failed thread start (pids limit) instead of dying, which
        would leave the master deaf for good, and it ends when the server is closed instead of spinning.
        """
        while not self.stop_event.is_set():
            try:
                c = self.listener.accept()
            except OSError:
                continue
            if not self._pending.acquire(blocking=False):
                self.refused(peer_address(c.fileno()), f"more than {MAX_PENDING_HANDSHAKES} connections are still in their handshake")
                c.close()
                continue
            try:
                threading.Thread(target=self.handle_request, args=(c,), daemon=True).start()
            except RuntimeError as e:  # can't start new thread
                self._pending.release()
                self.refused(peer_address(c.fileno()), f"no thread to serve it ({e})")
                c.close()

    def start(self) -> None:
        """Serve in background threads (the caller keeps its main thread for signals and the demo job)."""
        current_process()._manager_server = self
        threading.Thread(target=self.accepter, name="accepter", daemon=True).start()

    def close(self) -> None:
        self.stop_event.set()
        try:
            self.listener.close()
        except OSError:
            pass

    def handle_request(self, conn) -> None:
        peer = peer_address(conn.fileno())
        pending = True
        try:
            set_socket_timeouts(conn.fileno(), self.handshake_timeout)
            try:
                connection.deliver_challenge(conn, self.authkey)
                connection.answer_challenge(conn, self.authkey)
                self._pending.release()
                pending = False
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
            if pending:
                self._pending.release()
            conn.close()

    def _serve_request(self, c, request) -> None:
        """What Server._handle_request does after the challenge, but for one stdlib race (see accept_connection)."""
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
                if funcname == "accept_connection":
                    # It answered for itself and served the connection until the server stopped. The stdlib sends
                    # ('#RETURN', None) here, which the client reads as the answer to its next call (a stopping
                    # master answered a job's `results` with None); closing the connection says "gone" instead.
                    return
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
