"""The doctor's checks of the master itself, once the key is proven: the service it offers (the dispatcher, or
only the lesson's queues), the package and Python versions on both ends, and how far apart the clocks are."""

from __future__ import annotations

import platform
import time
from multiprocessing.managers import RemoteError

from ..link import Link
from ..protocol import DISPATCHER, RESULT_QUEUE, TASK_QUEUE, AuthFailed, Unreachable
from ..version import __version__
from .path import MAX_CLOCK_OFFSET, Check, Facts, _bounded


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


