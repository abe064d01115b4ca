"""The standard library's internals the package relies on, one test each, named for the internal and where it is
used. They run on Python 3.11 (make test) and 3.13 (make test-py313): a new Python that changes one of them fails
here, by name, before anything subtler breaks in a cluster."""

from __future__ import annotations

import inspect
import socket
import threading
from multiprocessing import connection, managers

import pytest

from mpcluster.link import Link
from mpcluster.master.process import MasterManager
from mpcluster.master.server import MasterServer
from mpcluster.sockets import set_socket_timeouts

KEY = b"k" * 32


@pytest.fixture
def server():
    s = MasterManager(address=("127.0.0.1", 0), authkey=KEY).get_server()
    yield s
    s.close()


def test_basemanager_private_fields_build_our_server(server):
    """master/process.py: ``MasterManager.get_server`` builds ``_Server`` from ``_registry``, ``_address``,
    ``_authkey`` and ``_serializer`` (as CPython's SharedMemoryManager does), because the stdlib's
    ``get_server()`` ignores ``_Server``."""
    assert isinstance(server, MasterServer)
    assert {"get_task_queue", "get_result_queue", "get_dispatcher"} <= set(server.registry)
    assert server.authkey == KEY and server.address[0] == "127.0.0.1"


def test_the_listener_socket_sits_at_listener__listener__socket(server):
    """master/server.py raises the listen backlog through ``Server.listener._listener._socket`` (the stdlib
    listens with a backlog of 16 on 3.11)."""
    assert isinstance(server.listener._listener._socket, socket.socket)


def test_server_methods_the_master_server_overrides_or_calls():
    """master/server.py overrides ``handle_request(conn)`` and ``accepter()``, and calls ``serve_client``,
    ``accept_connection`` and ``public`` the way ``Server._handle_request`` does."""
    assert list(inspect.signature(managers.Server.handle_request).parameters) == ["self", "conn"]
    assert list(inspect.signature(managers.Server.accepter).parameters) == ["self"]
    assert "accept_connection" in managers.Server.public
    assert "_handle_request" in vars(managers.Server)  # what MasterServer._serve_request follows
    assert "current_process()._manager_server" in inspect.getsource(managers.Server.serve_forever)


def test_a_proxy_keeps_its_connection_in__tls_and_opens_it_with__connect():
    """link.py opens a proxy's connection ahead of its first call (``BaseProxy._connect``) to bound its reads
    and set keepalive on ``BaseProxy._tls.connection``."""
    assert callable(managers.BaseProxy._connect)
    assert "self._tls.connection = conn" in inspect.getsource(managers.BaseProxy._connect)
    assert Link  # the user of both


def test_a_connection_reads_the_raw_fd_so_SO_RCVTIMEO_bounds_it():
    """sockets.py bounds a Connection's reads with SO_RCVTIMEO on its fd (a socket timeout would switch the fd
    to non-blocking mode, which ``Connection`` does not expect): a read past it raises BlockingIOError."""
    a, b = socket.socketpair()
    conn = connection.Connection(a.detach())
    try:
        set_socket_timeouts(conn.fileno(), 0.05)
        with pytest.raises(BlockingIOError):
            conn.recv_bytes()
    finally:
        conn.close()
        b.close()


def test_the_key_handshake_functions_run_both_ways():
    """server.py and sockets.py run ``connection.deliver_challenge`` / ``answer_challenge`` themselves (under a
    deadline); their wire format changed in 3.12 (SHA-256, negotiated) but the calls did not."""
    a, b = socket.socketpair()
    ca, cb = connection.Connection(a.detach()), connection.Connection(b.detach())
    errors = []

    def server_side():
        try:
            connection.deliver_challenge(ca, KEY)
            connection.answer_challenge(ca, KEY)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    th = threading.Thread(target=server_side)
    th.start()
    connection.answer_challenge(cb, KEY)
    connection.deliver_challenge(cb, KEY)
    th.join(5)
    ca.close()
    cb.close()
    assert errors == []
