"""Tests for :mod:`phloem.secagg.server`: thresholds, unmask requests, refusals.

Rounds are cranked by hand (:class:`secagg_reference.Harness`) so that every message the
server sends can be inspected and every reply it receives can be forged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from secagg_reference import Harness, expected_outcome, plain_sum, wire

from phloem.core.errors import ConfigError, ProtocolError, SecAggAbort
from phloem.secagg.crypto.shamir import PRIME
from phloem.secagg.graph import complete_neighbours, harary_neighbours
from phloem.secagg.messages import (
    ConsistencySignature,
    EncryptedShares,
    KeysAdvert,
    MaskedInput,
    Message,
    RoundConfig,
    SharesDelivery,
    Stage,
    UnmaskRequest,
    UnmaskShares,
)
from phloem.secagg.server import SecAggServer

# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("stage", [Stage.MASKED_INPUT, Stage.UNMASK], ids=lambda s: s.name)
def test_exactly_t_survivors_succeed(stage: Stage) -> None:
    h = Harness.make(7, 4, dim=11, bits=32)
    result = h.run({u: stage for u in (1, 3, 6)})
    included = (0, 2, 4, 5) if stage is Stage.MASKED_INPUT else tuple(range(7))
    assert result.included == included
    assert [int(x) for x in result.total] == plain_sum(h.inputs, included, 32)
    assert result.sets["U5"] == 4


@pytest.mark.parametrize(
    ("stage", "what"),
    [
        (Stage.MASKED_INPUT, "clients sent masked inputs"),
        (Stage.UNMASK, "clients answered the unmask request"),
    ],
    ids=["masked_input", "unmask"],
)
def test_t_minus_one_survivors_abort_cleanly(stage: Stage, what: str) -> None:
    h = Harness.make(7, 4, dim=11, bits=32)
    with pytest.raises(SecAggAbort) as err:
        h.run({u: stage for u in (1, 3, 5, 6)})
    assert err.value.stage == stage.name.lower()
    assert err.value.reason == f"3 {what}, threshold is 4"
    assert h.server.stage is Stage.DONE and h.server.result is None
    if stage is Stage.MASKED_INPUT:  # no share of anyone was asked for
        assert not any(isinstance(m, UnmaskRequest) for box in h.sent for m in box.values())
    with pytest.raises(ProtocolError):
        h.server.advance()
    with pytest.raises(ProtocolError):
        h.server.receive(MaskedInput(7, 0, np.zeros(11, np.uint32)))


def test_abort_when_one_clients_seed_has_too_few_holders() -> None:
    """SecAgg+: U5 is large, but one client's neighbours all left before unmasking."""
    graph = harary_neighbours(list(range(12)), 4, np.random.default_rng(0))  # 3 neighbours
    t = 3
    victim = 0
    drop = {v: Stage.UNMASK for v in graph[victim][:2]}  # victim keeps itself + 1 holder
    want = expected_outcome(graph, t, drop, False)
    assert want.stage == "unmask" and want.sizes["U5"] == 10
    h = Harness.make(t=t, graph=graph)
    with pytest.raises(SecAggAbort, match=f"client {victim}'s mask-seed has 2 valid shares back"):
        h.run(drop)


def test_abort_when_a_dropped_clients_key_has_too_few_holders() -> None:
    graph = harary_neighbours(list(range(12)), 5, np.random.default_rng(0))
    assert graph[0] == (3, 5, 6, 11)
    # 0 leaves before its masked input; two of its holders (not each other's neighbours, so
    # every survivor keeps 3 holders of its seed) leave before the unmask: 0's key keeps 2
    drop = {0: Stage.MASKED_INPUT, 5: Stage.UNMASK, 6: Stage.UNMASK}
    assert expected_outcome(graph, 3, drop, False).stage == "unmask"
    h = Harness.make(t=3, graph=graph)
    with pytest.raises(SecAggAbort, match="client 0's key has 2 valid shares back"):
        h.run(drop)


# --------------------------------------------------------------------------- unmask requests


@st.composite
def patterns(draw: st.DrawFn) -> tuple[dict[int, tuple[int, ...]], int, dict[int, Stage], bool]:
    n = draw(st.integers(3, 14))
    if draw(st.booleans()):
        graph = complete_neighbours(list(range(n)))
    else:
        graph = harary_neighbours(list(range(n)), draw(st.integers(2, n)), np.random.default_rng(n))
    degrees = [len(v) for v in graph.values()]
    assume((max(degrees) + 1) // 2 + 1 <= min(degrees) + 1)  # t > k / 2 for every client
    t = draw(st.integers((max(degrees) + 1) // 2 + 1, min(degrees) + 1))
    stages = [Stage.SETUP, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY, Stage.UNMASK]
    drop = draw(st.dictionaries(st.sampled_from(range(n)), st.sampled_from(stages)))
    return graph, t, drop, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(patterns())
def test_server_never_asks_for_both_shares_of_a_client(
    p: tuple[dict[int, tuple[int, ...]], int, dict[int, Stage], bool],
) -> None:
    graph, t, drop, consistency = p
    h = Harness.make(t=t, graph=graph, consistency=consistency, dim=3)
    want = expected_outcome(graph, t, drop, consistency)
    try:
        result = h.run(drop)
    except SecAggAbort as exc:
        assert not want.ok and exc.stage == want.stage
    else:
        assert want.ok and set(result.included) == want.included
    requests = [(u, m) for box in h.sent for u, m in box.items() if isinstance(m, UnmaskRequest)]
    if not requests:
        return
    u2 = {u for box in h.sent for u, m in box.items() if isinstance(m, SharesDelivery)}
    u3 = {u for box in h.received for u, m in box.items() if isinstance(m, MaskedInput)}
    seeds_asked: set[int] = set()
    keys_asked: set[int] = set()
    for u, req in requests:
        assert u in u3
        assert not set(req.survivors) & set(req.dropped)
        assert set(req.survivors) | set(req.dropped) <= {u, *graph[u]}
        assert u in req.survivors and u not in req.dropped
        assert set(req.survivors) <= u3 and set(req.dropped) <= u2 - u3
        seeds_asked |= set(req.survivors)
        keys_asked |= set(req.dropped)
    assert not seeds_asked & keys_asked
    assert seeds_asked <= u3 and keys_asked <= u2 - u3
    # every U3 member with a holder among the clients asked has its seed asked for (with the
    # consistency check only signers are asked, so a member may have none: the round aborts)
    asked = {u for u, _ in requests}
    assert {u for u in u3 if asked & {u, *graph[u]}} <= seeds_asked


# --------------------------------------------------------------------------- refusals


def _at_unmask(consistency: bool = False) -> tuple[Harness, dict[int, UnmaskShares]]:
    """A 5-client round with client 4 gone before its masked input, at the unmask stage."""
    h = Harness.make(5, 3, consistency=consistency)
    h.step()
    h.step()
    h.step({4})
    if consistency:
        h.step()
    replies = {u: h.clients[u].handle(m) for u, m in h.outbox.items()}
    assert all(isinstance(r, UnmaskShares) for r in replies.values())
    return h, replies  # type: ignore[return-value]


def test_receive_refuses_replies_of_the_wrong_stage_round_or_sender() -> None:
    h = Harness.make(5, 3)
    adverts = {u: h.clients[u].handle(m) for u, m in h.outbox.items()}
    with pytest.raises(ProtocolError, match="EncryptedShares at stage SETUP"):
        h.server.receive(EncryptedShares(7, 0, {}))
    with pytest.raises(ProtocolError, match="stale or replayed"):
        h.server.receive(dataclasses.replace(adverts[0], round_id=8))
    with pytest.raises(ProtocolError, match="who was not asked"):
        h.server.receive(dataclasses.replace(adverts[0], sender=9))
    h.server.receive(adverts[0])
    with pytest.raises(ProtocolError, match="second KeysAdvert from 0"):
        h.server.receive(adverts[0])
    for u in (1, 2, 3):  # 4 never answers
        h.server.receive(adverts[u])
    h.advance()
    with pytest.raises(ProtocolError, match="who was not asked"):
        h.server.receive(EncryptedShares(7, 4, {}))
    with pytest.raises(ProtocolError, match="MaskedInput at stage SHARE_KEYS"):
        h.server.receive(MaskedInput(7, 0, np.zeros(8, np.uint16)))
    with pytest.raises(ProtocolError, match="KeysAdvert at stage SHARE_KEYS"):
        h.server.receive(adverts[1])
    shares = h.clients[0].handle(h.outbox[0])
    assert isinstance(shares, EncryptedShares)
    assert set(shares.ciphertexts) == {1, 2, 3}
    wrong = dict(shares.ciphertexts)
    wrong[4] = wrong.pop(3)
    with pytest.raises(ProtocolError, match="addressed to clients it got no keys of"):
        h.server.receive(dataclasses.replace(shares, ciphertexts=wrong))


def test_receive_validates_keys_and_masked_inputs() -> None:
    h = Harness.make(4, 3, consistency=True, dim=6, bits=20)
    advert = h.clients[0].handle(h.outbox[0])
    assert isinstance(advert, KeysAdvert)
    with pytest.raises(ProtocolError, match="32 bytes"):
        h.server.receive(dataclasses.replace(advert, s_public=advert.s_public[:31]))
    with pytest.raises(ProtocolError, match="signing key missing"):
        h.server.receive(dataclasses.replace(advert, sign_public=b""))
    h.server.receive(advert)
    h.answer({0})
    h.advance()
    h.step()
    h.answer({0})  # all but 0 send their masked inputs
    for bad in (np.zeros(6, np.uint64), np.zeros(5, np.uint32), np.zeros((6, 1), np.uint32)):
        with pytest.raises(ProtocolError, match="masked input must be 6 x uint32"):
            h.server.receive(MaskedInput(7, 0, bad))
    h.server.receive(MaskedInput(7, 0, np.zeros(6, np.uint32)))
    assert h.server.waiting_for == set()


def test_receive_refuses_an_unmask_answer_to_a_different_request() -> None:
    h, replies = _at_unmask()
    good = replies[0]
    req = h.outbox[0]
    assert isinstance(req, UnmaskRequest) and req.dropped == (4,)
    some = req.survivors[-1]
    fewer = {v: s for v, s in good.seed_shares.items() if v != some}
    forged = [
        # one seed share missing
        dataclasses.replace(good, seed_shares=fewer),
        # the key share of a survivor instead of its seed share
        dataclasses.replace(
            good, seed_shares=fewer, key_shares={**good.key_shares, some: good.seed_shares[some]}
        ),
        # the seed share of the dropped client as well
        dataclasses.replace(good, seed_shares={**good.seed_shares, 4: good.key_shares[4]}),
        # nothing about the dropped client
        dataclasses.replace(good, key_shares={}),
    ]
    for msg in forged:
        with pytest.raises(ProtocolError, match="answered a different unmask request"):
            h.server.receive(msg)
    short = {v: s[:-1] for v, s in good.seed_shares.items()}
    with pytest.raises(ProtocolError, match="shape"):
        h.server.receive(dataclasses.replace(good, seed_shares=short))
    h.server.receive(good)
    with pytest.raises(ProtocolError, match="second UnmaskShares"):
        h.server.receive(good)


def test_only_signers_are_asked_to_unmask() -> None:
    h = Harness.make(6, 4, consistency=True)
    h.step()
    h.step()
    h.step()
    assert set(h.outbox) == set(range(6))
    sig = h.clients[5].handle(h.outbox[5])
    assert isinstance(sig, ConsistencySignature)
    h.step({5})
    assert set(h.outbox) == set(range(5))
    with pytest.raises(ProtocolError, match="who was not asked"):
        h.server.receive(UnmaskShares(7, 5, {}, {}))
    result = h.run()
    assert result.included == tuple(range(6)) and result.sets["U4"] == 5


def test_start_twice_is_refused() -> None:
    h = Harness.make(3, 2)
    with pytest.raises(ProtocolError, match="already started"):
        h.server.start()


# --------------------------------------------------------------------------- configuration


def test_graph_and_threshold_are_validated() -> None:
    cfg = RoundConfig(1, 4, 16, 2)
    with pytest.raises(ConfigError, match="not symmetric"):
        SecAggServer(cfg, {0: (1, 2), 1: (0, 2), 2: (1,)})
    with pytest.raises(ConfigError, match="its own neighbour"):
        SecAggServer(cfg, {0: (0, 1), 1: (0,)})
    ring = {u: ((u - 1) % 5, (u + 1) % 5) for u in range(5)}  # 2 neighbours: t <= 3
    SecAggServer(dataclasses.replace(cfg, threshold=3), ring)
    for t in (0, 4):
        with pytest.raises(ConfigError, match="threshold") as err:
            SecAggServer(dataclasses.replace(cfg, threshold=t), ring)
        assert err.value.field == "threshold"
    with pytest.raises(ConfigError, match="modulus_bits"):
        SecAggServer(dataclasses.replace(cfg, modulus_bits=65), ring)
    with pytest.raises(ConfigError, match="prg"):
        SecAggServer(dataclasses.replace(cfg, prg="rc4"), ring)
    with pytest.raises(ConfigError, match="dim"):
        SecAggServer(dataclasses.replace(cfg, dim=-1), ring)
    with pytest.raises(ConfigError, match="at least one client"):
        SecAggServer(dataclasses.replace(cfg, threshold=1), {})


def test_sum_in_every_ring_and_prg() -> None:
    for bits in (1, 7, 8, 13, 16, 31, 32, 33, 64):
        for prg in ("aes-ctr", "chacha20"):
            h = Harness.make(4, 3, bits=bits, dim=9, prg=prg, seed=bits)
            result = h.run({3: Stage.MASKED_INPUT} if bits % 2 else {})
            assert [int(x) for x in result.total] == plain_sum(h.inputs, result.included, bits)
            assert result.total.dtype.itemsize * 8 >= bits


def _corrupt_share(
    h: Harness, replies: dict[int, Message], holder: int, owner: int, kind: str
) -> None:
    """``holder`` adds 1 to the first element of its share of ``owner``'s seed or key."""
    rep = replies[holder]
    assert isinstance(rep, UnmaskShares)
    shares = dict(rep.seed_shares if kind == "seed" else rep.key_shares)
    bad = shares[owner].copy()
    bad[0] = (int(bad[0]) + 1) % PRIME
    shares[owner] = bad
    seeds = shares if kind == "seed" else rep.seed_shares
    keys = shares if kind == "key" else rep.key_shares
    replies[holder] = UnmaskShares(rep.round_id, holder, seeds, keys)


@pytest.mark.parametrize("kind", ["seed", "key"])
def test_a_crafted_unmask_share_is_ignored_and_its_holder_named(kind: str) -> None:
    """More than t shares back: the crafted one fails its commitment, the sum is right."""
    h = Harness.make(7, 4)
    for _ in range(2):  # set-up, key sharing
        h.step()
    h.step({6})  # 6 shared its keys but sends no masked input: its key is rebuilt
    replies: dict[int, Message] = {u: h.clients[u].handle(wire(m)) for u, m in h.outbox.items()}
    owner = 0 if kind == "seed" else 6
    _corrupt_share(h, replies, 1, owner, kind)
    for r in replies.values():
        h.server.receive(r)
    h.server.advance()
    result = h.server.result
    assert result is not None and result.included == (0, 1, 2, 3, 4, 5)
    assert [int(x) for x in result.total] == plain_sum(h.inputs, result.included, 16)
    assert list(result.faulty) == [1]
    what = "mask-seed" if kind == "seed" else "key"
    assert f"client {owner}'s {what}" in result.faulty[1]


@pytest.mark.parametrize("kind", ["seed", "key"])
def test_a_crafted_unmask_share_with_exactly_t_back_aborts_naming_the_holder(kind: str) -> None:
    """Exactly t shares back and one crafted: abort, never a wrong sum."""
    h = Harness.make(7, 4)
    for _ in range(2):
        h.step()
    h.step({6})
    owner = 0 if kind == "seed" else 6
    # only 4 holders of the owner's secret answer: 0..3 (for 6: 0..3 as well)
    replies: dict[int, Message] = {
        u: h.clients[u].handle(wire(m)) for u, m in h.outbox.items() if u < 4
    }
    _corrupt_share(h, replies, 2, owner, kind)
    for r in replies.values():
        h.server.receive(r)
    what = "mask-seed" if kind == "seed" else "key"
    with pytest.raises(
        SecAggAbort,
        match=rf"client {owner}'s {what} has 3 valid shares back \(bad shares from \[2\]",
    ) as info:
        h.server.advance()
    assert info.value.stage == "unmask"
    assert h.server.result is None and list(h.server.faulty) == [2]
