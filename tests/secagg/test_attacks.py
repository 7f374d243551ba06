"""The threat model of ``docs/secagg.md``, one attack per test, each now failing to hurt.

A malicious server is played by rewriting the server's messages before a client sees them; a
malicious client by a :class:`SecAggClient` whose replies are rewritten. Every round runs
through the real server, the in-process transport and the wire encoding, and every sum that
comes out is checked against the plain sum of the clients it claims to include.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Mapping

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from secagg_reference import Harness, plain_sum, random_inputs, wire

from phloem.core.errors import ProtocolError, SecAggAbort
from phloem.secagg.client import SecAggClient, share_commitment
from phloem.secagg.crypto import shamir
from phloem.secagg.crypto.keys import insecure_random_bytes
from phloem.secagg.driver import InProcessTransport
from phloem.secagg.graph import complete_neighbours, harary_neighbours
from phloem.secagg.messages import (
    EncryptedShares,
    KeysAdvert,
    MaskedInput,
    Message,
    RemaskRequest,
    RoundConfig,
    Setup,
    UnmaskRequest,
    UnmaskShares,
)
from phloem.secagg.policy import ClientPolicy
from phloem.secagg.stages import Stage
from phloem.secagg.transport import RoundReport, run_protocol

Rewrite = Callable[[Message], Message]

#: small-order X25519 points (RFC 7748 section 6.1 and the usual blocklists)
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    # the same points with the top bit set (X25519 ignores it)
    bytes(31) + b"\x80",
    (1).to_bytes(31, "little") + b"\x80",
]


class Evil(SecAggClient):
    """A client whose replies (or the requests it sees) pass through ``rewrite``."""

    def __init__(
        self,
        client_id: int,
        data: np.ndarray,
        *,
        reply: Callable[[SecAggClient, Message, Message], Message] | None = None,
        request: Callable[[Message], Message] | None = None,
        seed: int | None = None,
    ) -> None:
        # by default a byte source no honest client of these tests shares (equal sources
        # give equal keys, which the server rightly refuses as copies)
        rand = insecure_random_bytes(1000 + client_id if seed is None else seed)
        super().__init__(client_id, data, rand=rand)
        self._reply_hook = reply
        self._request_hook = request

    def handle(self, msg: Message) -> Message:
        if self._request_hook is not None:
            msg = self._request_hook(msg)
        out = super().handle(msg)
        return out if self._reply_hook is None else self._reply_hook(self, msg, out)


def run(
    clients: Mapping[int, SecAggClient],
    graph: Mapping[int, tuple[int, ...]],
    t: int,
    dim: int = 8,
    bits: int = 16,
    drop: Mapping[int, Stage] | None = None,
    consistency: bool = False,
) -> RoundReport:
    config = RoundConfig(3, dim, bits, t, consistency_check=consistency)
    return run_protocol(config, graph, InProcessTransport(clients, drop or {}))


def honest(
    graph: Mapping[int, tuple[int, ...]], inputs: Mapping[int, np.ndarray], seed: int = 0
) -> dict[int, SecAggClient]:
    return {
        u: SecAggClient(u, inputs[u], rand=insecure_random_bytes(100 * seed + u)) for u in graph
    }


def assert_exact(
    report: RoundReport, inputs: Mapping[int, np.ndarray], included: list[int]
) -> None:
    assert report.result is not None, report.abort
    assert list(report.result.included) == included
    assert [int(x) for x in report.result.total] == plain_sum(inputs, included, 16)


# --------------------------------------------------------------------------- malicious server


def test_split_view_threshold_lowering_is_refused_by_the_clients() -> None:
    """The attack that unmasked one client: k = 5, the server sends t = 2 to part of them."""
    h = Harness.make(5, 3)
    for u in (0, 1):  # the split view: these two get t = 2 <= k / 2
        setup = h.outbox[u]
        assert isinstance(setup, Setup)
        lowered = dataclasses.replace(setup, config=dataclasses.replace(setup.config, threshold=2))
        with pytest.raises(SecAggAbort, match="refused the round: threshold 2 with 5 share") as e:
            h.clients[u].handle(wire(lowered))
        assert e.value.stage == "setup" and h.clients[u].stage is Stage.DONE
    # the clients that got the honest t go on; the two that refused never sent a key
    h.step({0, 1}, tolerate=True)
    assert set(h.outbox) == {2, 3, 4}


def test_a_server_that_lies_about_n_or_k_is_refused() -> None:
    h = Harness.make(5, 3)
    setup = h.outbox[0]
    assert isinstance(setup, Setup) and setup.config.num_clients == 5
    lies = [
        (dataclasses.replace(setup.config, num_clients=2), "5 share holders .* round of 2"),
        (dataclasses.replace(setup.config, num_clients=1), "1 clients in the round"),
    ]
    for config, match in lies:
        fresh = SecAggClient(0, h.inputs[0], rand=insecure_random_bytes(0))
        with pytest.raises(SecAggAbort, match=match):
            fresh.handle(dataclasses.replace(setup, config=config))
    # a client with its own minimum refuses a t the honest server found acceptable
    strict = SecAggClient(0, h.inputs[0], policy=ClientPolicy(min_threshold=4, min_clients=3))
    with pytest.raises(SecAggAbort, match="below this client's minimum 4"):
        strict.handle(setup)
    too_few = SecAggClient(0, h.inputs[0], policy=ClientPolicy(min_clients=6))
    with pytest.raises(SecAggAbort, match="needs at least 6"):
        too_few.handle(setup)


def test_flower_comparable_parameters_miss_the_corrupt_target_and_are_refused() -> None:
    """n = 100, k = 11, t = 6 (Flower's benchmark setting): with 10% corrupt clients a client
    is unmasked with probability far above 2^-40, so a client holding that target refuses."""
    policy = ClientPolicy(tolerate_corrupt=0.1, sigma=40)
    why = policy.violation(100, 11, 6)
    assert why is not None and "misses the security target" in why
    assert policy.violation(100, 33, 22) is None  # what choose_parameters picks for n = 100
    assert ClientPolicy().violation(100, 11, 6) is None  # no corrupt client assumed


def test_a_server_relaying_a_bad_key_only_loses_that_neighbour() -> None:
    """A server replacing one neighbour's key by a low-order point: the client leaves that
    neighbour out (no share, no mask) instead of stopping; the round goes on."""
    graph = complete_neighbours(list(range(6)))
    inputs = random_inputs(list(graph), 8, 16, 1)

    def forge(msg: Message) -> Message:
        if isinstance(msg, Message) and msg.__class__.__name__ == "KeysBroadcast":
            keys = dict(msg.keys)  # type: ignore[attr-defined]
            keys[5] = LOW_ORDER[2] + keys[5][32:]
            return dataclasses.replace(msg, keys=keys)  # type: ignore[call-arg]
        return msg

    clients = honest(graph, inputs)
    clients[0] = Evil(0, inputs[0], request=forge)
    report = run(clients, graph, 4)
    # 0 and 5 share nothing, so neither holds the other's share; both are in the sum
    assert_exact(report, inputs, [0, 1, 2, 3, 4, 5])
    assert "low-order" in clients[0].rejected[5]


# --------------------------------------------------------------------------- malicious clients


@pytest.mark.parametrize("point", LOW_ORDER, ids=[f"p{i}" for i in range(len(LOW_ORDER))])
@pytest.mark.parametrize("which", ["c_public", "s_public"])
def test_a_low_order_key_is_refused_at_advertise_and_the_round_completes(
    point: bytes, which: str
) -> None:
    graph = complete_neighbours(list(range(6)))
    inputs = random_inputs(list(graph), 8, 16, 2)

    def low_order(client: SecAggClient, msg: Message, out: Message) -> Message:
        if isinstance(out, KeysAdvert):
            return dataclasses.replace(out, **{which: point})
        return out

    clients = honest(graph, inputs)
    clients[2] = Evil(2, inputs[2], reply=low_order)
    report = run(clients, graph, 4)
    assert_exact(report, inputs, [0, 1, 3, 4, 5])
    assert list(report.excluded) == [2] and "low-order" in report.excluded[2]


def test_copied_keys_are_refused_at_advertise_and_the_round_completes() -> None:
    """Client 3 advertises client 1's keys (as if it had learnt them): neither can be told
    from the other, so both are left out, named; the others' round completes."""
    graph = complete_neighbours(list(range(7)))
    inputs = random_inputs(list(graph), 8, 16, 3)
    clients = honest(graph, inputs)

    def copy_keys(client: SecAggClient, msg: Message, out: Message) -> Message:
        if isinstance(out, KeysAdvert):
            victim = clients[1]
            return dataclasses.replace(out, c_public=victim._c.public, s_public=victim._s.public)
        return out

    clients[3] = Evil(3, inputs[3], reply=copy_keys)
    report = run(clients, graph, 4)
    assert_exact(report, inputs, [0, 2, 4, 5, 6])
    assert sorted(report.excluded) == [1, 3]
    assert "also advertised by [3]" in report.excluded[1]


def _garbage_to(
    targets: Callable[[int], bool],
) -> Callable[[SecAggClient, Message, Message], Message]:
    def garbage(client: SecAggClient, msg: Message, out: Message) -> Message:
        if isinstance(out, EncryptedShares):
            ciphertexts = {
                v: os.urandom(len(c)) if targets(v) else c for v, c in out.ciphertexts.items()
            }
            return dataclasses.replace(out, ciphertexts=ciphertexts)
        return out

    return garbage


@pytest.mark.parametrize("consistency", [False, True], ids=["plain", "consistency"])
@pytest.mark.parametrize("harary", [False, True], ids=["complete", "harary"])
def test_garbage_ciphertexts_from_one_client_leave_it_out_and_the_round_completes(
    harary: bool, consistency: bool
) -> None:
    """Client 2 sends random bytes as every share: its neighbours reject them, it is excluded
    with its reason, the others mask once more without it, and the sum is theirs, exact."""
    ids = list(range(10))
    graph = (
        harary_neighbours(ids, 7, np.random.default_rng(4)) if harary else complete_neighbours(ids)
    )
    t = 5 if harary else 6
    inputs = random_inputs(ids, 8, 16, 4)
    clients = honest(graph, inputs)
    clients[2] = Evil(2, inputs[2], reply=_garbage_to(lambda v: True))
    report = run(clients, graph, t, consistency=consistency)
    assert_exact(report, inputs, [u for u in ids if u != 2])
    assert list(report.excluded) == [2]
    assert "rejected by" in report.excluded[2] and "failed authentication" in report.excluded[2]
    # the masked-input stage ran twice: 10 masked inputs, then 9 re-masked ones
    assert report.stages[Stage.MASKED_INPUT].answered == 10 + 9


def test_garbage_to_a_few_holders_keeps_the_sender_when_enough_valid_holders_remain() -> None:
    """Garbage to two of nine holders: the sender still has t valid holders, so it stays in
    the sum (no re-mask); the two that rejected its share are not asked for it."""
    ids = list(range(10))
    graph = complete_neighbours(ids)
    inputs = random_inputs(ids, 8, 16, 5)
    clients = honest(graph, inputs)
    clients[2] = Evil(2, inputs[2], reply=_garbage_to(lambda v: v in (5, 7)))
    requests: list[UnmaskRequest] = []

    def spy(msg: Message) -> Message:
        if isinstance(msg, UnmaskRequest):
            requests.append(msg)
        return msg

    clients[5] = Evil(5, inputs[5], request=spy)
    report = run(clients, graph, 6)
    assert_exact(report, inputs, ids)
    assert report.excluded == {} and report.stages[Stage.MASKED_INPUT].answered == 10
    assert requests and 2 not in requests[0].survivors


def test_garbage_from_a_client_that_then_drops_out_leaves_it_out() -> None:
    ids = list(range(8))
    graph = complete_neighbours(ids)
    inputs = random_inputs(ids, 8, 16, 6)
    clients = honest(graph, inputs)
    clients[2] = Evil(2, inputs[2], reply=_garbage_to(lambda v: v != 0))
    report = run(clients, graph, 5, drop={2: Stage.MASKED_INPUT})
    assert_exact(report, inputs, [u for u in ids if u != 2])
    assert list(report.excluded) == [2]


def _crafted_share(owner: int) -> Callable[[SecAggClient, Message, Message], Message]:
    """An unmask answer whose share of ``owner``'s seed or key is off by one."""

    def craft(client: SecAggClient, msg: Message, out: Message) -> Message:
        if not isinstance(out, UnmaskShares):
            return out
        seeds, keys = dict(out.seed_shares), dict(out.key_shares)
        for shares in (seeds, keys):
            if owner in shares:
                bad = shares[owner].copy()
                bad[3] = (int(bad[3]) + 1) % shamir.PRIME
                shares[owner] = bad
        return dataclasses.replace(out, seed_shares=seeds, key_shares=keys)

    return craft


@pytest.mark.parametrize("owner_drops", [False, True], ids=["seed", "key"])
def test_a_crafted_share_with_more_than_t_back_gives_the_exact_sum_and_names_its_holder(
    owner_drops: bool,
) -> None:
    ids = list(range(7))
    graph = complete_neighbours(ids)
    inputs = random_inputs(ids, 8, 16, 7)
    clients = honest(graph, inputs)
    clients[4] = Evil(4, inputs[4], reply=_crafted_share(0))
    report = run(clients, graph, 4, drop={0: Stage.MASKED_INPUT} if owner_drops else None)
    included = [u for u in ids if u != 0] if owner_drops else ids
    assert_exact(report, inputs, included)
    assert list(report.faulty) == [4] and "client 0's" in report.faulty[4]


@pytest.mark.parametrize("owner_drops", [False, True], ids=["seed", "key"])
def test_a_crafted_share_with_exactly_t_back_aborts_rather_than_a_wrong_sum(
    owner_drops: bool,
) -> None:
    ids = list(range(7))
    graph = complete_neighbours(ids)
    inputs = random_inputs(ids, 8, 16, 8)
    clients = honest(graph, inputs)
    clients[4] = Evil(4, inputs[4], reply=_crafted_share(0))
    # with 0 in the sum its own share counts: 0, 1, 4, 5 answer (t = 4); with 0 gone: 1..4
    drop = {2: Stage.UNMASK, 3: Stage.UNMASK, 6: Stage.UNMASK}
    if owner_drops:
        drop = {0: Stage.MASKED_INPUT, 5: Stage.UNMASK, 6: Stage.UNMASK}
    report = run(clients, graph, 4, drop=drop)
    assert report.result is None and report.abort is not None
    assert report.abort.stage == "unmask"
    assert "3 valid shares back (bad shares from [4] ignored)" in report.abort.reason
    assert list(report.faulty) == [4]


def test_an_owner_that_shares_inconsistently_is_named_and_never_gives_a_wrong_sum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Client 2 commits to, and sends, shares that lie on no single polynomial (its own share
    is off): every share matches its commitment, but the rebuilt seed does not match the
    seed commitment, so the round aborts naming 2 (see the threat model: verifiable secret
    sharing would be needed to exclude it instead)."""
    ids = list(range(6))
    graph = complete_neighbours(ids)
    inputs = random_inputs(ids, 8, 16, 9)
    clients = honest(graph, inputs)
    split = shamir.split

    def crooked_split(*args: object, **kw: object) -> np.ndarray:
        rows = split(*args, **kw)  # type: ignore[arg-type]
        rows[0, 0] = (int(rows[0, 0]) + 1) % shamir.PRIME
        return rows

    class Crooked(SecAggClient):
        def handle(self, msg: Message) -> Message:
            if msg.__class__.__name__ != "KeysBroadcast":
                return super().handle(msg)
            with monkeypatch.context() as m:
                m.setattr(shamir, "split", crooked_split)
                return super().handle(msg)

    clients[2] = Crooked(2, inputs[2], rand=insecure_random_bytes(2))
    report = run(clients, graph, 4)
    assert report.result is None and report.abort is not None
    assert "client 2's rebuilt mask seed does not match its commitment" in report.abort.reason
    assert report.faulty == {}


def test_malformed_commitments_or_false_rejections_exclude_their_sender() -> None:
    ids = list(range(6))
    graph = complete_neighbours(ids)
    inputs = random_inputs(ids, 8, 16, 10)
    clients = honest(graph, inputs)

    def no_commitments(client: SecAggClient, msg: Message, out: Message) -> Message:
        if isinstance(out, EncryptedShares):
            return dataclasses.replace(out, commitments={})
        return out

    def stranger_rejected(client: SecAggClient, msg: Message, out: Message) -> Message:
        if out.__class__.__name__ == "MaskedInput":
            return dataclasses.replace(out, rejected={99: "x"})  # type: ignore[call-arg]
        return out

    clients[1] = Evil(1, inputs[1], reply=no_commitments)
    clients[3] = Evil(3, inputs[3], reply=stranger_rejected)
    report = run(clients, graph, 4)
    # 1 is out before its shares count; 3 is out before its masked input counts
    assert_exact(report, inputs, [0, 2, 4, 5])
    assert sorted(report.excluded) == [1, 3]
    assert "commitment" in report.excluded[1] and "never sent" in report.excluded[3]


def test_share_commitments_bind_the_share_its_round_owner_and_holder() -> None:
    row = np.arange(22, dtype=np.uint64)
    base = share_commitment(1, 2, 3, row)
    assert len(base) == 64
    other = row.copy()
    other[21] += 1
    assert share_commitment(1, 2, 3, other)[:32] == base[:32]  # the seed part is untouched
    assert share_commitment(1, 2, 3, other)[32:] != base[32:]
    for args in [(2, 2, 3), (1, 3, 3), (1, 2, 4)]:
        assert share_commitment(*args, row) != base


def test_a_client_takes_one_remask_only_and_only_about_its_neighbours() -> None:
    graph = complete_neighbours(list(range(5)))
    h = Harness.make(5, 3, graph=graph)
    h.step()
    h.step()
    h.answer()  # masked inputs in; the server is not advanced
    c = h.clients[0]
    for bad, match in [((0,), "re-mask excluding"), ((9,), "re-mask excluding")]:
        fresh = copy.deepcopy(c)
        with pytest.raises(ProtocolError, match=match):
            fresh.handle(RemaskRequest(7, bad))
    first = c.handle(RemaskRequest(7, (4,)))
    assert isinstance(first, MaskedInput) and c.rejected[4] == "excluded by the server"
    with pytest.raises(ProtocolError, match="second re-mask"):
        c.handle(RemaskRequest(7, ()))


@st.composite
def attacks(
    draw: st.DrawFn,
) -> tuple[dict[int, tuple[int, ...]], int, dict[int, set[int]], dict[int, Stage], int]:
    n = draw(st.integers(4, 12))
    ids = list(range(n))
    seed = draw(st.integers(0, 2**31))
    if draw(st.booleans()):
        graph = complete_neighbours(ids)
    else:
        graph = harary_neighbours(ids, draw(st.integers(3, n)), np.random.default_rng(seed))
    degrees = [len(vs) for vs in graph.values()]
    assume((max(degrees) + 1) // 2 + 1 <= min(degrees) + 1)
    t = draw(st.integers((max(degrees) + 1) // 2 + 1, min(degrees) + 1))
    # attacker -> the neighbours it sends garbage to
    attackers = draw(st.lists(st.sampled_from(ids), max_size=2, unique=True))
    garbage = {a: set(draw(st.lists(st.sampled_from(graph[a]), unique=True))) for a in attackers}
    drop = draw(
        st.dictionaries(st.sampled_from(ids), st.sampled_from(list(Stage)[:-1]), max_size=2)
    )
    return graph, t, garbage, drop, seed


@settings(max_examples=60, deadline=None)
@given(attacks())
def test_garbage_and_dropouts_never_give_a_wrong_sum(
    case: tuple[dict[int, tuple[int, ...]], int, dict[int, set[int]], dict[int, Stage], int],
) -> None:
    """Any attackers sending garbage to any of their neighbours, any dropouts: the round
    either gives the exact sum of the clients it names, leaving out only attackers (or
    clients starved of holders by them), or aborts cleanly."""
    graph, t, garbage, drop, seed = case
    inputs = random_inputs(sorted(graph), 5, 16, seed)
    clients = honest(graph, inputs, seed % 1000)
    for a, targets in garbage.items():
        clients[a] = Evil(a, inputs[a], reply=_garbage_to(targets.__contains__))
    report = run(clients, graph, t, dim=5, drop=drop)
    if report.result is None:
        assert report.abort is not None
        return
    included = list(report.result.included)
    assert [int(x) for x in report.result.total] == plain_sum(inputs, included, 16)
    for u, why in report.excluded.items():
        assert u in garbage or "too few share holders" in why, (u, why)
    assert report.faulty == {}
