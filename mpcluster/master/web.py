"""The status page: a read-only view of the cluster, served by the master on its own port (``MPC_WEB_PORT``).

Standard library only (``http.server``). What it promises, and how:

- **Read-only.** GET and HEAD; any other method is 405 with ``Allow: GET, HEAD``. It writes nothing and shows
  only what ``Dispatcher.status()`` returns (``GET /api/status`` is the same JSON as ``status --json``): no key,
  no task arguments, no results.
- **Bounded.** One request per connection (HTTP/1.0). Its head is read under a byte budget (``MAX_HEAD_BYTES``)
  and one deadline for the whole head (``HEAD_SECONDS``), not a per-read timeout, so a slow-loris trickle of one
  byte a second is cut off like an idle peer. At most ``MAX_CONNECTIONS`` are served at once (each holds a
  thread); the reply is written under a timeout too.
- **Off the hot path.** ``status()`` takes the dispatcher's lock and costs O(workers + 20 jobs + 100 events).
  All viewers share one snapshot at most ``SNAPSHOT_SECONDS`` old, so ten open tabs polling every second cost the
  dispatcher what one does: at most two calls a second.
- **Self-contained.** The page, its script and its style are package files (``mpcluster/master/static/``) read once at
  start. The Content-Security-Policy allows this origin only and no inline script or style, so the page works
  with no network and nothing can be injected into it; worker-supplied text is rendered with ``textContent``.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

log = logging.getLogger("mpcluster")

#: A request's line and headers, in bytes: a browser's GET is well under 2 kB.
MAX_HEAD_BYTES = 16 * 1024
MAX_LINE = 4096
#: The whole head must arrive within this long, however it trickles in.
HEAD_SECONDS = 5.0
#: Writing a reply to a peer that does not read gives up after this long.
REPLY_SECONDS = 10.0
#: Connections served at once; past this, new ones are closed at once until some finish.
MAX_CONNECTIONS = 32
#: Viewers share one status snapshot at most this old (the page polls every second).
SNAPSHOT_SECONDS = 0.5

# (URL path, file in mpcluster/static, Content-Type, Cache-Control)
_FILES = (
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/app.js", "app.js", "text/javascript; charset=utf-8"),
    ("/style.css", "style.css", "text/css; charset=utf-8"),
)
API = "/api/status"
ALLOWED = "GET, HEAD"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)


def load_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: URL path -> (bytes, Content-Type)."""
    static = resources.files("mpcluster.master") / "static"
    return {path: (static.joinpath(name).read_bytes(), ctype) for path, name, ctype in _FILES}


class Snapshot:
    """``fetch()`` as JSON bytes, shared by every request for ``max_age`` seconds (one caller at a time fetches)."""

    def __init__(self, fetch: Callable[[], dict], max_age: float = SNAPSHOT_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self._fetch, self._max_age, self._clock = fetch, max_age, clock
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._at = 0.0

    def get(self) -> bytes:
        with self._lock:
            now = self._clock()
            if self._body is None or now - self._at >= self._max_age:
                self._body = json.dumps(self._fetch()).encode()
                self._at = now
            return self._body


class _HeadTooLarge(Exception):
    pass


class _HeadReader(io.RawIOBase):
    """The socket as the request head's reader: at most ``budget`` bytes, all within one deadline."""

    def __init__(self, sock: socket.socket, budget: int, seconds: float):
        self._sock, self._left, self._deadline = sock, budget, time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self._left <= 0:
            raise _HeadTooLarge
        wait = self._deadline - time.monotonic()
        if wait <= 0:
            raise TimeoutError("the request head did not arrive in time")
        self._sock.settimeout(wait)
        n = self._sock.recv_into(buf, min(len(buf), self._left))
        self._left -= n
        return n


class PageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: every bound above is per request
    default_request_version = "HTTP/1.0"  # so even an answer to garbage has a status line
    server: PageServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's unbounded reader, replaced by the budgeted one
        self.rfile = io.BufferedReader(_HeadReader(self.connection, MAX_HEAD_BYTES, self.server.head_seconds), 2048)

    def handle(self) -> None:
        self.handle_one_request()

    def handle_one_request(self) -> None:
        # What send_error and the log need, set before anything can fail.
        self.command, self.request_version, self.requestline, self.close_connection = None, "HTTP/1.0", "", True
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            if not self.raw_requestline:
                return
            if len(self.raw_requestline) > MAX_LINE:
                self.connection.settimeout(REPLY_SECONDS)
                self.send_error(414)
                return
            if not self.parse_request():  # reads the headers through the budget; answers 400/431/505 itself
                return
            self.connection.settimeout(REPLY_SECONDS)
            if self.command in ("GET", "HEAD"):
                self._serve(urlsplit(self.path).path)
            else:
                self._reply(405, b"405 method not allowed: this page is read-only (GET, HEAD)\n",
                            headers=(("Allow", ALLOWED),))
        except _HeadTooLarge:
            self.connection.settimeout(REPLY_SECONDS)
            self.send_error(431)
        except TimeoutError:
            self.connection.settimeout(1.0)
            self._quietly(self.send_error, 408)
        except OSError:
            pass  # the peer went away

    def _serve(self, path: str) -> None:
        if path == API:
            try:
                body = self.server.snapshot.get()
            except Exception as e:  # never a traceback to the browser
                log.warning("status page: status() failed: %s: %s", type(e).__name__, e)
                self._reply(503, b"503 the master could not produce its status\n")
                return
            self._reply(200, body, "application/json", (("Cache-Control", "no-store"),))
        elif path in self.server.files or path == "/index.html":
            body, ctype = self.server.files["/" if path == "/index.html" else path]
            self._reply(200, body, ctype, (("Cache-Control", "no-cache"),))
        else:
            self._reply(404, b"404 not found: this page serves /, /app.js, /style.css and /api/status\n")

    def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8", headers=()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*SECURITY_HEADERS, *headers):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error the stdlib would answer (400, 414, 431, 505...) in plain text with our headers."""
        self._reply(code, f"{code} {message or self.responses.get(code, ('error',))[0]}\n".encode())

    @staticmethod
    def _quietly(fn, *args) -> None:
        try:
            fn(*args)
        except OSError:
            pass

    def version_string(self) -> str:
        return "mpcluster"

    def log_message(self, format: str, *args) -> None:
        log.debug("status page: %s %s", self.address_string(), format % args)


class PageServer(ThreadingHTTPServer):
    """The page's HTTP server: a thread per connection, at most ``max_connections`` at once."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], status: Callable[[], dict], *, head_seconds: float = HEAD_SECONDS,
                 max_connections: int = MAX_CONNECTIONS, snapshot_seconds: float = SNAPSHOT_SECONDS):
        self.files = load_files()
        self.snapshot = Snapshot(status, snapshot_seconds)
        self.head_seconds = head_seconds
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, PageHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() looks up the host's FQDN, which can stall on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def port(self) -> int:
        return self.server_address[1]

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed at once, not queued behind slow peers
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread to serve it (pids limit)
            self._slots.release()
            self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        log.debug("status page: error serving %s", client_address, exc_info=True)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def serve_page(port: int, status: Callable[[], dict], host: str = "") -> PageServer | None:
    """Serve the status page on ``host:port`` (all interfaces by default) in a thread.

    Returns None when ``port`` is 0 (no page) or cannot be bound: the page is a view, so a busy port costs the
    page (one warning line), never the master's queues.
    """
    if not port:
        log.info("status page off (MPC_WEB_PORT=0)")
        return None
    try:
        server = PageServer((host, port), status)
    except OSError as e:
        log.warning("status page not served: cannot listen on port %d (%s); set MPC_WEB_PORT to a free port, "
                    "or 0 for no page", port, e.strerror or e)
        return None
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="status-page",
                     daemon=True).start()
    log.info("status page listening on %s:%d (read-only: GET / and GET %s)", host or "0.0.0.0", server.port, API)
    return server
