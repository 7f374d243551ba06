"""The client side of SecAgg / SecAgg+ as a sans-IO state machine.

A :class:`SecAggClient` is made for one round. :meth:`SecAggClient.handle` takes the server's
message for the current stage and returns the reply (or raises); it never touches a socket, a
clock or a thread, so the same code runs in the in-process driver, over a network and inside
a Flower client mod.

What the client enforces (a semi-honest server cannot break these; a malicious one is caught
by the optional consistency check):

- stage order and the round id of every message (a message from another round, or a second
  message for a stage already answered, raises :class:`ProtocolError`);
- at least ``t`` share holders at every stage, else it drops out (raises :class:`SecAggAbort`);
- distinct public keys among its neighbours;
- relayed shares authenticate under ChaCha20-Poly1305 with sender, receiver and round in the
  associated data;
- one unmask request per round, in which no client is asked for both its mask-seed share and
  its key share, and only clients it holds shares of appear.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from phloem.core.errors import ProtocolError, SecAggAbort
from phloem.secagg.crypto import aead, shamir
from phloem.secagg.crypto.keys import KEY_BYTES, KeyPair, RandomBytes, agree, pair_info
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
from phloem.secagg.ring import dtype_for_bits, ring_add, ring_sub
from phloem.secagg.stages import Stage

__all__ = ["SecAggClient", "consistency_payload", "mask_info", "split_keys"]

#: field elements per 32-byte secret (24-bit chunks)
CHUNKS = -(-SEED_BYTES // shamir.CHUNK_BYTES)
_WIRE_SHARE = np.dtype("<u4")  # field elements < 2^31 travel as uint32


def mask_info(round_id: int, a: int, b: int) -> bytes:
    """HKDF info of the pairwise mask seed of ``a`` and ``b`` in a round."""
    return pair_info(b"mask", round_id, a, b)


def _share_info(round_id: int, a: int, b: int) -> bytes:
    return pair_info(b"share-encryption", round_id, a, b)


def consistency_payload(round_id: int, survivors: tuple[int, ...]) -> bytes:
    """What each client signs in the consistency check: the round and the sorted U3."""
    ids = b"".join(x.to_bytes(8, "big") for x in sorted(survivors))
    return b"phloem/secagg/v1|consistency|" + round_id.to_bytes(8, "big") + ids


def split_keys(blob: bytes, signed: bool) -> tuple[bytes, bytes, bytes]:
    """``(c_public, s_public, sign_public)`` from a :class:`KeysBroadcast` entry."""
    want = 3 * KEY_BYTES if signed else 2 * KEY_BYTES
    if len(blob) != want:
        raise ProtocolError(f"a key bundle has {want} bytes, got {len(blob)}")
    return blob[:KEY_BYTES], blob[KEY_BYTES : 2 * KEY_BYTES], blob[2 * KEY_BYTES :]


@dataclass
class _Peer:
    point: int
    c_public: bytes = b""
    s_public: bytes = b""
    sign_public: bytes = b""
    share_key: bytes = b""  # AEAD key of the shares exchanged with this peer


InputFn = Callable[[RoundConfig], np.ndarray]


class SecAggClient:
    """One client's part in one round.

    Parameters
    ----------
    client_id
        This client's id (as the server addresses it).
    data
        The ring vector to contribute (``config.dim`` entries below ``2^modulus_bits``), or a
        function of the round's config that returns it when the masked input is due.
    rand
        Secret randomness (keys, seeds, Shamir coefficients, nonces); ``os.urandom``.
    """

    def __init__(
        self, client_id: int, data: np.ndarray | InputFn, *, rand: RandomBytes = os.urandom
    ) -> None:
        self.id = client_id
        self._data = data
        self._rand = rand
        self.stage = Stage.SETUP
        self.config: RoundConfig | None = None
        self._peers: dict[int, _Peer] = {}
        self._point = 0
        self._live: list[int] = []  # neighbours that advertised keys (hold our shares)
        self._u2: list[int] = []  # neighbours whose shares we hold
        self._held: dict[int, np.ndarray] = {}  # owner -> (seed share || key share)
        self._survivors: tuple[int, ...] | None = None

    # -- helpers --------------------------------------------------------------------------
    def _expect(self, msg: Message, stage: Stage) -> RoundConfig:
        if self.stage is not stage:
            raise ProtocolError(
                f"client {self.id}: got {type(msg).__name__} while at stage {self.stage.name}"
            )
        assert self.config is not None
        if msg.round_id != self.config.round_id:
            raise ProtocolError(
                f"client {self.id}: message for round {msg.round_id}, "
                f"this is round {self.config.round_id} (stale or replayed)"
            )
        return self.config

    def _need(self, count: int, what: str) -> None:
        assert self.config is not None
        if count < self.config.threshold:
            stage, self.stage = self.stage, Stage.DONE
            raise SecAggAbort(
                stage.value,
                f"client {self.id}: only {count} {what}, threshold is {self.config.threshold}",
            )

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, msg: Message) -> Message:
        """The reply to the server's ``msg`` (see the module docstring for the checks)."""
        if isinstance(msg, Setup):
            return self._setup(msg)
        if isinstance(msg, KeysBroadcast):
            return self._share_keys(msg)
        if isinstance(msg, SharesDelivery):
            return self._masked_input(msg)
        if isinstance(msg, ConsistencyRequest):
            return self._consistency(msg)
        if isinstance(msg, UnmaskRequest):
            return self._unmask(msg)
        raise ProtocolError(f"client {self.id}: unexpected message {type(msg).__name__}")

    def _setup(self, msg: Setup) -> KeysAdvert:
        if self.stage is not Stage.SETUP:
            raise ProtocolError(f"client {self.id}: second set-up in one round")
        cfg = msg.config
        if msg.client != self.id or msg.round_id != cfg.round_id:
            raise ProtocolError(f"client {self.id}: set-up addressed to {msg.client}")
        if self.id in msg.neighbours:
            raise ProtocolError(f"client {self.id}: listed as its own neighbour")
        points = [msg.point, *msg.neighbours.values()]
        if len(set(points)) != len(points) or min(points) < 1 or max(points) >= shamir.PRIME:
            raise ProtocolError(f"client {self.id}: share points must be distinct and non-zero")
        try:
            PrgKind(cfg.prg)
            dtype_for_bits(cfg.modulus_bits)
        except ValueError as exc:  # ConfigError included: the server sent a bad config
            raise ProtocolError(f"client {self.id}: unusable round config: {exc}") from exc
        if cfg.threshold < 1 or cfg.dim < 0:
            raise ProtocolError(f"client {self.id}: unusable round config {cfg}")
        self.config = cfg
        self._point = msg.point
        self._peers = {v: _Peer(x) for v, x in msg.neighbours.items()}
        self._need(len(self._peers) + 1, "share holders in the graph")
        self._c = KeyPair.generate(self._rand)
        self._s = KeyPair.generate(self._rand)
        sign_public = b""
        if cfg.consistency_check:
            self._sign = Ed25519PrivateKey.from_private_bytes(self._rand(KEY_BYTES))
            sign_public = self._sign.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.stage = Stage.SHARE_KEYS
        return KeysAdvert(cfg.round_id, self.id, self._c.public, self._s.public, sign_public)

    def _share_keys(self, msg: KeysBroadcast) -> EncryptedShares:
        cfg = self._expect(msg, Stage.SHARE_KEYS)
        unknown = set(msg.keys) - set(self._peers)
        if unknown:
            raise ProtocolError(f"client {self.id}: keys of non-neighbours {sorted(unknown)}")
        seen = {self._c.public, self._s.public}
        for v, blob in msg.keys.items():
            c_pub, s_pub, sign_pub = split_keys(blob, cfg.consistency_check)
            if c_pub in seen or s_pub in seen or c_pub == s_pub:
                raise ProtocolError(f"client {self.id}: repeated public key from {v}")
            seen |= {c_pub, s_pub}
            peer = self._peers[v]
            peer.c_public, peer.s_public, peer.sign_public = c_pub, s_pub, sign_pub
        self._live = sorted(msg.keys)
        self._need(len(self._live) + 1, "neighbours advertised keys")
        self._seed = self._rand(SEED_BYTES)
        xs = np.array([self._point] + [self._peers[v].point for v in self._live], dtype=np.uint64)
        # seed and key are chunked separately so each owns exactly CHUNKS columns
        secrets = np.concatenate(
            [shamir.bytes_to_field(self._seed), shamir.bytes_to_field(self._s.secret)]
        )
        shares = shamir.split(secrets, xs, cfg.threshold, self._rand)
        self._held[self.id] = shares[0]
        out: dict[int, bytes] = {}
        for row, v in zip(shares[1:], self._live, strict=True):
            peer = self._peers[v]
            # one key per pair and round serves both directions (the info is order-free)
            peer.share_key = agree(
                self._c.private, peer.c_public, _share_info(cfg.round_id, self.id, v)
            )
            key = peer.share_key
            plain = row.astype(_WIRE_SHARE).tobytes()
            ad = aead.associated_data(cfg.round_id, self.id, v)
            out[v] = aead.seal(key, plain, ad, self._rand)
        self.stage = Stage.MASKED_INPUT
        return EncryptedShares(cfg.round_id, self.id, out)

    def _masked_input(self, msg: SharesDelivery) -> MaskedInput:
        cfg = self._expect(msg, Stage.MASKED_INPUT)
        unknown = set(msg.ciphertexts) - set(self._live)
        if unknown:
            raise ProtocolError(f"client {self.id}: shares from non-neighbours {sorted(unknown)}")
        self._need(len(msg.ciphertexts) + 1, "neighbours sent shares")
        for v, sealed in msg.ciphertexts.items():
            key = self._peers[v].share_key
            plain = aead.open_sealed(key, sealed, aead.associated_data(cfg.round_id, v, self.id))
            if len(plain) != 2 * CHUNKS * _WIRE_SHARE.itemsize:
                raise ProtocolError(f"client {self.id}: share from {v} has the wrong length")
            self._held[v] = np.frombuffer(plain, dtype=_WIRE_SHARE).astype(np.uint64)
        self._u2 = sorted(msg.ciphertexts)
        x = self._data(cfg) if callable(self._data) else self._data
        dt = dtype_for_bits(cfg.modulus_bits)
        x = np.asarray(x)
        if x.shape != (cfg.dim,) or x.dtype.kind not in "ui":
            raise ProtocolError(
                f"client {self.id}: input must be {cfg.dim} integers, got {x.shape} {x.dtype}"
            )
        exact_dtype = x.dtype == dt and cfg.modulus_bits == 8 * dt.itemsize  # nothing to check
        if x.size and not exact_dtype and (int(x.min()) < 0 or int(x.max()) >> cfg.modulus_bits):
            raise ProtocolError(f"client {self.id}: input entries must lie in [0, 2^bits)")
        masked = x.astype(dt, copy=True)
        prg = PrgKind(cfg.prg)
        buf = np.empty(cfg.dim, dtype=dt)
        ring_add(
            masked, expand(self._seed, cfg.dim, cfg.modulus_bits, prg, out=buf), cfg.modulus_bits
        )
        for v in self._u2:
            seed = agree(
                self._s.private, self._peers[v].s_public, mask_info(cfg.round_id, self.id, v)
            )
            mask = expand(seed, cfg.dim, cfg.modulus_bits, prg, out=buf)
            if self.id < v:
                ring_add(masked, mask, cfg.modulus_bits)
            else:
                ring_sub(masked, mask, cfg.modulus_bits)
        self.stage = Stage.CONSISTENCY if cfg.consistency_check else Stage.UNMASK
        return MaskedInput(cfg.round_id, self.id, masked)

    def _consistency(self, msg: ConsistencyRequest) -> ConsistencySignature:
        cfg = self._expect(msg, Stage.CONSISTENCY)
        if self.id not in msg.survivors:
            raise ProtocolError(f"client {self.id}: not in the survivor list it is asked to sign")
        self._need(len(msg.survivors), "clients in the survivor set")
        self._survivors = tuple(sorted(msg.survivors))
        sig = self._sign.sign(consistency_payload(cfg.round_id, self._survivors))
        self.stage = Stage.UNMASK
        return ConsistencySignature(cfg.round_id, self.id, sig)

    def _check_signatures(self, msg: UnmaskRequest, cfg: RoundConfig) -> None:
        assert self._survivors is not None
        payload = consistency_payload(cfg.round_id, self._survivors)
        valid = 0
        for v, sig in msg.signatures.items():
            peer = self._peers.get(v)
            if peer is None or v not in self._survivors:
                raise ProtocolError(f"client {self.id}: signature from {v}, not a surviving peer")
            try:
                Ed25519PublicKey.from_public_bytes(peer.sign_public).verify(sig, payload)
            except (InvalidSignature, ValueError) as exc:
                self.stage = Stage.DONE
                raise SecAggAbort(
                    Stage.UNMASK.value, f"client {self.id}: {v} signed a different survivor set"
                ) from exc
            valid += 1
        self._need(valid + 1, "valid consistency signatures")

    def _unmask(self, msg: UnmaskRequest) -> UnmaskShares:
        cfg = self._expect(msg, Stage.UNMASK)
        try:
            return self._answer_unmask(msg, cfg)
        except ProtocolError:
            # one request per round: a refused one ends it, so a second cannot follow
            self.stage = Stage.DONE
            raise

    def _answer_unmask(self, msg: UnmaskRequest, cfg: RoundConfig) -> UnmaskShares:
        # a ProtocolError raised here ends the round: _unmask sets the stage to DONE
        surv, drop = set(msg.survivors), set(msg.dropped)
        if surv & drop:
            raise ProtocolError(
                f"client {self.id}: refused to reveal both shares of {sorted(surv & drop)}"
            )
        if self.id in drop:
            raise ProtocolError(f"client {self.id}: asked for its own key share")
        unknown = (surv | drop) - set(self._held)
        if unknown:
            raise ProtocolError(f"client {self.id}: holds no shares of {sorted(unknown)}")
        if cfg.consistency_check:
            assert self._survivors is not None
            if not surv <= set(self._survivors) or drop & set(self._survivors):
                raise ProtocolError(f"client {self.id}: request contradicts the signed survivors")
            self._check_signatures(msg, cfg)
        self.stage = Stage.DONE
        return UnmaskShares(
            cfg.round_id,
            self.id,
            {v: self._held[v][:CHUNKS].astype(_WIRE_SHARE) for v in sorted(surv)},
            {v: self._held[v][CHUNKS:].astype(_WIRE_SHARE) for v in sorted(drop)},
        )
