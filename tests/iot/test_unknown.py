"""Novelty-based unknown detection."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from phloem.iot.events import Event, Query
from phloem.iot.unknown import NoveltyDetector, masked_names, novelty_share


def ev(*names: str, device: str = "d") -> Event:
    return Event(
        "k", 0.0, tuple(Query(float(i), n, 1, "8.8.8.8") for i, n in enumerate(names)), device
    )


def test_novelty_share_and_masking() -> None:
    det = NoveltyDetector().fit([ev("a1.plug.com", "pool.ntp.org")], 10.0)
    # a7.plug.com masks to the same name as a1.plug.com: not new
    got = det.novelty([ev("a7.plug.com"), ev("pool.ntp.org", "cam.example"), ev()], 10.0)
    assert np.allclose(got, [0.0, 0.5, 0.0])


def test_calibration_respects_target_and_floor() -> None:
    train = [ev("x.com", "y.com")]
    det = NoveltyDetector(min_threshold=0.25).fit(train, 10.0)
    known = [ev("x.com")] * 98 + [ev("x.com", "new1.org"), ev("new2.org")]  # 0.5 and 1.0
    det.calibrate(known, 10.0, target_false_unknown=0.01)
    assert det.threshold > 0.5  # only the fully new one may be flagged (1%)
    assert det.is_unknown(known, 10.0).sum() <= 1
    floor = NoveltyDetector(min_threshold=0.25).fit(train, 10.0).calibrate([ev("x.com")], 10.0)
    assert floor.threshold == 0.25


def test_novelty_share_of_queries() -> None:
    vocab = masked_names(ev("a1.plug.com", "pool.ntp.org").queries)
    assert vocab == {"a<d>.plug.com", "pool.ntp.org"}
    assert novelty_share(ev("a7.plug.com", "A9.PLUG.COM.").queries, vocab) == 0.0
    assert novelty_share(ev("pool.ntp.org", "new.org", "new.org").queries, vocab) == 0.5
    assert novelty_share((), vocab) == 0.0
    assert novelty_share(ev("x.org").queries, frozenset(vocab)) == 1.0
    det = NoveltyDetector(vocabulary=vocab)
    events = [ev("a7.plug.com"), ev("pool.ntp.org", "cam.example"), ev()]
    assert det.novelty(events, 10.0).tolist() == [
        novelty_share(e.window(10.0), vocab) for e in events
    ]


# ---- per-device queries ---------------------------------------------------------------------


def _q(name: str, qtype: int = 1, stack: str = "ttl=64") -> Query:
    return Query(0.0, name, qtype, "8.8.8.8", stack)


def test_device_novelty_asks_whether_this_device_sent_this_query() -> None:
    from phloem.iot.unknown import DeviceQueries

    plug = [_q("pool.ntp.org"), _q("api.plugco.com"), _q("api.plugco.com", 28)]
    cam = [_q("pool.ntp.org", stack="ttl=255"), _q("s1234.camco.net", stack="ttl=255")]
    dq = DeviceQueries.fit(
        [Event("a", 0.0, tuple(plug), "plug"), Event("b", 0.0, tuple(cam), "cam")], 60.0
    )
    assert dq.share_unseen([_q("pool.ntp.org")], "plug") == 0.0
    # a name both sent, but never by the plug with that stack: new for the plug
    assert dq.share_unseen([_q("pool.ntp.org", stack="ttl=255")], "plug") == 1.0
    assert dq.share_unseen([_q("pool.ntp.org", stack="ttl=255")], "cam") == 0.0
    # per-device ids are masked; the query type counts
    assert dq.share_unseen([_q("s9876.camco.net", stack="ttl=255")], "cam") == 0.0
    assert dq.share_unseen([_q("api.plugco.com", 16)], "plug") == 1.0
    assert dq.share_unseen([_q("pool.ntp.org"), _q("x.newco.io")], "plug") == 0.5
    # a log carries no stack: compared on name and type only
    assert dq.share_unseen([_q("pool.ntp.org", stack="")], "cam") == 0.0
    assert dq.share_unseen([_q("pool.ntp.org")], "ghost") == 1.0  # a device never trained
    assert dq.share_unseen([], "plug") == 0.0


@given(st.lists(st.floats(0, 1), max_size=60), st.floats(0, 0.5))
def test_high_threshold_flags_at_most_the_target_and_is_the_lowest(
    scores: list[float], target: float
) -> None:
    from phloem.iot.unknown import high_threshold

    th = high_threshold(scores, target)
    flagged = sum(s >= th for s in scores)
    assert flagged <= int(np.floor(target * len(scores)))
    # any lower candidate threshold (a score itself) would flag more than allowed
    lower = [s for s in scores if s < th]
    if lower:
        assert sum(s >= max(lower) for s in scores) > int(np.floor(target * len(scores)))
