"""Socket options on the raw file descriptors of ``multiprocessing.connection.Connection`` objects, which both
the master's server and the clients' links use: bounded reads and writes, TCP keepalive, the addresses of either
end, and the client's side of the key handshake under a deadline.

``multiprocessing.connection`` reads with ``os.read`` on the raw fd, so these work on the fd (a dup of it as a
socket object), never on a socket in non-blocking mode.
"""

from __future__ import annotations

import os
import socket
import struct
from contextlib import contextmanager
from multiprocessing import connection


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
