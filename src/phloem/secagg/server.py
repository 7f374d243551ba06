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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np

from phloem.core.errors import ConfigError, ProtocolError, SecAggAbort
from phloem.secagg.client import CHUNKS, mask_info
from phloem.secagg.crypto import shamir
from phloem.secagg.crypto.keys import KEY_BYTES, KeyPair, agree
from phloem.secagg.crypto.prg import SEED_BYTES, PrgKind, expand
from phloem.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeysAdvert,
    KeysBroadcast,
    MaskedInput,
    Message,
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

_M = TypeVar("_M", bound=Message)


class AggregateResult:
    """The unmasked sum and who is in it."""

    def __init__(self, total: np.ndarray, included: tuple[int, ...], sets: dict[str, int]):
        self.total = total
        #: U3: the clients whose inputs are in ``total``
        self.included = included
        #: size of U1..U5 (how many answered each stage)
        self.sets = sets

    def __repr__(self) -> str:
        return f"AggregateResult(dim={self.total.size}, included={len(self.included)})"


class SecAggServer:
    """The server of one round.

    Parameters
    ----------
    config
        The round's public parameters (sent to every client).
    neighbours
        Symmetric graph over the participating client ids (see :mod:`phloem.secagg.graph`):
        the complete graph is SecAgg, a sparse one SecAgg+.
    """

    def __init__(self, config: RoundConfig, neighbours: Mapping[int, Sequence[int]]) -> None:
        dtype_for_bits(config.modulus_bits)
        try:
            PrgKind(config.prg)
        except ValueError:
            raise ConfigError("prg", f"unknown PRG {config.prg!r}", list(PrgKind)) from None
        if config.dim < 0:
            raise ConfigError("dim", f"{config.dim} entries: must be >= 0")
        self.config = config
        self.graph = {u: tuple(sorted(vs)) for u, vs in neighbours.items()}
        if not self.graph:
            raise ConfigError("neighbours", "a round needs at least one client")
        for u, vs in self.graph.items():
            if u in vs:
                raise ConfigError("neighbours", f"client {u} is its own neighbour")
            for v in vs:
                if u not in self.graph.get(v, ()):
                    raise ConfigError("neighbours", f"graph is not symmetric at ({u}, {v})")
        degree = min((len(vs) for vs in self.graph.values()), default=0)
        if not 1 <= config.threshold <= degree + 1:
            raise ConfigError(
                "threshold", f"{config.threshold} must lie in 1..{degree + 1} (num_shares)"
            )
        self.points = {u: i + 1 for i, u in enumerate(sorted(self.graph))}
        self.stage = Stage.SETUP
        self.result: AggregateResult | None = None
        self._asked: set[int] = set()
        self._inbox: dict[int, Message] = {}
        self._keys: dict[int, KeysAdvert] = {}
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
        """Accept one reply for the current stage; raises :class:`ProtocolError` otherwise."""
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
        self._validate(msg)
        if isinstance(msg, MaskedInput):
            # add as they arrive: the server holds one vector, not one per client
            if self._running is None:
                self._running = np.zeros_like(msg.vector)
            np.add(self._running, msg.vector, out=self._running)
            msg = MaskedInput(msg.round_id, msg.sender, _NO_VECTOR)
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
            if len(msg.c_public) != KEY_BYTES or len(msg.s_public) != KEY_BYTES:
                raise ProtocolError(f"client {msg.sender}: public keys must have 32 bytes")
            if cfg.consistency_check and len(msg.sign_public) != KEY_BYTES:
                raise ProtocolError(f"client {msg.sender}: signing key missing")
        elif isinstance(msg, EncryptedShares):
            sent_keys = self._broadcast_to(msg.sender)
            if set(msg.ciphertexts) != sent_keys:
                raise ProtocolError(
                    f"client {msg.sender}: shares must go to exactly the neighbours it got keys of"
                )
        elif isinstance(msg, MaskedInput):
            dt = dtype_for_bits(cfg.modulus_bits)
            if msg.vector.shape != (cfg.dim,) or msg.vector.dtype != dt:
                raise ProtocolError(
                    f"client {msg.sender}: masked input must be {cfg.dim} x {dt}, "
                    f"got {msg.vector.shape} {msg.vector.dtype}"
                )
        elif isinstance(msg, UnmaskShares):
            req = self._requests[msg.sender]
            if set(msg.seed_shares) != set(req.survivors) or set(msg.key_shares) != set(
                req.dropped
            ):
                raise ProtocolError(f"client {msg.sender}: answered a different unmask request")
            for share in (*msg.seed_shares.values(), *msg.key_shares.values()):
                if share.shape != (CHUNKS,):
                    raise ProtocolError(f"client {msg.sender}: a share has shape {share.shape}")

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

    def _prune(self, answers: dict[int, _M]) -> dict[int, _M]:
        """``answers`` without the clients that have fewer than ``t`` holders among them.

        A client with fewer than ``t`` live holders (itself included) drops out by itself;
        removing it may starve its neighbours, so this repeats until stable.
        """
        live, t = dict(answers), self.config.threshold
        while True:
            short = {u for u in live if sum(v in live for v in self.graph[u]) + 1 < t}
            if not short:
                return live
            for u in short:
                del live[u]

    def _after_keys(self, inbox: dict[int, Message]) -> dict[int, Message]:
        keys = self._prune({u: m for u, m in inbox.items() if isinstance(m, KeysAdvert)})
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
        # each U2 member needs t holders in U2 (itself included)
        shares = self._prune({u: m for u, m in inbox.items() if isinstance(m, EncryptedShares)})
        self._u2 = set(shares)
        self.sizes["U2"] = len(shares)
        self._require(len(shares), "clients shared their keys")
        self.stage = Stage.MASKED_INPUT
        out: dict[int, Message] = {}
        for u in shares:
            relayed = {v: shares[v].ciphertexts[u] for v in self.graph[u] if v in shares}
            out[u] = SharesDelivery(self.config.round_id, relayed)
        return out

    def _unmask_requests(self) -> dict[int, Message]:
        u3 = set(self._u3)
        out: dict[int, Message] = {}
        for u in self._u3:
            holders_of = [v for v in self.graph[u] if v in self._u2]
            survivors = tuple(sorted([u, *(v for v in holders_of if v in u3)]))
            dropped = tuple(sorted(v for v in holders_of if v not in u3))
            sigs = {v: self._signatures[v] for v in self.graph[u] if v in self._signatures}
            out[u] = UnmaskRequest(self.config.round_id, survivors, dropped, sigs)
        self._requests = {u: m for u, m in out.items() if isinstance(m, UnmaskRequest)}
        self.stage = Stage.UNMASK
        return out

    def _after_masked(self, inbox: dict[int, Message]) -> dict[int, Message]:
        masked = {u: m for u, m in inbox.items() if isinstance(m, MaskedInput)}
        self._u3 = tuple(sorted(masked))
        self.sizes["U3"] = len(masked)
        self._require(len(masked), "clients sent masked inputs")
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
        pts: list[int] = []
        rows: list[np.ndarray] = []
        for w in (owner, *self.graph[owner]):
            rep = replies.get(w)
            if rep is None:
                continue
            share = (rep.seed_shares if kind == "seed" else rep.key_shares).get(owner)
            if share is not None:
                pts.append(self.points[w])
                rows.append(share)
        if len(pts) < self.config.threshold:
            what = "mask-seed" if kind == "seed" else "key"
            raise self._abort(
                f"client {owner}'s {what} has {len(pts)} shares back, threshold is "
                f"{self.config.threshold}; its mask cannot be removed"
            )
        return np.asarray(pts, dtype=np.uint64), np.stack(rows).astype(np.uint64)

    def _reconstruct(
        self, pts: np.ndarray, rows: np.ndarray, length: int, owner: int, what: str
    ) -> bytes:
        """The secret from its shares; abort if they are corrupted or inconsistent.

        With more than ``t`` shares, the first ``t`` and the last ``t`` must give the same
        secret: a corrupted share in either set changes that set's result (its Lagrange
        coefficient is non-zero), and any share outside both is not used. With exactly ``t``
        shares there is no redundancy, so only out-of-range results are caught.
        """
        t = self.config.threshold
        try:
            secret = shamir.combine(pts, rows, t)
            if pts.size > t and not np.array_equal(secret, shamir.combine(pts[-t:], rows[-t:], t)):
                raise ProtocolError("two sets of shares disagree")
            return shamir.field_to_bytes(secret, length)
        except ProtocolError as exc:
            raise self._abort(
                f"client {owner}'s {what} shares are corrupted ({exc}); a holder sent a bad share"
            ) from exc

    def _after_unmask(self, inbox: dict[int, Message]) -> dict[int, Message]:
        replies = {u: m for u, m in inbox.items() if isinstance(m, UnmaskShares)}
        self.sizes["U5"] = len(replies)
        self._require(len(replies), "clients answered the unmask request")
        cfg, bits = self.config, self.config.modulus_bits
        u3 = set(self._u3)
        dropped = sorted(self._u2 - u3)
        # reconstruct everything first: abort before any mask is removed
        seeds: dict[int, bytes] = {}
        for u in self._u3:
            pts, rows = self._collect(replies, u, "seed")
            seeds[u] = self._reconstruct(pts, rows, SEED_BYTES, u, "mask-seed")
        # parsed once here, then used for every neighbour's mask
        secret_keys: dict[int, KeyPair] = {}
        for u in dropped:
            pts, rows = self._collect(replies, u, "key")
            pair = KeyPair.from_secret(self._reconstruct(pts, rows, KEY_BYTES, u, "key"))
            if pair.public != self._keys[u].s_public:
                raise self._abort(f"client {u}'s reconstructed key does not match its public key")
            secret_keys[u] = pair
        assert self._sum is not None
        total = self._sum
        prg = PrgKind(cfg.prg)
        buf = np.empty(cfg.dim, dtype=total.dtype)
        for u in self._u3:
            ring_sub(total, expand(seeds[u], cfg.dim, bits, prg, out=buf), bits)
        for u in dropped:
            for v in self.graph[u]:
                if v not in u3:
                    continue
                pub = self._keys[v].s_public
                mask = expand(
                    agree(secret_keys[u].private, pub, mask_info(cfg.round_id, u, v)),
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
        self.result = AggregateResult(total, self._u3, dict(self.sizes))
        return {}
