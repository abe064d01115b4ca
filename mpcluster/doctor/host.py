"""The doctor's last check: on the master's own host, whether its port is open beyond loopback (read from
/proc/net/tcp and tcp6, so no tool has to be installed)."""

from __future__ import annotations

import socket

from .path import Check, in_master_container, is_loopback


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
                 "other machines must, firewall the port to them and pass --allow-exposed (docs/configuration.md: Security)")


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

