"""``python3 -m mpcluster doctor``: can this machine use the master, and if not, why not?

A worker that cannot reach its master and says nothing useful is the most common complaint about every tool of
this kind (a Locust worker pointed at 127.0.0.1 inside a container, a Dask worker behind a firewall that drops
packets). Doctor walks the path a connection takes and stops at the first thing that is wrong:

  name       the master's name resolves (and to what)
  connect    a TCP connection opens
  handshake  the peer speaks the manager handshake (it sends a challenge at once), not HTTP, not nothing
  key        our key and the master's match (both directions of the HMAC challenge)
  service    the master offers the dispatcher, or only the lesson's two queues (a plain lesson master)
  versions   the package versions match (Python versions may differ: the handshake negotiates its digest)
  clock      the master's wall clock agrees with ours
  exposure   on the master's own host: whether the port is open beyond loopback

One line per check (ok / FAIL / skip), then one verdict line with the fix; exit status 0 only when no check
failed. Standard library only, like the rest of the package; nothing is unpickled before the key is proven.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError, connection
from multiprocessing.managers import RemoteError

from . import __version__
from .config import ConfigError, parse_address, parse_float, read_authkey
from .protocol import DISPATCHER, RESULT_QUEUE, TASK_QUEUE, AuthFailed, Link, Unreachable, set_socket_timeouts

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


def add_arguments(p) -> None:
    """Doctor's own flags (next to --master and --authkey-file)."""
    p.add_argument("--allow-exposed", action="store_true",
                   help="the master's port is meant to be open to other hosts (firewalled to them)")
    p.add_argument("--timeout", default="5", metavar="S", help="how long each network step may take (default 5)")


def main(args, settings) -> int:
    """The CLI entry: resolve the target from flags or MPC_* settings, run the checks, print, return 0/1."""
    host, port = settings.master_host, settings.port
    if getattr(args, "master", None):
        host, port = parse_address("--master", args.master)
    key_file, source = settings.authkey_file, "MPC_AUTHKEY_FILE"
    if getattr(args, "authkey_file", None):
        key_file, source = args.authkey_file, "--authkey-file"
    timeout = parse_float("--timeout", args.timeout, 0.1, 600)
    print(f"mpcluster doctor: the master at {host}:{port}, key from {key_file}; this is {socket.gethostname()} "
          f"(mpcluster {__version__}, Python {platform.python_version()})", flush=True)
    checks = run(host, port, key_file, source, allow_exposed=args.allow_exposed, timeout=timeout,
                 report=lambda c: print(c.line(), flush=True))
    print(verdict(checks, f"{host}:{port}"), flush=True)
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def run(host: str, port: int, key_file: str, source: str = "--authkey-file", *, allow_exposed: bool = False,
        timeout: float = 5.0, report=lambda c: None) -> list[Check]:
    """Every check in order. After the first failure the rest are skipped, since each needs the one before,
    except exposure, which needs only the connection."""
    facts = Facts()
    steps = {
        "name": lambda: check_name(host, port, facts, timeout),
        "connect": lambda: check_connect(host, port, facts, timeout),
        "handshake": lambda: check_handshake(facts, timeout),
        "key": lambda: check_key(facts, key_file, source, timeout),
        "service": lambda: check_service(host, port, facts, timeout),
        "versions": lambda: check_versions(facts),
        "clock": lambda: check_clock(facts),
        "exposure": lambda: check_exposure(facts.address, port, allow_exposed),
    }
    checks: list[Check] = []
    failed = ""
    try:
        for name in CHECKS:
            # Exposure needs only the connection: a master's host that exposes its port is worth knowing even
            # when the key is wrong.
            if failed and (name != "exposure" or not facts.address):
                c = Check(name, "skip", f"not checked: {failed} failed first")
            else:
                try:
                    c = steps[name]()
                except Exception as e:  # a check must never end in a traceback
                    c = Check(name, "FAIL", f"unexpected {type(e).__name__}: {str(e)[:200]}",
                              "please report this with the line above")
            if c.status == "FAIL" and not failed:
                failed = name
            checks.append(c)
            report(c)
    finally:
        if facts.sock is not None:
            facts.sock.close()
        if facts.link is not None:
            facts.link.close()
    return checks


def verdict(checks: list[Check], where: str) -> str:
    failures = [c for c in checks if c.status == "FAIL"]
    if not failures:
        service = next((c.detail for c in checks if c.name == "service" and c.status == "ok"), "")
        kind = "a plain lesson master" if service.startswith("a plain lesson master") else "an mpcluster master"
        return f"verdict: OK: this machine can use the master at {where} ({kind}, same key)"
    first = failures[0]
    return f"verdict: FAIL at {first.name}: {first.detail}; fix: {first.fix}"


# ---- the checks ----------------------------------------------------------------------------------------------

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
                     f"open the port to this machine (README: Multi-host){loopback_note}")
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
        set_socket_timeouts(conn.fileno(), timeout)
        connection.answer_challenge(conn, facts.key)  # we prove we hold the key...
        connection.deliver_challenge(conn, facts.key)  # ...and the master proves it does too
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


def check_service(host: str, port: int, facts: Facts, timeout: float) -> Check:
    link = facts.link = Link(facts.address or host, port, facts.key, call_timeout=timeout)

    def probe():
        link.open()
        queues = []
        for typeid in (TASK_QUEUE, RESULT_QUEUE):
            try:
                getattr(link.manager, typeid)()
                queues.append(typeid)
            except RemoteError as e:
                if typeid not in str(e):
                    raise
        return link.mode, queues

    try:
        mode, queues = _bounded(probe, timeout * 2)
    except (Unreachable, AuthFailed, TimeoutError, OSError, EOFError) as e:
        return Check("service", "FAIL", f"the master stopped answering after the handshake ({e})",
                     "look at the master's log; it may be overloaded or restarting")
    except RemoteError as e:
        return Check("service", "FAIL", f"the peer is a manager, but not ours ({str(e).strip().splitlines()[-1][:120]})",
                     "point --master at an mpcluster master or the lesson's task_master.py")
    facts.mode = mode
    if mode == "mpcluster":
        have = " and the lesson's two queues" if len(queues) == 2 else ""
        return Check("service", "ok", f"the master offers the dispatcher (mpcluster jobs: leases, exactly-once){have}")
    if len(queues) == 2:
        return Check("service", "ok", f"a plain lesson master: only {TASK_QUEUE} and {RESULT_QUEUE} (no {DISPATCHER}); "
                     "our workers serve it the lesson's way, and submit needs --protocol classic")
    return Check("service", "FAIL", "the peer is a manager but offers neither the dispatcher nor the lesson's queues",
                 "point --master at an mpcluster master or the lesson's task_master.py")


def judge_versions(master: dict, here_version: str = __version__, here_python: str = "") -> Check:
    here_python = here_python or platform.python_version()
    there = f"master: mpcluster {master.get('version', '?')}, Python {master.get('python', '?')}"
    here = f"here: mpcluster {here_version}, Python {here_python}"
    if master.get("version") != here_version:
        return Check("versions", "FAIL", f"{there}; {here}: the package versions differ",
                     "run one version everywhere: rebuild the images (make up, make stack-images) and "
                     "pip install the same checkout on this machine")
    mixed = " (mixed Python versions work)" if master.get("python", "").split(".")[:2] != here_python.split(".")[:2] else ""
    return Check("versions", "ok", f"{there}; {here}{mixed}")


def judge_clock(master_time: float, sent: float, back: float) -> Check:
    """Offset of the master's clock from ours, taking its reading at the middle of the round trip."""
    offset, rtt = master_time - (sent + back) / 2, back - sent
    way = "ahead of" if offset >= 0 else "behind"
    detail = f"the master's clock is {abs(offset):.3f} s {way} this one (round trip {rtt * 1000:.1f} ms)"
    if abs(offset) > MAX_CLOCK_OFFSET + rtt / 2:
        return Check("clock", "FAIL", detail, "synchronise the clocks on every node (NTP: chrony or "
                     "systemd-timesyncd): status ages and log times across nodes will not line up")
    return Check("clock", "ok", detail)


def check_versions(facts: Facts) -> Check:
    if facts.mode != "mpcluster":
        return Check("versions", "skip", "a lesson master tells no versions")
    def two_pings():
        # Proxy connections are per thread: the first call opens this thread's (a handshake), the second,
        # timed one is the round trip alone, so the clock check reads the master's time near its middle.
        facts.link.call("ping")
        sent = time.time()
        answer = facts.link.call("ping")
        return sent, answer, time.time()

    try:
        facts.ping_sent, facts.ping, facts.ping_back = _bounded(two_pings, facts.link.call_timeout * 2)
    except (Unreachable, TimeoutError) as e:
        return Check("versions", "FAIL", f"the master did not answer ping ({e})", "look at the master's log")
    except Exception as e:  # an mpcluster master without ping
        return Check("versions", "skip", f"the master does not answer ping ({type(e).__name__}): an older mpcluster")
    return judge_versions(facts.ping)


def check_clock(facts: Facts) -> Check:
    if not facts.ping or "time" not in facts.ping:
        return Check("clock", "skip", "the master tells no time")
    return judge_clock(float(facts.ping["time"]), facts.ping_sent, facts.ping_back)


# ---- exposure --------------------------------------------------------------------------------------------------

def listeners(port: int, tables: dict[str, str]) -> list[str]:
    """Addresses with a TCP socket listening on `port`, from /proc/net/tcp and tcp6 text."""
    found = []
    for family, text in tables.items():
        for line in text.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 4 or parts[3] != "0A":  # 0A = LISTEN
                continue
            hex_addr, _, hex_port = parts[1].partition(":")
            if int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(hex_addr)
            if family == "tcp":
                found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return sorted(set(found))


def is_this_host(address: str) -> bool:
    """Loopback, or an address of one of this machine's interfaces (binding to it works only then)."""
    if is_loopback(address):
        return True
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def judge_exposure(port: int, found: list[str], allow_exposed: bool) -> Check:
    if not found:
        return Check("exposure", "skip", f"no socket on this host listens on port {port} (published by NAT "
                     "only, or the master runs elsewhere): cannot tell")
    wide = [a for a in found if not is_loopback(a)]
    shown = ", ".join(found)
    if not wide:
        return Check("exposure", "ok", f"port {port} listens on {shown} only (loopback): other machines cannot connect")
    every = any(a in ("0.0.0.0", "::") for a in wide)
    detail = f"port {port} listens on {shown}" + (" (every address of this host)" if every else "")
    if allow_exposed:
        return Check("exposure", "ok", f"{detail}, as --allow-exposed says it should")
    return Check("exposure", "FAIL", f"{detail}: anyone who reaches this host can try the key",
                 "if only this machine should connect, publish on 127.0.0.1 (MPC_PUBLISH_ADDR, the default); if "
                 "other machines must, firewall the port to them and pass --allow-exposed (README: threat model)")


def check_exposure(address: str, port: int, allow_exposed: bool) -> Check:
    if in_master_container():
        return Check("exposure", "skip", "inside the master's container: run doctor on its host to see what that exposes")
    try:
        if not is_this_host(address):
            return Check("exposure", "skip", f"the master is on another host ({address}): run doctor there")
    except ValueError:
        return Check("exposure", "skip", f"cannot tell whether {address} is this host")
    tables = {}
    for family in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{family}") as f:
                tables[family] = f.read()
        except OSError:
            pass
    if not tables:
        return Check("exposure", "skip", "cannot read /proc/net/tcp (not Linux): check with ss or netstat")
    return judge_exposure(port, listeners(port, tables), allow_exposed)
