"""The server side of SecAgg / SecAgg+ as a sans-IO state machine.

The caller (a driver, a network loop, a Flower workflow) drives it:

>>> server = SecAggServer(config, neighbours)              # doctest: +SKIP
>>> outbox = server.start()                                 # {client: Setup}
>>> for reply in replies: server.receive(reply)             # whatever arrived in time
>>> outbox = server.advance()                               # close the stage, next requests
... # repeat until server.result is set (advance() returns {}) or SecAggAbort is raised

Who answered each stage defines the sets of Bonawitz et al.: U1 advertised keys, U2 sent
shares, U3 sent masked inputs, U4 (with the consistency check) signed U3, U5 sent unmask
shares. The result is the sum over exactly U3. Clients that drop at any stage are handled:
dropping before the masked input removes the client from the sum (its pairwise masks are
rebuilt from its key shares); dropping later does not matter as long as ``t`` holders answer.

The server asks each surviving holder for mask-seed shares of U3 members and key shares of
U2 \\ U3 members only: it never requests, and :meth:`receive` refuses, both kinds of share of
one client. Whenever a threshold condition fails the round raises :class:`SecAggAbort` with
the stage and the reason, before any share that could unmask a partial set is combined.

Bad actors are left out rather than allowed to stop the round (:attr:`SecAggServer.excluded`
names each one and why): a client whose advertised key is malformed, of low order or a copy
of another client's is refused at the advertisement; shares travel only over pairs where both
clients sent each other theirs; a sender whose shares too many holders rejected (they failed
to authenticate or to match its commitment) is excluded after the masked input, and the others
mask once more without it (:class:`RemaskRequest`). Every share revealed at unmask is checked
against its owner's commitment, a holder whose share does not match is named in
:attr:`SecAggServer.faulty` and its share ignored, and every rebuilt secret is verified (the
seed against its commitment, the key against the advertised public key), so the sum is either
right or the round aborts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from phloem.core.errors import ConfigError, ProtocolError, SecAggAbort
from phloem.secagg.client import (
    CHUNKS,
    COMMITMENT_BYTES,
    mask_info,
    part_commitment,
    seed_commitment,
)
from phloem.secagg.crypto import shamir
from phloem.secagg.crypto.keys import KEY_BYTES, KeyPair, agree, check_public_key
from phloem.secagg.crypto.prg import SEED_BYTES, PrgKind, expand
from phloem.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeysAdvert,
    KeysBroadcast,
    MaskedInput,
    Message,
    RemaskRequest,
    RoundConfig,
    Setup,
    SharesDelivery,
    UnmaskRequest,
    UnmaskShares,
)
from phloem.secagg.ring import dtype_for_bits, reduce, ring_add, ring_sub
from phloem.secagg.stages import Stage

__all__ = ["AggregateResult", "SecAggServer"]

_REPLY_TYPE: dict[Stage, type[Message]] = {
    Stage.SETUP: KeysAdvert,
    Stage.SHARE_KEYS: EncryptedShares,
    Stage.MASKED_INPUT: MaskedInput,
    Stage.CONSISTENCY: ConsistencySignature,
    Stage.UNMASK: UnmaskShares,
}


_NO_VECTOR = np.zeros(0, dtype=np.uint8)
_REASON_CHARS = 200  # a client's stated reason is kept, cut to this length

_M = TypeVar("_M")


class AggregateResult:
    """The unmasked sum and who is in it."""

    def __init__(
        self,
        total: np.ndarray,
        included: tuple[int, ...],
        sets: dict[str, int],
        excluded: dict[int, str] | None = None,
        faulty: dict[int, str] | None = None,
    ):
        self.total = total
        #: U3: the clients whose inputs are in ``total``
        self.included = included
        #: size of U1..U5 (how many answered each stage)
        self.sets = sets
        #: clients the server left out of the round for misbehaving, and why
        self.excluded = dict(excluded or {})
        #: holders whose revealed shares did not match their commitments (ignored), and why
        self.faulty = dict(faulty or {})

    def __repr__(self) -> str:
        return f"AggregateResult(dim={self.total.size}, included={len(self.included)})"


def _short(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


class SecAggServer:
    """The server of one round.

    Parameters
    ----------
    config
        The round's public parameters (sent to every client). ``num_clients`` 0 is filled in
        with the number of clients of ``neighbours``; another value must equal it.
    neighbours
        Symmetric graph over the participating client ids (see :mod:`phloem.secagg.graph`):
        the complete graph is SecAgg, a sparse one SecAgg+.

    Raises
    ------
    ConfigError
        For an unusable config or graph, and for a threshold that is not above half of some
        client's share holders (``2t <= k``: honest clients refuse such a round).
    """

    def __init__(self, config: RoundConfig, neighbours: Mapping[int, Sequence[int]]) -> None:
        dtype_for_bits(config.modulus_bits)
        try:
            PrgKind(config.prg)
        except ValueError:
            raise ConfigError("prg", f"unknown PRG {config.prg!r}", list(PrgKind)) from None
        if config.dim < 0:
            raise ConfigError("dim", f"{config.dim} entries: must be >= 0")
        self.graph = {u: tuple(sorted(vs)) for u, vs in neighbours.items()}
        if not self.graph:
            raise ConfigError("neighbours", "a round needs at least one client")
        for u, vs in self.graph.items():
            if u in vs:
                raise ConfigError("neighbours", f"client {u} is its own neighbour")
            for v in vs:
                if u not in self.graph.get(v, ()):
                    raise ConfigError("neighbours", f"graph is not symmetric at ({u}, {v})")
        if config.num_clients == 0:
            config = dataclasses.replace(config, num_clients=len(self.graph))
        elif config.num_clients != len(self.graph):
            raise ConfigError(
                "num_clients", f"{config.num_clients}, but the graph has {len(self.graph)}"
            )
        degrees = [len(vs) for vs in self.graph.values()]
        if not 1 <= config.threshold <= min(degrees) + 1:
            raise ConfigError(
                "threshold", f"{config.threshold} must lie in 1..{min(degrees) + 1} (num_shares)"
            )
        if 2 * config.threshold <= max(degrees) + 1:
            k = max(degrees) + 1
            raise ConfigError(
                "threshold",
                f"{config.threshold} <= k / 2 = {k / 2:g} for a client with {k} share holders: "
                "clients refuse it (the server alone could rebuild both of a client's secrets)",
                [f"{k // 2 + 1}..{min(degrees) + 1}"],
            )
        self.config = config
        self.points = {u: i + 1 for i, u in enumerate(sorted(self.graph))}
        self.stage = Stage.SETUP
        self.result: AggregateResult | None = None
        #: clients left out of the round for misbehaving, and why
        self.excluded: dict[int, str] = {}
        #: holders whose revealed shares did not match their commitments, and why
        self.faulty: dict[int, str] = {}
        self._asked: set[int] = set()
        self._inbox: dict[int, Message] = {}
        self._keys: dict[int, KeysAdvert] = {}
        self._pairs: dict[int, set[int]] = {}  # mutual share exchanges among U2
        self._commitments: dict[int, dict[int, bytes]] = {}  # owner -> holder -> commitment
        self._rejected: dict[int, dict[int, str]] = {}  # holder -> owners it rejected
        self._remasked = False
        self._u2: set[int] = set()
        self._u3: tuple[int, ...] = ()
        self._sum: np.ndarray | None = None
        self._running: np.ndarray | None = None
        self._requests: dict[int, UnmaskRequest] = {}
        self._signatures: dict[int, bytes] = {}
        self.sizes: dict[str, int] = {}

    # -- the sans-IO surface --------------------------------------------------------------
    @property
    def waiting_for(self) -> set[int]:
        """Clients asked in this stage that have not answered yet."""
        return self._asked - set(self._inbox)

    def start(self) -> dict[int, Message]:
        """The set-up messages, one per client."""
        if self.stage is not Stage.SETUP or self._asked:
            raise ProtocolError("server already started")
        cfg = self.config
        out: dict[int, Message] = {
            u: Setup(cfg.round_id, cfg, u, {v: self.points[v] for v in vs}, self.points[u])
            for u, vs in self.graph.items()
        }
        self._asked = set(out)
        return out

    def receive(self, msg: Message) -> None:
        """Accept one reply for the current stage; raises :class:`ProtocolError` otherwise.

        A reply that fails validation also puts its sender in :attr:`excluded`.
        """
        want = _REPLY_TYPE.get(self.stage)
        sender = getattr(msg, "sender", None)
        if msg.round_id != self.config.round_id:
            raise ProtocolError(f"message for round {msg.round_id}: stale or replayed")
        if want is None or not isinstance(msg, want):
            raise ProtocolError(f"got {type(msg).__name__} at stage {self.stage.name}")
        if sender not in self._asked:
            raise ProtocolError(f"{type(msg).__name__} from {sender}, who was not asked")
        if sender in self._inbox:
            raise ProtocolError(f"second {type(msg).__name__} from {sender}")
        try:
            self._validate(msg)
        except ProtocolError as exc:
            self.excluded[sender] = f"{self.stage.value}: {_short(str(exc))}"
            raise
        if isinstance(msg, MaskedInput):
            # add as they arrive: the server holds one vector, not one per client
            if self._running is None:
                self._running = np.zeros_like(msg.vector)
            np.add(self._running, msg.vector, out=self._running)
            msg = MaskedInput(msg.round_id, msg.sender, _NO_VECTOR, msg.rejected)
        self._inbox[sender] = msg

    def advance(self) -> dict[int, Message]:
        """Close the current stage with whoever answered; the next stage's requests.

        Returns ``{}`` once the result is ready (in :attr:`result`). Raises
        :class:`SecAggAbort` when the answers cannot satisfy the threshold.
        """
        inbox, self._inbox = self._inbox, {}
        step = {
            Stage.SETUP: self._after_keys,
            Stage.SHARE_KEYS: self._after_shares,
            Stage.MASKED_INPUT: self._after_masked,
            Stage.CONSISTENCY: self._after_consistency,
            Stage.UNMASK: self._after_unmask,
        }.get(self.stage)
        if step is None:
            raise ProtocolError(f"nothing to advance at stage {self.stage.name}")
        out = step(inbox)
        self._asked = set(out)
        return out

    # -- checks ---------------------------------------------------------------------------
    def _validate(self, msg: Message) -> None:
        cfg = self.config
        if isinstance(msg, KeysAdvert):
            check_public_key(msg.c_public)
            check_public_key(msg.s_public)
            if msg.c_public == msg.s_public:
                raise ProtocolError("one key advertised for both purposes")
            if cfg.consistency_check and len(msg.sign_public) != KEY_BYTES:
                raise ProtocolError("signing key missing")
            if len(msg.seed_commitment) != COMMITMENT_BYTES:
                raise ProtocolError("seed commitment missing")
        elif isinstance(msg, EncryptedShares):
            if not set(msg.ciphertexts) <= self._broadcast_to(msg.sender):
                raise ProtocolError("shares addressed to clients it got no keys of")
            holders = {msg.sender, *msg.ciphertexts}
            if set(msg.commitments) != holders or any(
                len(c) != 2 * COMMITMENT_BYTES for c in msg.commitments.values()
            ):
                raise ProtocolError("no commitment, or a malformed one, for each share")
        elif isinstance(msg, MaskedInput):
            dt = dtype_for_bits(cfg.modulus_bits)
            if msg.vector.shape != (cfg.dim,) or msg.vector.dtype != dt:
                raise ProtocolError(
                    f"masked input must be {cfg.dim} x {dt}, "
                    f"got {msg.vector.shape} {msg.vector.dtype}"
                )
            if not set(msg.rejected) <= self._pairs.get(msg.sender, set()):
                raise ProtocolError("rejected shares it was never sent")
        elif isinstance(msg, UnmaskShares):
            req = self._requests[msg.sender]
            if set(msg.seed_shares) != set(req.survivors) or set(msg.key_shares) != set(
                req.dropped
            ):
                raise ProtocolError("answered a different unmask request")
            for share in (*msg.seed_shares.values(), *msg.key_shares.values()):
                if share.shape != (CHUNKS,):
                    raise ProtocolError(f"a share has shape {share.shape}")

    def _abort(self, reason: str) -> SecAggAbort:
        stage = self.stage.value
        self.stage = Stage.DONE
        return SecAggAbort(stage, reason)

    def _require(self, have: int, what: str) -> None:
        if have < self.config.threshold:
            raise self._abort(f"{have} {what}, threshold is {self.config.threshold}")

    # -- stages ---------------------------------------------------------------------------
    def _broadcast_to(self, u: int) -> set[int]:
        return {v for v in self.graph[u] if v in self._keys}

    def _prune(
        self, answers: dict[int, _M], adjacent: Callable[[int], Sequence[int] | set[int]]
    ) -> dict[int, _M]:
        """``answers`` without the clients that have fewer than ``t`` holders among them.

        A client with fewer than ``t`` live holders (itself included) drops out by itself;
        removing it may starve its neighbours, so this repeats until stable.
        """
        live, t = dict(answers), self.config.threshold
        while True:
            short = {u for u in live if sum(v in live for v in adjacent(u)) + 1 < t}
            if not short:
                return live
            for u in short:
                del live[u]

    def _after_keys(self, inbox: dict[int, Message]) -> dict[int, Message]:
        adverts = {u: m for u, m in inbox.items() if isinstance(m, KeysAdvert)}
        owners: dict[bytes, set[int]] = {}
        for u, m in adverts.items():
            for key in (m.c_public, m.s_public):
                owners.setdefault(key, set()).add(u)
        for key_owners in owners.values():
            if len(key_owners) > 1:
                for u in key_owners:
                    others = sorted(key_owners - {u})
                    self.excluded[u] = f"setup: advertised a public key also advertised by {others}"
                    adverts.pop(u, None)
        keys = self._prune(adverts, self.graph.__getitem__)
        self._keys = keys
        self.sizes["U1"] = len(keys)
        self._require(len(keys), "clients advertised keys")
        self.stage = Stage.SHARE_KEYS
        out: dict[int, Message] = {}
        for u in keys:
            bundle = {
                v: keys[v].c_public + keys[v].s_public + keys[v].sign_public
                for v in self.graph[u]
                if v in keys
            }
            out[u] = KeysBroadcast(self.config.round_id, bundle)
        return out

    def _after_shares(self, inbox: dict[int, Message]) -> dict[int, Message]:
        shares = {u: m for u, m in inbox.items() if isinstance(m, EncryptedShares)}

        def mutual(u: int) -> set[int]:  # shares travel only where both sides sent theirs
            return {v for v in shares[u].ciphertexts if v in shares and u in shares[v].ciphertexts}

        # each U2 member needs t holders in U2 (itself included)
        shares = self._prune(shares, mutual)
        self._pairs = {u: mutual(u) for u in shares}
        self._commitments = {u: dict(m.commitments) for u, m in shares.items()}
        self._u2 = set(shares)
        self.sizes["U2"] = len(shares)
        self._require(len(shares), "clients shared their keys")
        self.stage = Stage.MASKED_INPUT
        out: dict[int, Message] = {}
        for u in shares:
            pairs = sorted(self._pairs[u])
            out[u] = SharesDelivery(
                self.config.round_id,
                {v: shares[v].ciphertexts[u] for v in pairs},
                {v: shares[v].commitments[u] for v in pairs},
            )
        return out

    def _unmask_requests(self) -> dict[int, Message]:
        u3 = set(self._u3)
        out: dict[int, Message] = {}
        for u in self._u3:
            held = [v for v in sorted(self._pairs[u]) if v not in self._rejected.get(u, {})]
            survivors = tuple(sorted([u, *(v for v in held if v in u3)]))
            dropped = tuple(v for v in held if v not in u3)
            sigs = {v: self._signatures[v] for v in (u, *self.graph[u]) if v in self._signatures}
            out[u] = UnmaskRequest(self.config.round_id, survivors, dropped, sigs)
        self._requests = {u: m for u, m in out.items() if isinstance(m, UnmaskRequest)}
        self.stage = Stage.UNMASK
        return out

    def _to_exclude(self, answered: set[int]) -> dict[int, str]:
        """Rejected senders too few valid holders of which remain, and why (to a fixed point:
        excluding a client removes it as a holder of the others)."""
        gone: dict[int, str] = {}
        while True:
            alive = answered - set(gone)
            found = False
            for v in sorted(self._u2 - set(gone)):
                rejecters = sorted(w for w, r in self._rejected.items() if v in r and w in alive)
                if not rejecters:
                    continue
                valid = (v in alive) + sum(
                    w in alive and v not in self._rejected.get(w, {}) for w in self._pairs[v]
                )
                if valid < self.config.threshold:
                    why = _short(self._rejected[rejecters[0]][v])
                    gone[v] = (
                        f"masked_input: its shares were rejected by {rejecters} ({why}); "
                        f"{valid} valid holders left, threshold is {self.config.threshold}"
                    )
                    found = True
            if not found:
                return gone

    def _remask_requests(self, masked: set[int], gone: dict[int, str]) -> dict[int, Message]:
        """Leave ``gone`` out and ask the others (those that still have ``t`` holders) to mask
        again; the masked inputs received so far are discarded."""
        self.excluded.update(gone)
        self._remasked = True
        self._running = None
        old_pairs = self._pairs
        u2 = {u: u for u in self._u2 - set(gone)}
        kept = set(self._prune(u2, lambda u: old_pairs[u] - set(gone)))
        for u in sorted(set(u2) - kept):
            self.excluded[u] = "masked_input: too few share holders left after the exclusions"
        self._u2 = kept
        self._pairs = {u: old_pairs[u] & kept for u in kept}
        self._require(len(masked & kept), "clients left to mask again after the exclusions")
        out: dict[int, Message] = {}
        for u in sorted(masked & kept):
            out[u] = RemaskRequest(self.config.round_id, tuple(sorted(old_pairs[u] - kept)))
        return out

    def _after_masked(self, inbox: dict[int, Message]) -> dict[int, Message]:
        masked = {u: m for u, m in inbox.items() if isinstance(m, MaskedInput)}
        if not self._remasked:
            self._rejected = {
                u: {v: _short(why) for v, why in m.rejected.items()}
                for u, m in masked.items()
                if m.rejected
            }
            gone = self._to_exclude(set(masked))
            if gone:
                self._require(len(set(masked) - set(gone)), "clients sent usable masked inputs")
                return self._remask_requests(set(masked), gone)
        self._u3 = tuple(sorted(u for u in masked if u in self._u2))
        self.sizes["U3"] = len(self._u3)
        self._require(len(self._u3), "clients sent masked inputs")
        bits = self.config.modulus_bits
        total, self._running = self._running, None
        if total is None:  # pragma: no cover - _require above rules out an empty U3
            total = np.zeros(self.config.dim, dtype=dtype_for_bits(bits))
        self._sum = reduce(total, bits)
        if self.config.consistency_check:
            self.stage = Stage.CONSISTENCY
            return {u: ConsistencyRequest(self.config.round_id, self._u3) for u in self._u3}
        return self._unmask_requests()

    def _after_consistency(self, inbox: dict[int, Message]) -> dict[int, Message]:
        self._signatures = {
            u: m.signature for u, m in inbox.items() if isinstance(m, ConsistencySignature)
        }
        self.sizes["U4"] = len(self._signatures)
        self._require(len(self._signatures), "clients signed the survivor set")
        # only signers go on to unmask
        return {u: m for u, m in self._unmask_requests().items() if u in self._signatures}

    def _collect(
        self, replies: dict[int, UnmaskShares], owner: int, kind: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The valid shares of ``owner``'s seed or key: each checked against the commitment
        its owner made to that holder; a holder whose share does not match is named."""
        pts: list[int] = []
        rows: list[np.ndarray] = []
        what = "mask-seed" if kind == "seed" else "key"
        part = slice(0, COMMITMENT_BYTES) if kind == "seed" else slice(COMMITMENT_BYTES, None)
        commitments = self._commitments[owner]
        for w in (owner, *sorted(self._pairs[owner])):
            rep = replies.get(w)
            if rep is None:
                continue
            share = (rep.seed_shares if kind == "seed" else rep.key_shares).get(owner)
            if share is None:
                continue
            expect = part_commitment(self.config.round_id, owner, w, kind, share)
            if commitments.get(w, b"")[part] != expect:
                self.faulty[w] = f"a share of client {owner}'s {what} that fails its commitment"
                continue
            pts.append(self.points[w])
            rows.append(share)
        if len(pts) < self.config.threshold:
            bad = sorted(w for w in self.faulty if w in (owner, *self._pairs[owner]))
            named = f" (bad shares from {bad} ignored)" if bad else ""
            raise self._abort(
                f"client {owner}'s {what} has {len(pts)} valid shares back{named}, threshold is "
                f"{self.config.threshold}; its mask cannot be removed"
            )
        return np.asarray(pts, dtype=np.uint64), np.stack(rows).astype(np.uint64)

    def _reconstruct(
        self, pts: np.ndarray, rows: np.ndarray, length: int, owner: int, what: str
    ) -> bytes:
        """The secret from ``t`` of its (commitment-checked) shares; abort if it is corrupt."""
        t = self.config.threshold
        try:
            return shamir.field_to_bytes(shamir.combine(pts, rows, t), length)
        except ProtocolError as exc:
            raise self._abort(
                f"client {owner}'s {what} shares are corrupted ({exc}); client {owner} shared "
                "inconsistently"
            ) from exc

    def _after_unmask(self, inbox: dict[int, Message]) -> dict[int, Message]:
        replies = {u: m for u, m in inbox.items() if isinstance(m, UnmaskShares)}
        self.sizes["U5"] = len(replies)
        self._require(len(replies), "clients answered the unmask request")
        cfg, bits = self.config, self.config.modulus_bits
        u3 = set(self._u3)
        dropped = sorted(self._u2 - u3)
        # reconstruct and verify everything first: abort before any mask is removed
        seeds: dict[int, bytes] = {}
        for u in self._u3:
            pts, rows = self._collect(replies, u, "seed")
            seeds[u] = self._reconstruct(pts, rows, SEED_BYTES, u, "mask-seed")
            if seed_commitment(cfg.round_id, u, seeds[u]) != self._keys[u].seed_commitment:
                raise self._abort(
                    f"client {u}'s rebuilt mask seed does not match its commitment, though "
                    f"every share matched: client {u} shared inconsistently"
                )
        # parsed once here, then used for every neighbour's mask
        secret_keys: dict[int, KeyPair] = {}
        for u in dropped:
            pts, rows = self._collect(replies, u, "key")
            pair = KeyPair.from_secret(self._reconstruct(pts, rows, KEY_BYTES, u, "key"))
            if pair.public != self._keys[u].s_public:
                raise self._abort(
                    f"client {u}'s rebuilt key does not match its public key, though every "
                    f"share matched: client {u} shared inconsistently"
                )
            secret_keys[u] = pair
        assert self._sum is not None
        total = self._sum
        prg = PrgKind(cfg.prg)
        buf = np.empty(cfg.dim, dtype=total.dtype)
        for u in self._u3:
            ring_sub(total, expand(seeds[u], cfg.dim, bits, prg, out=buf), bits)
        for u in dropped:
            for v in sorted(self._pairs[u]):
                if v not in u3:
                    continue
                pub, own = self._keys[v].s_public, secret_keys[u].public
                mask = expand(
                    agree(secret_keys[u].private, pub, mask_info(cfg.round_id, u, v, own, pub)),
                    cfg.dim,
                    bits,
                    prg,
                    out=buf,
                )
                # v added +mask if v < u, else -mask: take it back out
                if v < u:
                    ring_sub(total, mask, bits)
                else:
                    ring_add(total, mask, bits)
        self.stage = Stage.DONE
        self.result = AggregateResult(total, self._u3, dict(self.sizes), self.excluded, self.faulty)
        return {}
