"""Tests for :mod:`phloem.secagg.client`: what a client refuses, and what its upload reveals.

A client must survive a server that tampers with, re-addresses or replays relayed shares,
sends messages out of order or from another round, or asks for both shares of one client;
with the consistency check it must catch a server that shows different survivor sets to
different clients. Its masked upload must look uniform whatever its input (chi-square tests
with fixed seeds).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from scipy import stats
from secagg_reference import Harness, plain_sum

from phloem.core.errors import ProtocolError, SecAggAbort
from phloem.secagg.client import CHUNKS, SecAggClient, consistency_payload, split_keys
from phloem.secagg.crypto import shamir
from phloem.secagg.crypto.keys import KeyPair, insecure_random_bytes
from phloem.secagg.graph import harary_neighbours
from phloem.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeysAdvert,
    KeysBroadcast,
    MaskedInput,
    RoundConfig,
    Setup,
    SharesDelivery,
    Stage,
    UnmaskRequest,
    UnmaskShares,
)

P_MIN = 1e-3  # fixed seeds: a correct PRG passes, a broken mask fails by orders of magnitude


def _to_masked_input(h: Harness, skip: frozenset[int] = frozenset()) -> None:
    """Crank ``h`` to the point where the server has sent the share deliveries."""
    h.step()
    h.step(skip)
    assert all(isinstance(m, SharesDelivery) for m in h.outbox.values())


# --------------------------------------------------------------------------- stage order


def test_stage_order_and_repeats_are_refused() -> None:
    h = Harness.make(4, 3)
    c = h.clients[0]
    with pytest.raises(ProtocolError, match="KeysBroadcast while at stage SETUP"):
        c.handle(KeysBroadcast(7, {}))
    with pytest.raises(ProtocolError, match="UnmaskRequest while at stage SETUP"):
        c.handle(UnmaskRequest(7, (0,), (), {}))
    with pytest.raises(ProtocolError, match="unexpected message KeysAdvert"):
        c.handle(KeysAdvert(7, 1, b"", b""))
    setup = h.outbox[0]
    h.step()
    with pytest.raises(ProtocolError, match="second set-up"):
        c.handle(setup)
    with pytest.raises(ProtocolError, match="SharesDelivery while at stage SHARE_KEYS"):
        c.handle(SharesDelivery(7, {}))
    h.step()
    h.step()
    with pytest.raises(ProtocolError, match="ConsistencyRequest while at stage UNMASK"):
        c.handle(ConsistencyRequest(7, (0, 1, 2, 3)))
    request = h.outbox[0]
    stale = dataclasses.replace(request, round_id=8)
    with pytest.raises(ProtocolError, match="round 8, this is round 7"):
        c.handle(stale)
    first = c.handle(request)
    assert isinstance(first, UnmaskShares) and c.stage is Stage.DONE
    with pytest.raises(ProtocolError, match="UnmaskRequest while at stage DONE"):
        c.handle(request)


def test_stale_messages_are_refused_at_every_stage() -> None:
    h = Harness.make(4, 3, consistency=True)
    while h.outbox:
        for u, msg in h.outbox.items():
            if not isinstance(msg, Setup):  # set-up carries the round, nothing to compare
                with pytest.raises(ProtocolError, match="stale or replayed"):
                    h.clients[u].handle(dataclasses.replace(msg, round_id=msg.round_id + 1))
        h.step()
    assert h.server.result is not None


def test_bad_setups_are_refused() -> None:
    cfg = RoundConfig(1, 4, 16, 2, num_clients=2)

    def client() -> SecAggClient:
        return SecAggClient(0, np.zeros(4, np.uint16), rand=insecure_random_bytes(0))

    bad = [
        (Setup(1, cfg, 5, {1: 2}, 1), "addressed to 5"),
        (Setup(2, cfg, 0, {1: 2}, 1), "addressed"),  # round id differs from the config's
        (Setup(1, cfg, 0, {0: 2, 1: 3}, 1), "own neighbour"),
        (Setup(1, cfg, 0, {1: 1}, 1), "distinct"),
        (Setup(1, cfg, 0, {1: 0}, 1), "non-zero"),
        (Setup(1, cfg, 0, {1: shamir.PRIME}, 1), "non-zero"),
        (Setup(1, dataclasses.replace(cfg, prg="rc4"), 0, {1: 2}, 1), "unusable"),
        (Setup(1, dataclasses.replace(cfg, modulus_bits=0), 0, {1: 2}, 1), "unusable"),
    ]
    for msg, match in bad:
        with pytest.raises(ProtocolError, match=match):
            client().handle(msg)
    refused = [
        (dataclasses.replace(cfg, threshold=3), "threshold 3 exceeds its 2 share holders"),
        (dataclasses.replace(cfg, threshold=1), "t must exceed k / 2 = 1"),
        (dataclasses.replace(cfg, threshold=0), "t must exceed k / 2"),
        (dataclasses.replace(cfg, num_clients=0), "0 clients in the round"),
        (dataclasses.replace(cfg, num_clients=1), "1 clients in the round"),
    ]
    for config, match in refused:
        c = client()
        with pytest.raises(SecAggAbort, match=match) as err:
            c.handle(Setup(1, config, 0, {1: 2}, 1))
        assert err.value.stage == "setup" and c.stage is Stage.DONE


def test_bad_key_broadcasts_are_refused() -> None:
    h = Harness.make(5, 3)
    h.step()
    c, good = h.clients[0], h.outbox[0]
    assert isinstance(good, KeysBroadcast) and set(good.keys) == {1, 2, 3, 4}
    bundle = dict(good.keys)
    with pytest.raises(ProtocolError, match="non-neighbours"):
        c.handle(KeysBroadcast(7, {**bundle, 9: bundle[1]}))
    with pytest.raises(SecAggAbort, match="only 2 neighbours advertised usable keys") as err:
        c.handle(KeysBroadcast(7, {1: bundle[1]}))
    assert err.value.stage == "share_keys" and c.stage is Stage.DONE
    assert split_keys(bundle[1] + b"s" * 32, True)[2] == b"s" * 32


@pytest.mark.parametrize(
    ("forge", "rejected", "why"),
    [
        (lambda b, own: {**b, 2: b[1]}, {1, 2}, "also advertised"),  # 2 copies 1's keys
        (lambda b, own: {**b, 2: own.c_public + own.s_public}, {2}, "also advertised"),
        (lambda b, own: {**b, 2: b[2][:32] * 2}, {2}, "both purposes"),
        (lambda b, own: {**b, 2: b[2][:-1]}, {2}, "64 bytes, got 63"),
        (lambda b, own: {**b, 2: bytes(32) + b[2][32:]}, {2}, "low-order"),
        (lambda b, own: {**b, 2: b[2][:32] + (1).to_bytes(32, "little")}, {2}, "low-order"),
    ],
    ids=["copied", "own-key", "same-twice", "short", "zero-point", "order-one-point"],
)
def test_a_neighbour_with_a_bad_key_is_left_out_not_a_reason_to_stop(
    forge: object, rejected: set[int], why: str
) -> None:
    """A key relayed by a (malicious) server that is not a usable, unique X25519 key makes the
    client treat that neighbour as dropped: no share for it, and the client goes on."""
    h = Harness.make(5, 3)
    h.step()
    c, good = h.clients[0], h.outbox[0]
    own = h.received[0][0]
    assert isinstance(good, KeysBroadcast) and isinstance(own, KeysAdvert)
    keys = forge(dict(good.keys), own)  # type: ignore[operator]
    reply = c.handle(KeysBroadcast(7, keys))
    assert isinstance(reply, EncryptedShares)
    assert set(reply.ciphertexts) == {1, 2, 3, 4} - rejected
    assert set(c.rejected) == rejected and all(why in c.rejected[v] for v in rejected)


# --------------------------------------------------------------------------- relayed shares


def _rejects(h: Harness, client: int, delivery: SharesDelivery, sender: int, why: str) -> None:
    """``client`` answers ``delivery`` with its masked input, rejecting only ``sender``'s share,
    holding none of it, and still masking with ``sender`` (the server's view of the pairs)."""
    fresh = copy.deepcopy(h.clients[client])
    reply = fresh.handle(delivery)
    assert isinstance(reply, MaskedInput)
    assert list(reply.rejected) == [sender] and why in reply.rejected[sender]
    assert sender not in fresh._held and fresh._u2 == sorted(delivery.ciphertexts)


def test_tampered_relayed_shares_are_rejected() -> None:
    h = Harness.make(5, 3)
    _to_masked_input(h)
    delivery = h.outbox[0]
    assert isinstance(delivery, SharesDelivery)
    sealed = delivery.ciphertexts[1]
    for bit in (0, 50, 8 * 12 + 3, 8 * len(sealed) // 2, 8 * len(sealed) - 1):  # nonce..tag
        flipped = bytearray(sealed)
        flipped[bit // 8] ^= 1 << (bit % 8)
        forged = dataclasses.replace(
            delivery, ciphertexts={**delivery.ciphertexts, 1: bytes(flipped)}
        )
        _rejects(h, 0, forged, 1, "failed authentication")
    for cut in (sealed[:-1], sealed[:10], b""):
        forged = dataclasses.replace(delivery, ciphertexts={**delivery.ciphertexts, 1: cut})
        _rejects(h, 0, forged, 1, "")
    # an authentic share whose commitment was altered in transit
    other = dataclasses.replace(delivery, commitments={**delivery.commitments, 1: bytes(64)})
    _rejects(h, 0, other, 1, "does not match its owner's commitment")


def test_readdressed_relayed_shares_are_rejected() -> None:
    h = Harness.make(5, 3)
    _to_masked_input(h)
    to0, to2 = h.outbox[0], h.outbox[2]
    assert isinstance(to0, SharesDelivery) and isinstance(to2, SharesDelivery)
    # 1's share for 2, handed to 0 as if it were 1's share for 0 (receivers swapped)
    forged = dataclasses.replace(to0, ciphertexts={**to0.ciphertexts, 1: to2.ciphertexts[1]})
    _rejects(h, 0, forged, 1, "failed authentication")
    forged = dataclasses.replace(to2, ciphertexts={**to2.ciphertexts, 1: to0.ciphertexts[1]})
    _rejects(h, 2, forged, 1, "failed authentication")
    # 1's and 3's shares for 0 under each other's names (senders swapped)
    swapped = {**to0.ciphertexts, 1: to0.ciphertexts[3], 3: to0.ciphertexts[1]}
    reply = copy.deepcopy(h.clients[0]).handle(dataclasses.replace(to0, ciphertexts=swapped))
    assert isinstance(reply, MaskedInput) and sorted(reply.rejected) == [1, 3]
    # 2's delivery contains 0's own share: 0 never advertised a key to itself
    with pytest.raises(ProtocolError, match="non-neighbours"):
        copy.deepcopy(h.clients[0]).handle(to2)
    reply = h.clients[0].handle(to0)  # the genuine delivery still goes through
    assert isinstance(reply, MaskedInput) and reply.rejected == {}


def test_shares_replayed_from_another_round_are_rejected() -> None:
    """Same secret randomness in both rounds: only the round in the key and AD differs."""
    old, new = Harness.make(4, 3, round_id=7), Harness.make(4, 3, round_id=8)
    for h in (old, new):
        _to_masked_input(h)
    a, b = old.received[0][0], new.received[0][0]
    assert isinstance(a, KeysAdvert) and isinstance(b, KeysAdvert)
    assert (a.c_public, a.s_public) == (b.c_public, b.s_public)
    replay = old.outbox[0]
    assert isinstance(replay, SharesDelivery)
    new_delivery = new.outbox[0]
    assert isinstance(new_delivery, SharesDelivery)
    forged = dataclasses.replace(
        new_delivery, ciphertexts={**new_delivery.ciphertexts, 1: replay.ciphertexts[1]}
    )
    _rejects(new, 0, forged, 1, "failed authentication")
    reply = new.clients[0].handle(new.outbox[0])
    assert isinstance(reply, MaskedInput) and reply.rejected == {}


def test_too_few_relayed_shares_make_the_client_drop_out() -> None:
    h = Harness.make(5, 4)
    _to_masked_input(h)
    delivery = h.outbox[0]
    assert isinstance(delivery, SharesDelivery)
    two = {v: delivery.ciphertexts[v] for v in (1, 2)}
    with pytest.raises(SecAggAbort, match="only 3 neighbours sent shares") as err:
        h.clients[0].handle(SharesDelivery(7, two))
    assert err.value.stage == "masked_input"


def test_bad_inputs_are_refused() -> None:
    for bad in (
        np.zeros(7, np.uint16),
        np.zeros(8, np.float64),
        np.full(8, -1, np.int64),
        np.full(8, 1 << 16, np.int64),
        np.zeros((8, 1), np.uint16),
    ):
        h = Harness.make(
            3, 2, inputs={0: bad, 1: np.zeros(8, np.uint16), 2: np.zeros(8, np.uint16)}
        )
        _to_masked_input(h)
        with pytest.raises(ProtocolError, match="input"):
            h.clients[0].handle(h.outbox[0])
    # any integer dtype is fine when the values fit
    ok = np.arange(8, dtype=np.int64) * 8191
    h = Harness.make(3, 2, inputs={0: ok, 1: ok, 2: ok})
    assert [int(x) for x in h.run().total] == [(3 * int(x)) % 2**16 for x in ok]


# --------------------------------------------------------------------------- unmask requests


def _client_at_unmask() -> tuple[Harness, UnmaskRequest]:
    """5 clients: 4 shares its keys but sends no masked input; client 0 is asked to unmask."""
    h = Harness.make(5, 3)
    _to_masked_input(h)
    h.step({4})
    req = h.outbox[0]
    assert isinstance(req, UnmaskRequest)
    assert req.survivors == (0, 1, 2, 3) and req.dropped == (4,)
    return h, req


def test_request_for_both_shares_of_one_client_is_refused() -> None:
    h, req = _client_at_unmask()
    c = h.clients[0]
    for surv, drop in [((0, 1, 2, 3), (1, 4)), ((0, 1, 2, 3, 4), (4,)), ((0, 2), (2,))]:
        h2, _ = _client_at_unmask()
        with pytest.raises(ProtocolError, match="both shares"):
            h2.clients[0].handle(UnmaskRequest(7, surv, drop, {}))
        assert h2.clients[0].stage is Stage.DONE  # and it will not answer another request
        with pytest.raises(ProtocolError):
            h2.clients[0].handle(req)
    # the genuine request is answered with exactly what was asked
    reply = c.handle(req)
    assert isinstance(reply, UnmaskShares)
    assert set(reply.seed_shares) == {0, 1, 2, 3} and set(reply.key_shares) == {4}
    assert all(s.shape == (CHUNKS,) and s.dtype == np.uint32 for s in reply.seed_shares.values())


def test_requests_about_strangers_or_its_own_key_are_refused() -> None:
    h, _ = _client_at_unmask()
    c = h.clients[0]
    with pytest.raises(ProtocolError, match="its own key share"):
        c.handle(UnmaskRequest(7, (1, 2, 3), (0, 4), {}))
    # a refused request ends the client's round: no second request is answered
    assert c.stage is Stage.DONE
    with pytest.raises(ProtocolError, match="stage DONE"):
        c.handle(UnmaskRequest(7, (0, 1, 2, 3), (4,), {}))
    h, _ = _client_at_unmask()
    with pytest.raises(ProtocolError, match="holds no shares of \\[99\\]"):
        h.clients[0].handle(UnmaskRequest(7, (0, 1, 2, 3), (4, 99), {}))
    # nobody holds shares of a client that never shared its keys
    h = Harness.make(5, 3)
    h.step()
    h.step({4})
    h.step()
    with pytest.raises(ProtocolError, match="holds no shares of \\[4\\]"):
        h.clients[0].handle(UnmaskRequest(7, (0, 1, 2, 3), (4,), {}))
    # SecAgg+: a client holds shares of its neighbours only
    graph = harary_neighbours(list(range(8)), 3, np.random.default_rng(2))
    h = Harness.make(t=2, graph=graph)
    _to_masked_input(h)
    h.step()
    stranger = next(v for v in graph if v != 0 and v not in graph[0])
    with pytest.raises(ProtocolError, match=f"holds no shares of \\[{stranger}\\]"):
        h.clients[0].handle(UnmaskRequest(7, (0, stranger), (), {}))


def test_revealed_shares_rebuild_the_dropped_clients_key() -> None:
    h, _ = _client_at_unmask()
    replies = {u: h.clients[u].handle(m) for u, m in h.outbox.items()}
    points = h.server.points
    xs = np.array([points[u] for u in (0, 2, 3)], dtype=np.uint64)
    rows = []
    for u in (0, 2, 3):
        reply = replies[u]
        assert isinstance(reply, UnmaskShares)
        rows.append(reply.key_shares[4])
    secret = shamir.field_to_bytes(shamir.combine(xs, np.stack(rows), 3), 32)
    advert = h.received[0][4]
    assert isinstance(advert, KeysAdvert)
    assert KeyPair.from_secret(secret).public == advert.s_public
    # two shares are not enough for the server to finish
    for u in (0, 2):
        h.server.receive(replies[u])
    with pytest.raises(SecAggAbort, match="2 clients answered"):
        h.server.advance()


# --------------------------------------------------------------------------- consistency check


def _at_consistency(n: int = 6, t: int = 4) -> Harness:
    h = Harness.make(n, t, consistency=True)
    _to_masked_input(h)
    h.step()
    assert all(isinstance(m, ConsistencyRequest) for m in h.outbox.values())
    return h


def test_consistency_check_passes_with_an_honest_server() -> None:
    h = _at_consistency()
    result = h.run({5: Stage.CONSISTENCY})
    assert result.included == tuple(range(6))
    assert result.sets == {"U1": 6, "U2": 6, "U3": 6, "U4": 5, "U5": 5}
    assert [int(x) for x in result.total] == plain_sum(h.inputs, range(6), 16)


def test_different_survivor_sets_for_different_clients_are_caught() -> None:
    h = _at_consistency()
    full = h.outbox[0]
    assert isinstance(full, ConsistencyRequest) and full.survivors == tuple(range(6))
    h.outbox[0] = ConsistencyRequest(7, (0, 1, 2, 3, 4))  # 0 is told that 5 dropped
    h.step()
    requests = dict(h.outbox)
    assert set(requests) == set(range(6))
    for u, req in requests.items():
        with pytest.raises((ProtocolError, SecAggAbort)):
            h.clients[u].handle(req)
    # the same, with the server telling 0 a story consistent with what 0 signed
    h = _at_consistency()
    h.outbox[0] = ConsistencyRequest(7, (0, 1, 2, 3, 4))
    h.step()
    req = h.outbox[0]
    assert isinstance(req, UnmaskRequest)
    lie = UnmaskRequest(7, (0, 1, 2, 3, 4), (5,), req.signatures)
    with pytest.raises(SecAggAbort, match="signed a different survivor set") as err:
        h.clients[0].handle(lie)
    assert err.value.stage == "unmask"


def test_forged_or_missing_signatures_are_caught() -> None:
    h = _at_consistency()
    h.step()
    req = h.outbox[0]
    assert isinstance(req, UnmaskRequest) and set(req.signatures) == {0, 1, 2, 3, 4, 5}
    forged = bytearray(req.signatures[3])
    forged[10] ^= 0x40
    for sigs, err_type, match in [
        ({**req.signatures, 3: bytes(forged)}, SecAggAbort, "3 signed a different"),
        ({**req.signatures, 3: req.signatures[4]}, SecAggAbort, "3 signed a different"),
        ({**req.signatures, 3: b"short"}, SecAggAbort, "3 signed a different"),
        ({**req.signatures, 9: req.signatures[4]}, ProtocolError, "not a surviving peer"),
        # its own signature and two more: t = 4 are needed
        ({v: req.signatures[v] for v in (0, 1, 2)}, SecAggAbort, "only 3 valid consistency"),
        # four others, but without its own it does not count itself
        ({v: req.signatures[v] for v in (1, 2, 3)}, SecAggAbort, "only 3 valid consistency"),
        # its own signature, forged
        ({**req.signatures, 0: req.signatures[1]}, SecAggAbort, "0 signed a different"),
    ]:
        fresh = _at_consistency()  # same seeds: the same keys, signatures and request
        fresh.step()
        assert fresh.outbox[0] == req
        with pytest.raises(err_type, match=match):
            fresh.clients[0].handle(dataclasses.replace(req, signatures=sigs))
    four = {v: req.signatures[v] for v in (0, 1, 2, 5)}
    reply = h.clients[0].handle(dataclasses.replace(req, signatures=four))
    assert isinstance(reply, UnmaskShares)


def test_a_signed_survivor_cannot_be_unmasked_as_dropped() -> None:
    h = _at_consistency()
    h.step()
    req = h.outbox[0]
    assert isinstance(req, UnmaskRequest)
    with pytest.raises(ProtocolError, match="contradicts the signed survivors"):
        h.clients[0].handle(UnmaskRequest(7, (0, 1, 2, 3, 4), (5,), req.signatures))


def test_client_refuses_to_sign_a_set_without_itself() -> None:
    h = _at_consistency()
    with pytest.raises(ProtocolError, match="not in the survivor list"):
        h.clients[0].handle(ConsistencyRequest(7, (1, 2, 3, 4, 5)))
    reply = h.clients[0].handle(h.outbox[0])
    assert isinstance(reply, ConsistencySignature) and len(reply.signature) == 64
    assert consistency_payload(7, (3, 1, 2)) == consistency_payload(7, (1, 2, 3))
    assert consistency_payload(7, (1, 2)) != consistency_payload(8, (1, 2))


# --------------------------------------------------------------------------- uniform uploads


def _masked_upload(x0: np.ndarray, seed: int) -> np.ndarray:
    dim = x0.size
    gen = np.random.default_rng(seed)
    inputs = {u: gen.integers(0, 2**32, dim, dtype=np.uint64).astype(np.uint32) for u in range(5)}
    inputs[0] = x0
    h = Harness.make(5, 3, dim=dim, bits=32, inputs=inputs, seed=seed)
    _to_masked_input(h)
    h.answer()
    upload = h.received[-1][0]
    assert isinstance(upload, MaskedInput)
    return upload.vector


def _histograms(v: np.ndarray) -> list[np.ndarray]:
    """Counts of the top, middle and bottom 4-bit fields of 32-bit words."""
    return [np.bincount((v >> np.uint32(s)) & np.uint32(15), minlength=16) for s in (28, 14, 0)]


def test_masked_upload_of_zeros_looks_uniform() -> None:
    v = _masked_upload(np.zeros(8192, np.uint32), seed=3)
    assert v.dtype == np.uint32
    for counts in _histograms(v):
        assert stats.chisquare(counts).pvalue > P_MIN
    # every one of the 32 bits is set about half the time
    bits = (v[:, None] >> np.arange(32, dtype=np.uint32)) & np.uint32(1)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / np.sqrt(v.size))


def test_masked_upload_does_not_depend_on_the_input() -> None:
    zeros = _masked_upload(np.zeros(8192, np.uint32), seed=4)
    ones = _masked_upload(np.full(8192, 2**32 - 1, np.uint32), seed=5)
    for a, b in zip(_histograms(zeros), _histograms(ones), strict=True):
        assert stats.chisquare(b).pvalue > P_MIN
        assert stats.chi2_contingency(np.stack([a, b])).pvalue > P_MIN
    # same randomness, different input: the uploads differ by exactly the inputs
    ramp = np.arange(8192, dtype=np.uint32) * np.uint32(524287)
    again = _masked_upload(ramp, seed=4)
    np.testing.assert_array_equal(again - zeros, ramp)
