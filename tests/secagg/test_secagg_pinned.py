"""Same seed, same bits: whole rounds pinned against the output of an earlier version.

The digests below were computed with the code of commit ``3ce889d`` (before the SecAgg
refactor of issue 9: one settings type, one stage enum, a transport interface). A refactor
must leave every one of them unchanged: the mean and the unmasked ring sum bit for bit, who is
included, the set sizes, and every message's byte count at every stage. Timings are not part of
a fingerprint.

To see what changed when a digest differs, print the fingerprints at both versions
(``python tests/secagg/test_secagg_pinned.py``) and diff them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from phloem.secagg import aggregate
from phloem.secagg.bench import run_bench
from phloem.secagg.crypto.keys import RandomBytes, insecure_random_bytes
from phloem.secagg.crypto.prg import PrgKind


def _rand(base: int) -> Callable[[int], RandomBytes]:
    return lambda u: insecure_random_bytes(base + u)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _report(rep: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "abort": None if rep.abort is None else [rep.abort.stage, rep.abort.reason],
        "stages": {
            str(name): {  # plain names: a key's type must not change the digest
                "clients": [int(u) for u in st.clients],
                "up": [int(b) for b in st.up_bytes],
                "down": [int(b) for b in st.down_bytes],
                "answered": st.answered,
                "refused": list(st.refused),
            }
            for name, st in rep.stages.items()
        },
    }
    if rep.result is not None:
        out["total"] = _sha(rep.result.total)
        out["included"] = [int(u) for u in rep.result.included]
        out["sets"] = dict(rep.result.sets)
    return out


def _vectors(ids: range, dim: int) -> dict[int, np.ndarray]:
    return {u: np.random.default_rng(50 + u).uniform(-1.5, 1.5, dim) for u in ids}


def _mean(res: Any) -> dict[str, Any]:
    return {
        "mean": None if res.mean is None else _sha(res.mean),
        "weight": float(res.weight).hex(),
        "included": [int(u) for u in res.included],
        "error_bound": float(res.error_bound).hex(),
        "report": _report(res.report),
    }


def secagg_plus_mean() -> dict[str, Any]:
    """SecAgg+ with derived parameters, a dropout at every stage, weights."""
    ids = range(20)
    settings = aggregate.SecAggSettings(clip=2.0, tolerate_dropout=0.2)
    res = aggregate.secure_mean(
        _vectors(ids, 40),
        settings,
        weights={u: 1.0 + u % 5 for u in ids},
        gen=np.random.default_rng(7),
        round_id=3,
        dropout={"setup": [0], "share_keys": [2], "masked_input": [4], "unmask": [5]},
        rand=_rand(100),
    )
    return _mean(res)


def secagg_consistency_mean() -> dict[str, Any]:
    """Plain SecAgg with the consistency check; a participant without a vector leaves early."""
    vectors = _vectors(range(9), 25)
    settings = aggregate.SecAggSettings(
        protocol=aggregate.Protocol.SECAGG, consistency_check=True, clip=1.5
    )
    res = aggregate.secure_mean(
        vectors,
        settings,
        gen=np.random.default_rng(11),
        round_id=8,
        dropout={"share_keys": [9], "masked_input": [3], "consistency": [1]},
        rand=_rand(200),
        all_clients=list(range(10)),
    )
    return _mean(res)


def given_parameters_sum() -> dict[str, Any]:
    """Given ``(k, t)``, a 16-bit ring and ChaCha20 masks, through :func:`secure_sum`."""
    ids = list(range(3, 14))
    inputs = {u: np.random.default_rng(u).integers(0, 2**16, 30, dtype=np.uint16) for u in ids}
    settings = aggregate.SecAggSettings(
        num_shares=6, threshold=4, modulus_bits=16, prg=PrgKind.CHACHA20
    )
    rep = aggregate.secure_sum(
        inputs,
        ids,
        30,
        settings,
        gen=np.random.default_rng(5),
        round_id=2,
        dropout={"masked_input": [7], "unmask": [8]},
        rand=_rand(300),
    )
    return _report(rep)


def aborted_mean() -> dict[str, Any]:
    """Too many clients leave before their masked input: the round aborts."""
    ids = range(8)
    settings = aggregate.SecAggSettings(num_shares=5, threshold=3, levels=2**12)
    res = aggregate.secure_mean(
        _vectors(ids, 10),
        settings,
        gen=np.random.default_rng(3),
        dropout={"masked_input": [0, 1, 2, 3, 4, 5]},
        rand=_rand(400),
    )
    return _mean(res)


def bench_round() -> dict[str, Any]:
    """The benchmark workload, timings and memory left out."""
    r = run_bench(9, 30, aggregate.SecAggSettings(), dropout=0.25, stage="share_keys", seed=4)
    d = r.as_dict()
    for key in ("wall_s", "client_s", "server_s", "peak_rss_mb"):
        d.pop(key)
    d["max_abs_error"] = float(d["max_abs_error"]).hex()
    d["error_bound"] = float(d["error_bound"]).hex()
    d["up_bytes"] = float(d["up_bytes"]).hex()
    d["down_bytes"] = float(d["down_bytes"]).hex()
    d["stages"] = {
        k: {f: v for f, v in s.items() if not f.endswith("_s")} for k, s in d["stages"].items()
    }
    return d


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    "secagg_plus_mean": secagg_plus_mean,
    "secagg_consistency_mean": secagg_consistency_mean,
    "given_parameters_sum": given_parameters_sum,
    "aborted_mean": aborted_mean,
    "bench_round": bench_round,
}


def digest(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


PINNED: dict[str, str] = {
    "secagg_plus_mean": "4af6b4b299a02107344f782ca8b35bdf58c6615fe612fd79e71874a3ec2d7d34",
    "secagg_consistency_mean": "cd26cfa38f5a65a0cab830138fa549ecb54626b1b01d3be6b3d88d37174ef570",
    "given_parameters_sum": "d7bbe4582df9ca1826bb519a84838b19a9867801fd93b6be361ba3430802945f",
    "aborted_mean": "11ef8fe35a77c039166d5132e99b6933cbdf024efcb219a45e8be14f6fbf382f",
    "bench_round": "a8a1e3749f10aae0506dea7728c155306d4fc6c70ee33026a7ecda5af821423f",
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_round_is_bit_identical_to_the_pinned_version(name: str) -> None:
    assert digest(SCENARIOS[name]()) == PINNED[name]


if __name__ == "__main__":  # pragma: no cover - the fingerprints, for diffing two versions
    for name, make in SCENARIOS.items():
        fp = make()
        print(name, digest(fp))
        print(json.dumps(fp, sort_keys=True, indent=1))
