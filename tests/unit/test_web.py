"""The status page's HTTP server against a real socket on 127.0.0.1, fed by a real dispatcher on a fixed clock."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time

import pytest

from mpcluster.config import ConfigError, MasterSettings
from mpcluster.master.dispatcher import Dispatcher
from mpcluster.master.web import CSP, PageServer, Snapshot, serve_page
from tests.support import wait_until


@pytest.fixture
def dispatcher():
    d = Dispatcher(lease_seconds=10, heartbeat_seconds=2, clock=lambda: 1000.0)
    d.submit({"id": "j1", "kind": "square", "tasks": [{"n": i, "seconds": 0} for i in range(3)]})
    d.heartbeat("w1", {"ip": "10.0.0.7", "python": "3.12.1", "session": "s1"})
    [task] = d.lease("w1", 1)
    d.ack("w1", [{"job": task["job"], "id": task["id"], "ok": True, "value": 0, "worker": "w1", "ip": "10.0.0.7"}])
    return d


def start(status, **kw) -> PageServer:
    """A page server on a free port of 127.0.0.1, in its own thread (serve_page() is the master's way)."""
    server = PageServer(("127.0.0.1", 0), status, **kw)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def web(dispatcher):
    server = start(dispatcher.status)
    yield server
    server.close()


def get(server, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def raw(server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are; read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_the_page_and_its_files_are_served_with_a_strict_policy(web):
    status, headers, body = get(web, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "http" not in CSP  # this origin only, no inline code
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    html = body.decode()
    assert '<script src="/app.js" defer></script>' in html and '<link rel="stylesheet" href="/style.css">' in html
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []  # no inline script: the policy would block it
    assert " style=" not in html and "<style" not in html
    for path, ctype in (("/app.js", "text/javascript; charset=utf-8"), ("/style.css", "text/css; charset=utf-8")):
        status, headers, body = get(web, path)
        assert (status, headers["content-type"]) == (200, ctype) and len(body) > 1000
        # nothing fetched from elsewhere: the only absolute URL is the SVG namespace, which is a name, not a fetch
        assert re.findall(rb"https?://[^'\s]+", body) in ([], [b"http://www.w3.org/2000/svg"])
    assert get(web, "/index.html")[2] == get(web, "/")[2]


def test_api_status_is_the_dispatchers_status(web, dispatcher):
    status, headers, body = get(web, "/api/status?t=1")
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    got = json.loads(body)
    assert got == json.loads(json.dumps(dispatcher.status()))  # the same JSON as `status --json`
    assert [w["id"] for w in got["workers"]] == ["w1"] and got["workers"][0]["done"] == 1
    assert [(j["job"], j["done"], j["tasks"]) for j in got["jobs"]] == [("j1", 1, 3)]


def test_head_gives_the_headers_and_no_body(web):
    for path in ("/", "/api/status", "/app.js"):
        g_status, g_headers, g_body = get(web, path)
        h_status, h_headers, h_body = get(web, path, "HEAD")
        assert (h_status, h_body) == (200, b"")
        assert h_headers["content-length"] == str(len(g_body)) and h_headers["content-type"] == g_headers["content-type"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_every_other_method_is_refused_with_405_and_allow(web, dispatcher, method):
    before = dispatcher.status()
    answer = raw(web, f"{method} /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    head = answer.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.0 405 ")
    assert "\r\nAllow: GET, HEAD" in head and "\r\nX-Content-Type-Options: nosniff" in head
    assert dispatcher.status() == before  # it changed nothing


@pytest.mark.parametrize("path", ["/nope", "/../../etc/passwd", "/static/app.js", "/api/status/x", "/api", "/%2e%2e/"])
def test_anything_else_is_404(web, path):
    status, headers, body = get(web, path)
    assert status == 404 and b"404 not found" in body and headers["x-content-type-options"] == "nosniff"


def test_oversized_requests_are_refused(web):
    assert raw(web, b"GET /" + b"a" * 5000 + b" HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 414 ")
    # headers past the 16 kB budget, each line well under the stdlib's own limit
    big = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 900) for i in range(30))
    assert raw(web, b"GET / HTTP/1.0\r\n" + big + b"\r\n").startswith(b"HTTP/1.0 431 ")
    many = b"".join(b"X-%d: b\r\n" % i for i in range(150))  # more headers than the stdlib takes
    assert raw(web, b"GET / HTTP/1.0\r\n" + many + b"\r\n").startswith(b"HTTP/1.0 431 ")
    assert raw(web, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").startswith(b"HTTP/1.0 400 ")


def test_a_slow_loris_is_cut_off_at_the_head_deadline_however_it_trickles(dispatcher):
    server = start(dispatcher.status, head_seconds=1.0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\nX-a: ")
            started = time.monotonic()
            answer, cut_off = b"", False
            # one header byte every 0.2 s, for 10 s, and never the blank line that ends the head: each read is
            # quick, so only a deadline for the whole head stops it before the trickle runs out
            for i in range(50):
                try:
                    s.sendall(b"b" if i % 10 else b"\r\nX-b: ")
                except OSError:
                    cut_off = True
                    break
                s.settimeout(0.2)
                try:
                    chunk = s.recv(4096)
                except TimeoutError:
                    continue
                answer += chunk
                if not chunk or answer.endswith(b"\n"):
                    cut_off = True
                    break
            elapsed = time.monotonic() - started
        assert cut_off, "the server let the trickle run its course"
        assert answer.startswith(b"HTTP/1.0 408 ") or answer == b""
        assert elapsed >= 0.8  # not before the head's deadline (1 s)
    finally:
        server.close()


def test_connections_past_the_limit_are_closed_at_once_and_served_again_later(dispatcher):
    server = start(dispatcher.status, max_connections=2, head_seconds=30)
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]

        def third_closed_at_once() -> bool:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return s.recv(100) == b""

        # both idle peers hold their slot once the server has accepted them
        wait_until(third_closed_at_once, 10, "a third connection closed at once")
        for s in idle:
            s.close()

        def served() -> bool:
            try:
                return get(server, "/api/status")[0] == 200
            except (OSError, http.client.HTTPException):
                return False

        wait_until(served, 10, "served again after the idle peers left")
    finally:
        server.close()


def test_a_failing_status_gives_503_without_a_traceback():
    def broken():
        raise RuntimeError("secret internals")

    server = start(broken)
    try:
        status, _, body = get(server, "/api/status")
        assert status == 503 and b"secret" not in body and b"Traceback" not in body
    finally:
        server.close()


def test_viewers_share_one_status_call_per_half_second():
    calls, now = [], [0.0]
    snap = Snapshot(lambda: calls.append(1) or {"n": len(calls)}, max_age=0.5, clock=lambda: now[0])
    assert [snap.get() for _ in range(10)] == [b'{"n": 1}'] * 10
    now[0] = 0.49
    assert snap.get() == b'{"n": 1}'
    now[0] = 0.5
    assert snap.get() == b'{"n": 2}' and len(calls) == 2


def test_port_0_serves_nothing_and_a_busy_port_costs_only_the_page(caplog):
    with caplog.at_level("INFO", logger="mpcluster"):
        assert serve_page(0, dict) is None
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            assert serve_page(busy.getsockname()[1], dict, host="127.0.0.1") is None
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "status page off (MPC_WEB_PORT=0)"
    assert re.fullmatch(r"status page not served: cannot listen on port \d+ \(Address already in use\); set "
                        r"MPC_WEB_PORT to a free port, or 0 for no page", lines[1])


def test_mpc_web_port_setting():
    assert MasterSettings.from_env({}).web_port == 8080
    assert MasterSettings.from_env({"MPC_WEB_PORT": "0"}).web_port == 0
    assert MasterSettings.from_env({"MPC_WEB_PORT": " 9090 "}).web_port == 9090
    for bad, line in (("abc", "MPC_WEB_PORT='abc' is not valid: expected a whole number from 0 to 65535"),
                      ("70000", "MPC_WEB_PORT='70000' is out of range: expected a whole number from 0 to 65535"),
                      ("-1", "MPC_WEB_PORT='-1' is out of range")):
        with pytest.raises(ConfigError) as e:
            MasterSettings.from_env({"MPC_WEB_PORT": bad})
        assert str(e.value).startswith(line)
