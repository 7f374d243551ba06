"""Tests for :mod:`phloem.secagg.settings`: one validated settings type with one meaning per field.

References are the rules as the docstring states them, computed by hand (``t = k // 2 + 1``,
``k = min(num_shares, n)``, the complete graph for plain SecAgg) and the graph module's own
search for derived parameters.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from phloem.core.config import from_dict
from phloem.core.errors import ConfigError
from phloem.secagg import aggregate
from phloem.secagg.crypto.prg import PrgKind
from phloem.secagg.graph import ParamOrigin, choose_parameters
from phloem.secagg.settings import Protocol, SecAggSettings

#: the keys of the simulator's ``[aggregation]`` section that belong to the protocol (the
#: section's ``name``, ``dropout`` and ``dropout_stage`` belong to the simulator)
FL_KEYS = [
    "protocol",
    "num_shares",
    "threshold",
    "tolerate_dropout",
    "tolerate_corrupt",
    "sigma",
    "eta",
    "modulus_bits",
    "clip",
    "levels",
    "prg",
    "consistency_check",
]


def test_fields_are_the_simulator_keys() -> None:
    assert [f.name for f in dataclasses.fields(SecAggSettings)] == FL_KEYS


def test_one_class_under_its_old_names() -> None:
    assert aggregate.SecAggSettings is SecAggSettings and aggregate.Protocol is Protocol
    import phloem.secagg as secagg

    assert secagg.SecAggSettings is SecAggSettings and secagg.Protocol is Protocol


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("protocol", "secagg++"),
        ("prg", "aes"),
        ("num_shares", 1),
        ("num_shares", 2.5),
        ("num_shares", True),
        ("threshold", 1),
        ("threshold", math.nan),
        ("tolerate_dropout", 1.0),
        ("tolerate_dropout", -0.1),
        ("tolerate_dropout", math.nan),
        ("tolerate_corrupt", math.inf),
        ("tolerate_corrupt", "0.1"),
        ("sigma", 0.0),
        ("sigma", math.nan),
        ("eta", -math.inf),
        ("clip", 0.0),
        ("clip", math.inf),
        ("modulus_bits", 0),
        ("modulus_bits", 65),
        ("modulus_bits", 32.0),
        ("levels", 0),
        ("levels", math.nan),
        ("consistency_check", 1),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        SecAggSettings(**{field: value})
    assert err.value.field == field
    assert err.value.allowed, "the error lists what is allowed"


@pytest.mark.parametrize(("enum", "field"), [(Protocol, "protocol"), (PrgKind, "prg")])
def test_enum_errors_list_every_name(enum: type[Protocol] | type[PrgKind], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        SecAggSettings(**{field: "nonsense"})
    assert err.value.allowed == tuple(m.value for m in enum)


def test_pairs_of_graph_fields() -> None:
    with pytest.raises(ConfigError) as err:  # secagg+ needs k to place t
        SecAggSettings(threshold=3)
    assert err.value.field == "num_shares"
    with pytest.raises(ConfigError) as err:
        SecAggSettings(num_shares=4, threshold=5)
    assert err.value.field == "threshold"
    # plain SecAgg takes t alone (k is the number of clients)
    assert SecAggSettings(protocol=Protocol.SECAGG, threshold=3).threshold == 3


def test_names_become_members_and_numpy_numbers_python_ones() -> None:
    s = SecAggSettings(
        protocol="secagg",  # type: ignore[arg-type]
        prg="chacha20",  # type: ignore[arg-type]
        num_shares=np.int64(5),  # type: ignore[arg-type]
        levels=np.uint32(9),  # type: ignore[arg-type]
        clip=np.float32(2.0),  # type: ignore[arg-type]
    )
    assert s.protocol is Protocol.SECAGG and s.prg is PrgKind.CHACHA20
    assert type(s.num_shares) is int and type(s.levels) is int and type(s.clip) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.clip = 3.0  # type: ignore[misc]


def test_a_config_section_builds_it_from_the_simulator_keys() -> None:
    """Usable as a component's ``Params``: the config loader validates and converts."""
    data = {"protocol": "secagg+", "num_shares": 7, "threshold": 5, "tolerate_dropout": 0.2}
    data |= {"clip": 2, "prg": "chacha20", "consistency_check": True}
    s = from_dict(SecAggSettings, data, prefix="aggregation")
    assert s == SecAggSettings(
        num_shares=7,
        threshold=5,
        tolerate_dropout=0.2,
        clip=2.0,
        prg=PrgKind.CHACHA20,
        consistency_check=True,
    )
    with pytest.raises(ConfigError) as err:
        from_dict(SecAggSettings, {"dropout": 0.1}, prefix="aggregation")
    assert err.value.field == "aggregation.dropout"  # a drop rate is not a protocol setting
    with pytest.raises(ConfigError) as err:
        from_dict(SecAggSettings, {"tolerate_corrupt": 1.5}, prefix="aggregation")
    assert err.value.field.endswith("tolerate_corrupt")


# --------------------------------------------------------------------------- one meaning of k


@pytest.mark.parametrize("n", [5, 12, 40])
@pytest.mark.parametrize("num_shares", [3, 6, 11, 64])
def test_num_shares_is_holders_including_the_client(n: int, num_shares: int) -> None:
    k = min(num_shares, n)
    p = SecAggSettings(num_shares=num_shares, tolerate_corrupt=0.0).parameters(n)
    assert (p.num_shares, p.threshold) == (k, k // 2 + 1)
    assert p.complete == (k == n)
    graph = p.neighbours(list(range(100, 100 + n)), np.random.default_rng(n))
    # each client has k - 1 neighbours (Harary: one more for one vertex when k - 1 and n odd)
    degrees = sorted(len(vs) for vs in graph.values())
    assert degrees[0] == k - 1 and degrees[-1] <= k


def test_plain_secagg_shares_with_everyone_whatever_num_shares() -> None:
    n = 9
    for num_shares in (None, 3):
        p = SecAggSettings(protocol=Protocol.SECAGG, num_shares=num_shares).parameters(n)
        assert p.complete and p.num_shares == n


def test_without_num_shares_the_search_decides() -> None:
    s = SecAggSettings(tolerate_dropout=0.2, tolerate_corrupt=0.05, sigma=30.0, eta=20.0)
    want = choose_parameters(60, 0.2, 0.05, 30.0, 20.0)
    assert s.parameters(60) == want and want.origin is ParamOrigin.SMALLEST_K


@pytest.mark.parametrize(
    ("kwargs", "n", "field"),
    [
        (
            {"protocol": "secagg", "tolerate_dropout": 0.3, "tolerate_corrupt": 0.0},
            4,
            "tolerate_dropout",
        ),
        ({"protocol": "secagg", "tolerate_corrupt": 0.34}, 3, "tolerate_corrupt"),
        ({}, 1, "clients"),
    ],
)
def test_errors_of_the_search_name_the_settings_fields(
    kwargs: dict[str, Any], n: int, field: str
) -> None:
    """Too few clients for the tolerances: the error names the settings' field (the graph
    module calls the same fractions ``dropout`` and ``corrupt``)."""
    s = SecAggSettings(**kwargs)
    with pytest.raises(ConfigError) as err:
        s.parameters(n)
    assert err.value.field == field


def test_round_config_and_plan_follow_the_settings() -> None:
    s = SecAggSettings(num_shares=5, modulus_bits=20, prg=PrgKind.CHACHA20, consistency_check=True)
    ids = [3, 8, 13, 21, 34, 55, 89]
    config, graph, params = s.plan(ids, 11, 4, np.random.default_rng(0))
    assert (config.round_id, config.dim, config.modulus_bits) == (4, 11, 20)
    assert config.threshold == params.threshold and config.prg == PrgKind.CHACHA20.value
    assert config.consistency_check and sorted(graph) == ids
    again = s.plan(ids, 11, 4, np.random.default_rng(0))[1]
    assert graph == again  # the graph is drawn from the generator only


def test_quantizer_is_the_finest_that_cannot_overflow_unless_levels_are_given() -> None:
    s = SecAggSettings(clip=2.0, modulus_bits=16)
    q = s.quantizer(10, 3.0)
    assert q.levels == (2**16 - 1) // 10 and q.max_weight == 3.0 and q.clip == 2.0
    assert SecAggSettings(levels=100, modulus_bits=16).quantizer(10).levels == 100
    with pytest.raises(ConfigError, match="wrap around"):
        SecAggSettings(levels=2**15, modulus_bits=16).quantizer(10)


def test_explain_tells_why() -> None:
    text = SecAggSettings(tolerate_dropout=0.05, tolerate_corrupt=0.05).explain(200)
    assert "Harary" in text and "Why" in text and "Connectivity" not in text
    assert "Connectivity" in SecAggSettings().explain(50, mc_trials=3)


# --------------------------------------------------------------------------- import cost


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("phloem.secagg.settings", ("scipy", "torch", "flwr", "phloem.secagg.server")),
        ("phloem.secagg", ("scipy", "torch", "flwr", "phloem.secagg.server")),
        ("phloem.secagg.graph", ("scipy", "torch", "flwr")),
        ("phloem.secagg.flower", ("scipy", "torch")),
    ],
)
def test_importing_stays_light(module: str, absent: tuple[str, ...]) -> None:
    if module.endswith("flower"):
        pytest.importorskip("flwr")
    code = f"import sys, {module}; print([m for m in {absent!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_round_does_not_import_scipy() -> None:
    """Choosing SecAgg+ parameters (exact hypergeometric tails with :mod:`math`) and a whole
    :func:`~phloem.secagg.aggregate.secure_mean` round, a dropout included, load no SciPy."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import phloem.secagg, phloem.secagg.graph\n"
        "from phloem.secagg.aggregate import SecAggSettings, secure_mean\n"
        "params = SecAggSettings().parameters(100)\n"
        "assert (params.num_shares, params.threshold) == (33, 22), params\n"
        "vectors = {u: np.random.default_rng(u).normal(0.0, 1.0, 16) for u in range(30)}\n"
        "res = secure_mean(vectors, SecAggSettings(), gen=np.random.default_rng(0),\n"
        "                  dropout={'unmask': [4]})\n"
        "assert res.mean is not None and res.report.ok\n"
        "assert not SecAggSettings().parameters(30).complete  # the round was SecAgg+\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')[:5])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout
