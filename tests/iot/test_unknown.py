"""Novelty-based unknown detection."""

from __future__ import annotations

import numpy as np

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
