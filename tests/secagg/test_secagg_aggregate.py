"""Tests for :mod:`phloem.secagg.aggregate`: the secure weighted mean against the plain one.

Reference: the weighted mean in float64 of the clients the protocol included, which the secure
mean must match within its stated deterministic bound; who is included follows from who left
before the masked input (the parameters below let every such round finish).
"""

from __future__ import annotations

import numpy as np
import pytest

from phloem.secagg.aggregate import SecAggSettings, secure_mean
from phloem.secagg.crypto.keys import insecure_random_bytes
from phloem.secagg.settings import Protocol
from phloem.secagg.stages import PROTOCOL_STAGES, Stage

IDS = list(range(20, 32))


def _vectors(dim: int) -> dict[int, np.ndarray]:
    return {u: np.random.default_rng(u).normal(0.0, 1.0, dim) for u in IDS}


def _weights() -> dict[int, float]:
    return {u: 1.0 + (u % 4) for u in IDS}


@pytest.mark.parametrize("protocol", list(Protocol))
@pytest.mark.parametrize("stage", PROTOCOL_STAGES)
def test_secure_mean_is_the_weighted_mean_of_the_included_clients(
    stage: Stage, protocol: Protocol
) -> None:
    vectors, weights = _vectors(30), _weights()
    settings = SecAggSettings(
        protocol=protocol, tolerate_dropout=0.25, tolerate_corrupt=0.0, consistency_check=True
    )
    dropped = IDS[1:4]
    res = secure_mean(
        vectors, settings, weights=weights, gen=np.random.default_rng(1), dropout={stage: dropped}
    )
    assert res.mean is not None and res.report.ok
    before_input = stage <= Stage.MASKED_INPUT
    want = [u for u in IDS if u not in dropped] if before_input else IDS
    assert list(res.included) == want
    w = np.array([weights[u] for u in want])
    clipped = np.stack([np.clip(vectors[u], -settings.clip, settings.clip) for u in want])
    exact = (w[:, None] * clipped).sum(0) / w.sum()
    assert float(np.max(np.abs(res.mean - exact))) <= res.error_bound
    q = res.quantizer  # |Omega_hat - Omega| < n W / L (phloem.secagg.quantize)
    assert abs(res.weight - w.sum()) < len(want) * q.max_weight / q.levels


def test_dropout_keys_may_be_stages_or_their_names() -> None:
    """The simulator passes names; both spellings give the same round, bit for bit."""
    vectors = _vectors(12)
    runs = []
    for key in (Stage.SHARE_KEYS, "share_keys"):
        res = secure_mean(
            vectors,
            SecAggSettings(num_shares=6),
            gen=np.random.default_rng(4),
            dropout={key: [IDS[0]], "unmask": [IDS[5]]},
            rand=lambda u: insecure_random_bytes(u),
        )
        assert res.mean is not None
        runs.append(res)
    a, b = runs
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.included == b.included and a.report.sets == b.report.sets
    for sa, sb in zip(a.report.stages.values(), b.report.stages.values(), strict=True):
        assert (sa.up_bytes, sa.down_bytes) == (sb.up_bytes, sb.down_bytes)
