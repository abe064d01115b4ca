"""doctor's judgements, apart from the network: what a peer's first bytes mean, versions, clocks, listeners."""

from __future__ import annotations

import struct

from mpcluster import doctor
from mpcluster.doctor import host as doctor_host
from mpcluster.doctor import path as doctor_path
from mpcluster.doctor import service as doctor_master
from mpcluster.doctor.path import Check


def frame(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


def test_a_challenge_names_its_digest_or_is_md5_from_older_pythons():
    assert doctor_path.parse_challenge(frame(b"#CHALLENGE#{sha256}" + b"x" * 40)) == "sha256"
    assert doctor_path.parse_challenge(frame(b"#CHALLENGE#" + b"\x01" * 20)) == "md5"
    assert doctor_path.parse_challenge(b"HTTP/1.0 200 OK\r\n") is None
    assert doctor_path.parse_challenge(frame(b"#CHALL")) is None


def test_what_a_peer_that_is_not_a_manager_said_is_described():
    http = b"HTTP/1.0 404 Not Found\r\nServer: nginx/1.25\r\nContent-Length: 0\r\n\r\n"
    assert doctor_path.describe_first_bytes(http) == \
        "the peer speaks HTTP (HTTP/1.0 404 Not Found, nginx/1.25), not the manager handshake"
    assert "an SSH server (SSH-2.0-OpenSSH_9.2p1)" in doctor_path.describe_first_bytes(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    assert doctor_path.describe_first_bytes(b"\x16\x03\x01garbage") == \
        "the peer sent '\\\\x16\\\\x03\\\\x01garbage', which is not a manager's challenge"


def test_versions_differing_in_the_package_fail_and_in_python_do_not():
    same = doctor_master.judge_versions({"version": "0.1.0", "python": "3.11.2"}, "0.1.0", "3.13.5")
    assert same.status == "ok" and same.detail.endswith("(mixed Python versions work)")
    other = doctor_master.judge_versions({"version": "0.2.0", "python": "3.11.2"}, "0.1.0", "3.11.2")
    assert other.status == "FAIL" and "package versions differ" in other.detail and "pip install" in other.fix


def test_a_clock_is_judged_at_the_middle_of_the_round_trip():
    ok = doctor_master.judge_clock(master_time=1000.5, sent=1000.0, back=1001.0)  # exactly in the middle
    assert ok.status == "ok" and ok.detail.startswith("the master's clock is 0.000 s ahead")
    late = doctor_master.judge_clock(master_time=990.0, sent=1000.0, back=1000.02)
    assert late.status == "FAIL" and "10.010 s behind" in late.detail and "NTP" in late.fix
    # A slow round trip widens what can be told apart from skew.
    assert doctor_master.judge_clock(master_time=1003.0, sent=1000.0, back=1004.0).status == "ok"


PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 0 0
   1: 00000000:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 0 0
   2: 0100007F:1389 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 0 0
   3: 0A00000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 0 0
"""
PROC_TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1389 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000001000000:1388 00000000000000000000000000000000:0000 0A
"""


def test_listeners_are_read_from_proc_net_tcp_for_one_port():
    tables = {"tcp": PROC_TCP, "tcp6": PROC_TCP6}
    assert doctor_host.listeners(5000, tables) == ["127.0.0.1", "::1"]
    assert doctor_host.listeners(5001, tables) == ["0.0.0.0", "::"]  # the ESTABLISHED line is not a listener
    assert doctor_host.listeners(8080, tables) == ["10.0.0.10"]
    assert doctor_host.listeners(5002, tables) == []


def test_exposure_beyond_loopback_fails_unless_allowed():
    assert doctor_host.judge_exposure(5000, ["127.0.0.1", "::1"], False).status == "ok"
    wide = doctor_host.judge_exposure(5000, ["0.0.0.0"], False)
    assert wide.status == "FAIL" and "every address of this host" in wide.detail and "--allow-exposed" in wide.fix
    assert doctor_host.judge_exposure(5000, ["10.0.0.10"], False).status == "FAIL"
    assert doctor_host.judge_exposure(5000, ["0.0.0.0"], True).status == "ok"
    assert doctor_host.judge_exposure(5000, [], False).status == "skip"


def test_the_verdict_names_the_first_failure_and_its_fix():
    checks = [Check("name", "ok", "x resolves"), Check("connect", "FAIL", "nothing listens", "start it"),
              Check("exposure", "FAIL", "wide open", "close it")]
    assert doctor.verdict(checks, "m:5000") == "verdict: FAIL at connect: nothing listens; fix: start it"
    assert doctor.verdict([Check("name", "ok", "a"), Check("service", "ok", "a plain lesson master: ...")],
                          "m:5000") == "verdict: OK: this machine can use the master at m:5000 (a plain lesson master, same key)"
    assert Check("key", "FAIL", "refused", "same key").line() == "FAIL  key        refused; fix: same key"
