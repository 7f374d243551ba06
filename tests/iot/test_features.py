"""Tests for phloem.iot.features: vocabulary, determinism, windowing, blocks, export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from phloem.iot.dns import QTYPE
from phloem.iot.domains import masked_name, registered_domain, tokens
from phloem.iot.events import Event, Query
from phloem.iot.features import Block, FeatureSpec, Vectorizer, Weighting, name_parts


def _ev(*items: tuple[float, str] | tuple[float, str, int], device: str = "d") -> Event:
    qs = tuple(Query(it[0], it[1], it[2] if len(it) > 2 else 1, "10.0.0.1") for it in items)
    return Event(key="aa:bb", anchor_utc=0.0, queries=qs, device=device)


EVENTS = [
    _ev(
        (0.1, "a1.amazon.com"),
        (0.2, "a2.amazon.com", 28),
        (3.0, "pool.ntp.org"),
        (9.0, "x.ring.com"),
    ),
    _ev((0.5, "time.google.com"), (1.0, "clients3.google.com"), (2.0, "pool.ntp.org")),
    _ev((0.0, "b5f3a9c01d2.iot.example.com", 12), (20.0, "late.only.net")),
]


def test_sld_vocabulary_sorted_and_windowed() -> None:
    vec = Vectorizer(FeatureSpec(blocks=(Block.SLD,))).fit(EVENTS, window_s=5.0)
    assert vec.feature_names == [
        "sld:amazon.com",
        "sld:example.com",
        "sld:google.com",
        "sld:ntp.org",
    ]
    # queries after T are excluded from the vocabulary and from rows
    assert "sld:ring.com" not in vec.feature_names
    assert "sld:only.net" not in vec.feature_names
    vec10 = Vectorizer(FeatureSpec(blocks=(Block.SLD,))).fit(EVENTS, window_s=10.0)
    assert "sld:ring.com" in vec10.feature_names
    X = vec10.transform(EVENTS, window_s=5.0)
    assert X[0, vec10.feature_names.index("sld:ring.com")] == 0.0


def test_weighting_and_l2() -> None:
    ev = [_ev((0.0, "a.amazon.com"), (0.1, "b.amazon.com"), (0.2, "pool.ntp.org"))]
    names = ["sld:amazon.com", "sld:ntp.org"]
    for weighting, expected in [
        (Weighting.BINARY, [1.0, 1.0]),
        (Weighting.COUNT, [2.0, 1.0]),
        (Weighting.LOG, [math.log(3), math.log(2)]),
    ]:
        spec = FeatureSpec(blocks=(Block.SLD,), weighting=weighting, l2_normalise=False)
        vec = Vectorizer(spec).fit(ev, 5.0)
        assert vec.feature_names == names
        np.testing.assert_allclose(vec.transform(ev, 5.0).toarray()[0], expected)
    vec = Vectorizer(FeatureSpec(blocks=(Block.SLD,), weighting=Weighting.COUNT)).fit(ev, 5.0)
    row = vec.transform(ev, 5.0).toarray()[0]
    np.testing.assert_allclose(row, np.array([2.0, 1.0]) / math.sqrt(5.0))


def test_block_weights_scale_before_normalisation() -> None:
    ev = [_ev((0.0, "a.amazon.com", 28))]
    spec = FeatureSpec(
        blocks=(Block.SLD, Block.QTYPE),
        weights={Block.QTYPE: 3.0},
        weighting=Weighting.BINARY,
        l2_normalise=False,
    )
    vec = Vectorizer(spec).fit(ev, 1.0)
    assert vec.feature_names == ["qtype:AAAA", "sld:amazon.com"]
    np.testing.assert_allclose(vec.transform(ev, 1.0).toarray()[0], [3.0, 1.0])


def test_resolver_and_stack_blocks() -> None:
    qs = (
        Query(0.0, "a.example.com", 1, "114.114.114.114", "ttl=255 id0"),
        Query(0.5, "b.example.com", 1, "192.168.1.1", "ttl=255 id0"),
        Query(0.6, "c.example.com", 1, "fe80::1", "ttl=255"),
        Query(0.7, "d.example.com", 1, "not-an-ip", ""),
        Query(0.8, "e.example.com", 1, "", ""),  # a resolver log: no resolver, no fingerprint
    )
    ev = Event("k", 0.0, qs, device="d")
    spec = FeatureSpec(blocks=(Block.RESOLVER, Block.STACK), weighting=Weighting.COUNT,
                       l2_normalise=False)  # fmt: skip
    vec = Vectorizer(spec).fit([ev], 5.0)
    row = dict(zip(vec.feature_names, vec.transform([ev], 5.0).toarray()[0], strict=True))
    assert row == {
        "resolver:114.114.114.114": 1.0,
        "resolver:local": 3.0,
        "stack:ttl=255": 3.0,
        "stack:id0": 2.0,
    }


def test_all_blocks_terms() -> None:
    vec = Vectorizer(FeatureSpec(order_k=2, l2_normalise=False)).fit(EVENTS[:1], 5.0)
    names = set(vec.feature_names)
    assert {"count:queries", "count:distinct"} <= names
    assert "order:sld@0=amazon.com" in names and "order:sld@1=ntp.org" in names
    assert "name:a<d>.amazon.com" in names
    assert {"token:amazon", "token:amazon.com", "token:ntp"} <= names
    assert {"qtype:A", "qtype:AAAA"} <= names
    row = dict(zip(vec.feature_names, vec.transform(EVENTS[:1], 5.0).toarray()[0], strict=True))
    assert row["count:queries"] == pytest.approx(math.log1p(3))
    assert row["count:distinct"] == pytest.approx(math.log1p(3))
    assert row["name:a<d>.amazon.com"] == pytest.approx(math.log1p(2))


def test_order_block_uses_distinct_domains_in_first_seen_order() -> None:
    ev = [_ev((0.0, "a.x.com"), (0.1, "b.x.com"), (0.2, "y.org"), (0.3, "z.net"))]
    vec = Vectorizer(FeatureSpec(blocks=(Block.ORDER,), order_k=2)).fit(ev, 1.0)
    assert vec.feature_names == ["order:sld@0=x.com", "order:sld@1=y.org"]


def test_unknown_terms_dropped_and_empty_rows() -> None:
    vec = Vectorizer(FeatureSpec(blocks=(Block.SLD,))).fit(EVENTS[:1], 5.0)
    new = [_ev((0.0, "never.seen.io")), _ev((0.0, "a.amazon.com"), (0.1, "unseen.io")), _ev()]
    X = vec.transform(new, 5.0)
    assert X.shape == (3, vec.n_features)
    assert X[0].nnz == 0 and X[2].nnz == 0
    assert X[1, vec.feature_names.index("sld:amazon.com")] == pytest.approx(1.0)  # L2 of one term


def test_min_df_prunes_rare_terms_but_keeps_counts() -> None:
    spec = FeatureSpec(blocks=(Block.SLD, Block.COUNT), min_df=2)
    vec = Vectorizer(spec).fit(EVENTS, 5.0)
    assert vec.feature_names == ["count:distinct", "count:queries", "sld:ntp.org"]


def test_deterministic_and_order_independent() -> None:
    a = Vectorizer().fit(EVENTS, 5.0)
    b = Vectorizer().fit(list(reversed(EVENTS)), 5.0)
    assert a.feature_names == b.feature_names == sorted(a.feature_names)
    assert (a.transform(EVENTS, 5.0) != b.transform(EVENTS, 5.0)).nnz == 0


def test_to_from_dict_roundtrip_through_json() -> None:
    spec = FeatureSpec(weights={Block.TOKEN: 0.5}, weighting=Weighting.COUNT, order_k=3)
    vec = Vectorizer(spec).fit(EVENTS, 5.0)
    back = Vectorizer.from_dict(json.loads(json.dumps(vec.to_dict())))
    assert back.spec == vec.spec
    assert back.feature_names == vec.feature_names
    np.testing.assert_array_equal(
        back.transform(EVENTS, 5.0).toarray(), vec.transform(EVENTS, 5.0).toarray()
    )


def test_featurise_batch_matches_transform() -> None:
    vec = Vectorizer().fit(EVENTS, 5.0)
    X = vec.transform(EVENTS, 5.0)
    indptr, indices, values = vec.featurise_batch(EVENTS, 5.0)
    np.testing.assert_array_equal(indptr, X.indptr)
    np.testing.assert_array_equal(indices, X.indices)
    np.testing.assert_allclose(values, X.data, rtol=1e-6)


# names the domain helpers treat in every special way: PSL private rules, IP literals,
# reverse zones, mDNS, single labels, bare suffixes, case, dots, spaces, hex ids, UUIDs, IDNA
VARIED_NAMES = [
    "www.bbc.co.uk", "x.s3.amazonaws.com", "d111abcdef8.cloudfront.net", "foo.blogspot.com",
    "4.3.2.1.in-addr.arpa", "b.a.ip6.arpa", "ip6.arpa", "8.8.8.8", "[::1]", "2001:db8::1",
    "_googlecast._tcp.local", "local", "localhost", "co.uk", "com", "", ".", "a..b",
    "E1234.dscb.akamaiedge.net.", "a2z1q9h5x3.execute-api.us-east-1.amazonaws.com",
    "5f3a9c01d2.iot.example.com", "deadbeef.example.org", " UPPER . Example.COM ",
    "123e4567-e89b-12d3-a456-426614174000.uuid.io", "xn--bcher-kva.example", "1.pool.ntp.org",
    "device-metrics-us-2.amazon.com", "under_score.example.net",
]  # fmt: skip


def _reference_terms(spec: FeatureSpec, queries: tuple[Query, ...]) -> dict[str, float]:
    """Vectorizer.terms as first written: every name parsed afresh by the domain helpers."""
    private = spec.private_psl
    bags: dict[str, int] = {}

    def add(term: str) -> None:
        bags[term] = bags.get(term, 0) + 1

    out: dict[str, float] = {}
    slds = [registered_domain(q.name, private=private) for q in queries]
    for block in spec.blocks:
        if block is Block.SLD:
            for d in slds:
                if d:
                    add(f"sld:{d}")
        elif block is Block.NAME:
            for q in queries:
                if masked_name(q.name):
                    add(f"name:{masked_name(q.name)}")
        elif block is Block.TOKEN:
            for q in queries:
                for t in tokens(q.name, private=private):
                    add(f"token:{t}")
        elif block is Block.QTYPE:
            for q in queries:
                add(f"qtype:{QTYPE.get(q.qtype, str(q.qtype))}")
        elif block is Block.COUNT:
            out["count:queries"] = math.log1p(len(queries))
            out["count:distinct"] = math.log1p(len({q.name for q in queries}))
        elif block is Block.ORDER:
            leading = [d for d in dict.fromkeys(slds) if d][: spec.order_k]
            out.update({f"order:sld@{i}={d}": 1.0 for i, d in enumerate(leading)})
    for term, c in bags.items():
        out[term] = {Weighting.BINARY: 1.0, Weighting.COUNT: float(c)}.get(
            spec.weighting, math.log1p(c)
        )
    return out


@pytest.mark.parametrize("private", [False, True])
def test_cached_name_parts_match_the_domain_helpers(private: bool) -> None:
    for _ in range(2):  # a cold and a warm cache
        for name in VARIED_NAMES:
            parts = name_parts(name, private)
            assert parts.sld == registered_domain(name, private=private)
            assert parts.masked == masked_name(name)
            assert list(parts.tokens) == tokens(name, private=private)
    assert name_parts.cache_info().maxsize is not None  # bounded
    blocks = (Block.SLD, Block.NAME, Block.TOKEN, Block.QTYPE, Block.COUNT, Block.ORDER)
    qs = tuple(Query(i / 10, n, 28 if i % 3 else 1, "") for i, n in enumerate(VARIED_NAMES * 2))
    for weighting in Weighting:
        spec = FeatureSpec(blocks=blocks, weighting=weighting, private_psl=private, order_k=50)
        for window in (qs[:1], qs[:7], qs):
            assert Vectorizer(spec).terms(window) == _reference_terms(spec, window)


def test_block_weights_are_kept_per_column_through_a_reload() -> None:
    spec = FeatureSpec(weights={Block.TOKEN: 0.5, Block.SLD: 2.0, Block.QTYPE: 0.0},
                       l2_normalise=False)  # fmt: skip
    vec = Vectorizer(spec).fit(EVENTS, 5.0)
    back = Vectorizer.from_dict(json.loads(json.dumps(vec.to_dict())))
    for v in (vec, back):
        for ev in EVENTS:
            idx, vals = v.featurise(ev.window(5.0))
            terms = v.terms(ev.window(5.0))
            expected = {
                j: terms[t] * spec.weight(Block(t.split(":", 1)[0]))
                for j, t in enumerate(v.feature_names)
                if t in terms and not t.startswith("qtype:")  # weight 0: left out
            }
            assert dict(zip(idx, vals, strict=True)) == expected


def test_errors_are_clear() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        Vectorizer().transform(EVENTS, 5.0)
    with pytest.raises(ValueError, match="min_df"):
        FeatureSpec(min_df=0)
    with pytest.raises(ValueError, match="empty"):
        FeatureSpec(blocks=())
    with pytest.raises(ValueError):
        FeatureSpec(blocks=("nope",))  # type: ignore[arg-type]
