"""The master's check of itself, for the container's health probe: the master runs what a worker's first steps
need against its own port every ``HEALTH_EVERY`` seconds and touches a file when it passes, so that the image's
HEALTHCHECK only reads the file's age (a probe that started an interpreter would cost 0.3 s of CPU each time)."""

from __future__ import annotations

import logging
import socket
import threading
from multiprocessing import AuthenticationError, connection
from pathlib import Path

from ..sockets import prove_key
from .dispatcher import Dispatcher

log = logging.getLogger("mpcluster")


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
