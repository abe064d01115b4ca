"""The hardened server: its refusal log, and how it ends a connection when it stops."""

import re
import threading


def test_refusals_are_rate_limited_per_peer_and_summed_up_later(caplog):
    from mpcluster.master.server import RateLimitedLog

    now = [0.0]
    refused = RateLimitedLog(every=10, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="mpcluster"):
        shown = [refused(f"10.0.0.5:{40000 + i}", "wrong authkey") for i in range(50)]
        assert shown == [True] + [False] * 49
        assert refused("10.0.0.6:1", "wrong authkey")  # another peer has its own window
        refused.flush()
        assert len(caplog.records) == 2  # nothing summed up before the window ends
        now[0] = 10.5
        refused.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused connection from 10.0.0.5:40000: wrong authkey",
                     "refused connection from 10.0.0.6:1: wrong authkey",
                     "refused 49 more connections from 10.0.0.5 in the last 10 s (latest: wrong authkey)"]
    # every refusal is accounted for in the lines: one each, or counted in a summary
    counted = [int(m.group(1)) if (m := re.match(r"refused (\d+) more", line)) else 1 for line in lines]
    assert sum(counted) == 51


class Counter:
    """Served by the master's manager: ``bump`` says it is running (``serving``) and waits for ``go``."""

    def __init__(self):
        self.n = 0
        self.serving, self.go = threading.Event(), threading.Event()
        self.go.set()

    def bump(self):
        self.serving.set()
        assert self.go.wait(10)
        self.n += 1
        return self.n


def test_a_connection_served_when_the_server_stops_is_closed_not_answered_with_none():
    """A connection whose serving loop ends because the master stops is closed: the client's next call sees the
    connection gone, never a None that it would take for the answer (e.g. to a job's `results`)."""
    import secrets
    from multiprocessing.managers import BaseManager

    from mpcluster.master.process import MasterManager
    from mpcluster.master.server import MasterServer

    counter = Counter()

    class Served(MasterManager):  # the master's own manager (its hardened server), serving one more object
        pass

    class Client(BaseManager):
        pass

    Served.register("get_counter", callable=lambda: counter)
    Client.register("get_counter")
    key = secrets.token_bytes(32)
    server = Served(address=("127.0.0.1", 0), authkey=key).get_server()
    assert isinstance(server, MasterServer)
    server.start()
    try:
        client = Client(address=server.address, authkey=key)
        client.connect()
        proxy = client.get_counter()
        assert proxy.bump() == 1  # the proxy's own connection, served until the server stops
        counter.serving.clear()
        counter.go.clear()

        def stop_while_serving():
            assert counter.serving.wait(10)
            server.stop_event.set()  # the master stopping while it runs the call
            counter.go.set()

        stopper = threading.Thread(target=stop_while_serving, daemon=True)
        stopper.start()
        assert proxy.bump() == 2  # already being served when the stop came: answered
        stopper.join(10)
        try:
            answer = proxy.bump()
        except (EOFError, OSError):
            answer = "closed"
        assert answer == "closed"  # never None, and never a call run after the stop
        assert counter.n == 2
    finally:
        server.close()
