"""The hardened server's refusal log."""


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
    assert lines[0] == "refused connection from 10.0.0.5:40000: wrong authkey"
    assert lines[2] == "refused 49 more connections from 10.0.0.5 in the last 10 s (latest: wrong authkey)"
    assert refused.total == 51


class Counter:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1
        return self.n


def test_a_connection_served_when_the_server_stops_is_closed_not_answered_with_none():
    """The stdlib's handler sends ('#RETURN', None) after serve_client's loop ends on stop_event: a client then
    took None for the answer to its next call (a job's results, after `docker compose restart master`)."""
    import secrets
    from multiprocessing.managers import BaseManager

    from mpcluster.master.server import MasterServer

    counter = Counter()

    class Served(BaseManager):
        _Server = MasterServer

        def get_server(self):
            return self._Server(self._registry, self._address, self._authkey, self._serializer)

    class Client(BaseManager):
        pass

    Served.register("get_counter", callable=lambda: counter)
    Client.register("get_counter")
    key = secrets.token_bytes(32)
    server = Served(address=("127.0.0.1", 0), authkey=key).get_server()
    server.start()
    try:
        client = Client(address=server.address, authkey=key)
        client.connect()
        proxy = client.get_counter()
        assert proxy.bump() == 1  # the proxy's own connection now waits in serve_client for the next call
        server.stop_event.set()  # the master stopping
        assert proxy.bump() == 2  # already being read when the stop came: answered
        try:
            answer = proxy.bump()
        except (EOFError, OSError):
            answer = "closed"
        assert answer == "closed"  # never None, and never a call run after the stop
        assert counter.n == 2
    finally:
        server.close()
