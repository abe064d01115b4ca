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

import platform
import socket

from ..config import parse_address, parse_float
from ..version import __version__
from .host import check_exposure
from .path import (
    CHECKS,
    Check,
    Facts,
    check_connect,
    check_handshake,
    check_key,
    check_name,
)
from .service import check_clock, check_service, check_versions


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

