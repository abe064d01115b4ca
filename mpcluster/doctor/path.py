"""The doctor's checks along a connection's path, in order: name, connect, handshake, key (``doctor/__init__.py``
runs them all; ``service.py`` asks the master about itself; ``host.py`` checks what the master's host
exposes). Each returns a Check, and learns into Facts what the next needs."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError, connection

from ..config import ConfigError, read_authkey
from ..link import Link
from ..sockets import prove_key

# The first bytes a manager sends (multiprocessing.connection's CHALLENGE, a private name from Python 3.13 on);
# the wire format itself is the same in every version.
CHALLENGE = b"#CHALLENGE#"
MAX_CLOCK_OFFSET = 2.0  # seconds; status ages and log times across nodes stop lining up beyond this
CHECKS = ("name", "connect", "handshake", "key", "service", "versions", "clock", "exposure")



@dataclass
class Check:
    name: str
    status: str  # "ok", "FAIL" or "skip"
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<9}  {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclass
class Facts:
    """What the checks learn on the way, for the ones after them."""

    addresses: list[str] = field(default_factory=list)
    address: str = ""  # the one we connected to
    sock: socket.socket | None = None
    key: bytes | None = None
    link: Link | None = None
    mode: str = ""
    ping: dict | None = None
    ping_sent: float = 0.0
    ping_back: float = 0.0


def _bounded(fn, timeout: float):
    """Run fn() with a deadline: name lookups and manager calls have no timeout of their own."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def in_container() -> bool:
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def in_master_container() -> bool:
    """Inside the master's own container (our image runs `python3 -m mpcluster master` as PID 1): its network
    is reachable only through Docker's, so what counts is what its host publishes. A container that merely
    runs a Docker engine (a CI machine, a Docker-in-Docker node) is a host for this purpose."""
    try:
        with open("/proc/1/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return in_container() and b"mpcluster" in argv and b"master" in argv


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def check_name(host: str, port: int, facts: Facts, timeout: float) -> Check:
    try:
        ipaddress.ip_address(host)
        facts.addresses = [host]
        return Check("name", "ok", f"{host} is an address: nothing to resolve")
    except ValueError:
        pass
    try:
        infos = _bounded(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except socket.gaierror as e:
        return Check("name", "FAIL", f"{host!r} does not resolve ({e.strerror or e})",
                     "check the name: inside a Compose or Swarm network the master is 'master'; from another "
                     "machine use its DNS name or address; on its own host, 127.0.0.1 and the published port")
    except TimeoutError:
        return Check("name", "FAIL", f"looking up {host!r} took longer than {timeout:g} s",
                     "this machine's DNS resolver does not answer: check /etc/resolv.conf, or use an address")
    facts.addresses = list(dict.fromkeys(info[4][0] for info in infos))
    return Check("name", "ok", f"{host} resolves to {', '.join(facts.addresses[:4])}")


def check_connect(host: str, port: int, facts: Facts, timeout: float) -> Check:
    failures = []
    for address in facts.addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        started = time.monotonic()
        try:
            sock.connect((address, port))
        except OSError as e:
            sock.close()
            failures.append((address, e))
            continue
        facts.sock, facts.address = sock, address
        return Check("connect", "ok", f"TCP connection to {address}:{port} in {(time.monotonic() - started) * 1000:.1f} ms")
    address, e = failures[0]
    loopback_note = ("; if this runs in a container, 127.0.0.1 is that container, not the host: use the master's "
                     "name (master) or the host's address") if in_container() and is_loopback(address) else ""
    if isinstance(e, ConnectionRefusedError):
        return Check("connect", "FAIL", f"nothing listens on {address}:{port} (connection refused)",
                     "start the master (make up, make stack-up) and check the port: from the host it is the "
                     f"published one (docker compose port master 5000){loopback_note}")
    if isinstance(e, TimeoutError):
        return Check("connect", "FAIL", f"no answer from {address}:{port} within {timeout:g} s (packets dropped)",
                     "a firewall between here and the master drops them, or this is not the master's address: "
                     f"open the port to this machine (docs/swarm.md){loopback_note}")
    return Check("connect", "FAIL", f"cannot connect to {address}:{port} ({(e.strerror or str(e)).lower()})",
                 f"this machine has no route to the master's network: check the address{loopback_note}")


def describe_first_bytes(data: bytes) -> str:
    """What a peer that is not a manager said first, for a human."""
    if data.startswith(b"HTTP/"):
        status = data.split(b"\r\n", 1)[0].decode("latin-1")
        server = next((line.split(b":", 1)[1].strip().decode("latin-1") for line in data.split(b"\r\n")
                       if line.lower().startswith(b"server:")), "")
        return f"the peer speaks HTTP ({status}{', ' + server if server else ''}), not the manager handshake"
    if data.startswith(b"SSH-"):
        banner = data.split(b"\r\n", 1)[0].decode("latin-1")[:60]
        return f"the peer is an SSH server ({banner}), not a manager"
    shown = data[:40].decode("latin-1").encode("unicode_escape").decode("ascii")
    return f"the peer sent {shown!r}, which is not a manager's challenge"


def parse_challenge(data: bytes) -> str | None:
    """The digest a manager's first message announces ('sha256', ...), 'md5' for Python <= 3.11, None if the
    bytes are not a challenge: a 4-byte length, then b'#CHALLENGE#' (then b'{digest}' on Python >= 3.12)."""
    body = data[4:]
    if len(data) < 4 + len(CHALLENGE) or not body.startswith(CHALLENGE):
        return None
    rest = body[len(CHALLENGE):]
    if rest.startswith(b"{") and b"}" in rest[:21]:
        return rest[1:rest.index(b"}")].decode("ascii", "replace")
    return "md5"


def peek_first_message(sock: socket.socket, wait: float) -> tuple[bytes, bool]:
    """The peer's first bytes, left unread (the key check answers this very challenge), and whether it closed.

    A manager sends its challenge in one piece at once; anything else is judged on what came within `wait`.
    """
    end = time.monotonic() + wait
    data = b""
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            data = sock.recv(64, socket.MSG_PEEK)
        except TimeoutError:
            return data, False
        if not data:
            return b"", True
        head = data[4:4 + len(CHALLENGE)]
        if len(data) >= 4 + len(CHALLENGE) + 10 or not CHALLENGE.startswith(head):
            return data, False
        time.sleep(0.05)  # the rest of a message that arrived in pieces


def check_handshake(facts: Facts, timeout: float) -> Check:
    sock = facts.sock
    wait = min(timeout, 3.0)
    try:
        data, closed = peek_first_message(sock, wait)
    except OSError as e:
        return Check("handshake", "FAIL", f"the peer reset the connection ({(e.strerror or str(e)).lower()})",
                     "a proxy with nothing behind it, or the master refuses connections (its log says why)")
    if not data:
        if closed:
            return Check("handshake", "FAIL", "the peer closed the connection without a word",
                         "a proxy with nothing behind it, or the master turned this address away (its log says why)")
        # A manager speaks first; a web server waits for a request. Ask like a browser would.
        try:
            sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            sock.settimeout(min(timeout, 2.0))
            data = sock.recv(512)
        except (TimeoutError, OSError):
            data = b""
        if data:
            return Check("handshake", "FAIL", describe_first_bytes(data),
                         "this port belongs to another service (the status page is 8080): point --master at the "
                         "master's port, 5000 or the one published for it")
        return Check("handshake", "FAIL", f"the peer accepted the connection but said nothing in {wait:g} s "
                     "(a manager sends its challenge at once)",
                     "another program holds this port (ss -ltnp on its host shows which), or the master has no "
                     "handshake threads left (its log says 'refused connection')")
    digest = parse_challenge(data)
    if digest is None:
        return Check("handshake", "FAIL", describe_first_bytes(data),
                     "this port belongs to another service: point --master at the master's port")
    origin = "Python >= 3.12" if digest != "md5" else "Python <= 3.11"
    return Check("handshake", "ok", f"the peer sent a manager challenge (HMAC-{digest.upper()}: {origin} there)")


def check_key(facts: Facts, key_file: str, source: str, timeout: float) -> Check:
    try:
        facts.key = read_authkey(key_file, source)
    except ConfigError as e:
        return Check("key", "FAIL", f"this machine's key: {e}", "every node needs the same key file: copy the "
                     "master's .secrets/authkey here (a secure channel) and pass --authkey-file")
    sock, facts.sock = facts.sock, None
    sock.setblocking(True)  # multiprocessing reads the raw fd: blocking, bounded by SO_RCVTIMEO instead
    conn = connection.Connection(sock.detach())
    try:
        prove_key(conn, facts.key, timeout)  # we prove we hold the key, and the master proves it does too
    except AuthenticationError:
        return Check("key", "FAIL", f"the master refused this machine's key ({key_file})",
                     "copy the master's key file here again (every node needs the same key), and after changing "
                     "it recreate the containers (docker compose up -d --force-recreate) or redeploy the stack")
    except (BlockingIOError, TimeoutError):
        return Check("key", "FAIL", f"the handshake stalled for {timeout:g} s",
                     "the master is overloaded or something between us holds packets: check its log and load")
    except (EOFError, OSError) as e:
        return Check("key", "FAIL", f"the master closed the connection during the handshake ({type(e).__name__})",
                     "the master's handshake timeout (MPC_HANDSHAKE_TIMEOUT) is shorter than this network needs")
    finally:
        conn.close()
    return Check("key", "ok", "the keys match (both sides proved they hold it)")
