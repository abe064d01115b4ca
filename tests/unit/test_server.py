"""The hardened server's refusal log."""


def test_refusals_are_rate_limited_per_peer_and_summed_up_later(caplog):
    from mpcluster.server import RateLimitedLog

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
