"""Same seed, same bits: whole rounds pinned against the output of an earlier version.

Two digests per round. ``RESULTS`` (the fingerprint without byte counts: the mean and the
unmasked ring sum bit for bit, who is included, the set sizes, the abort) was computed with the
code of commit ``3ce889d`` (before the SecAgg refactor of issue 9) and still holds after the
protocol change of issue 10 (wire format v2: a seed commitment in the key advertisement, share
commitments, rejections, ``n`` in the round config, public keys bound into the HKDF ``info``),
which changed no result. ``PINNED`` (every message's byte count at every stage as well) was
re-pinned at that change; a refactor must leave both unchanged. Timings are not part of a
fingerprint.

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
from phloem.secagg.policy import ClientPolicy


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
        # the minimal policy: with the settings' corrupt target the one client of this graph
        # that has 7 holders refuses t = 4 (as it should since issue 10, tested elsewhere)
        policy=ClientPolicy(),
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


def without_bytes(fingerprint: Any) -> Any:
    """The fingerprint less every byte count (what a wire-format change may alter)."""
    if isinstance(fingerprint, dict):
        return {
            k: without_bytes(v)
            for k, v in fingerprint.items()
            if k not in ("up", "down") and "bytes" not in k
        }
    return fingerprint


PINNED: dict[str, str] = {
    "secagg_plus_mean": "969acbd3b26ce5b1a5b0e1b4db515230306a60ee14732133df0c30a37184e2e6",
    "secagg_consistency_mean": "1a664d6fcecf957a8be4b4f52226f6e99c6f034d563b181fc54c42eee6113e32",
    "given_parameters_sum": "0d5b8b5cd8b8012e070051e811721053d66067b189e1113983083334e07b1589",
    "aborted_mean": "5e75131f7ae56fffb61046584eea90b2cc38549dd6d2bc2c0e9d018d5496b76d",
    "bench_round": "65d5cb79000e22f7e459eb0ba7ad0dfcbbb30b2f2874c86fee3a7328affe324b",
}

RESULTS: dict[str, str] = {
    "secagg_plus_mean": "96e1a906d7cfe8947c3af62ab6ed07b18db2cfd138296658412d95d185f7a53c",
    "secagg_consistency_mean": "44898ab71235dc4283700fc1da8a3324940de726585ae7d2bf2427bfdaca3d5f",
    "given_parameters_sum": "2b496dbc0d39359a8cfb48a04185801f09ac61a4505733b311e039ffaa06f450",
    "aborted_mean": "b417244df68d0eac94da659112712a7df8da6138de338effebd8dcd0d6c28630",
    "bench_round": "aff1c7778f839b1b273edf3d60906acc59fcbb79d50219af539ee0be4debe60f",
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_round_is_bit_identical_to_the_pinned_version(name: str) -> None:
    fingerprint = SCENARIOS[name]()
    assert digest(without_bytes(fingerprint)) == RESULTS[name]
    assert digest(fingerprint) == PINNED[name]


if __name__ == "__main__":  # pragma: no cover - the fingerprints, for diffing two versions
    for name, make in SCENARIOS.items():
        fp = make()
        print(name, digest(fp), digest(without_bytes(fp)))
        print(json.dumps(fp, sort_keys=True, indent=1))
