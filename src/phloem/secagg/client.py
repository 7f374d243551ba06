"""The client side of SecAgg / SecAgg+ as a sans-IO state machine.

A :class:`SecAggClient` is made for one round. :meth:`SecAggClient.handle` takes the server's
message for the current stage and returns the reply (or raises); it never touches a socket, a
clock or a thread, so the same code runs in the in-process driver, over a network and inside
a Flower client mod.

What the client enforces (see the threat model in ``docs/secagg.md``):

- its own :class:`~phloem.secagg.policy.ClientPolicy` at set-up: the round's ``n``, its ``k``
  share holders and the threshold ``t`` (``t > k / 2`` always), else it refuses the round;
- stage order and the round id of every message (a message from another round, or a second
  message for a stage already answered, raises :class:`ProtocolError`);
- at least ``t`` share holders at every stage, else it drops out (raises :class:`SecAggAbort`);
- neighbours' public keys must be valid X25519 points of full order and distinct; a neighbour
  whose key is not is treated as dropped out (no shares, no mask), not a reason to stop;
- relayed shares must authenticate under ChaCha20-Poly1305 (sender, receiver and round in the
  associated data) and match their owner's commitment; a sender whose share does not is
  *rejected*: the client holds and reveals nothing of it and tells the server, which leaves
  the sender out (asking for one re-mask) when too few valid holders of it remain;
- with the consistency check, ``t`` valid signatures over the same survivor set;
- one unmask request per round, in which no client is asked for both its mask-seed share and
  its key share, and only clients it holds valid shares of appear.

Pairwise keys are derived with both parties' public keys in the HKDF ``info``; the self-mask
seed is committed to (SHA-256) in the key advertisement and each share to its holder in the
key sharing, so that the server verifies every share and every secret it rebuilds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from phloem.core.errors import ProtocolError, SecAggAbort
from phloem.secagg.crypto import aead, shamir
from phloem.secagg.crypto.keys import (
    KEY_BYTES,
    KeyPair,
    RandomBytes,
    agree,
    pair_info,
)
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
from phloem.secagg.policy import ClientPolicy
from phloem.secagg.ring import dtype_for_bits, ring_add, ring_sub
from phloem.secagg.stages import Stage

__all__ = [
    "COMMITMENT_BYTES",
    "SecAggClient",
    "consistency_payload",
    "mask_info",
    "part_commitment",
    "seed_commitment",
    "share_commitment",
    "split_keys",
]

#: field elements per 32-byte secret (24-bit chunks)
CHUNKS = -(-SEED_BYTES // shamir.CHUNK_BYTES)
_WIRE_SHARE = np.dtype("<u4")  # field elements < 2^31 travel as uint32


#: bytes of one SHA-256 commitment; a share's commitment is two (seed part, key part)
COMMITMENT_BYTES = 32


def mask_info(round_id: int, a: int, b: int, key_a: bytes, key_b: bytes) -> bytes:
    """HKDF info of the pairwise mask seed of ``a`` and ``b`` (mask keys ``key_a``, ``key_b``)."""
    return pair_info(b"mask", round_id, a, b, key_a, key_b)


def _share_info(round_id: int, a: int, b: int, key_a: bytes, key_b: bytes) -> bytes:
    return pair_info(b"share-encryption", round_id, a, b, key_a, key_b)


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha256(b"phloem/secagg/v2")
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def seed_commitment(round_id: int, owner: int, seed: bytes) -> bytes:
    """SHA-256 commitment to ``owner``'s self-mask seed (hiding: the seed has 256 random bits)."""
    return _digest(b"seed", round_id.to_bytes(8, "big"), owner.to_bytes(8, "big"), seed)


def part_commitment(round_id: int, owner: int, holder: int, kind: str, part: np.ndarray) -> bytes:
    """SHA-256 commitment to one part (``"seed"`` or ``"key"``) of the share of ``owner``'s
    secrets held by ``holder`` (hiding: given fewer than ``t`` shares the part is uniform)."""
    ids = round_id.to_bytes(8, "big") + owner.to_bytes(8, "big") + holder.to_bytes(8, "big")
    values = np.asarray(part, dtype=_WIRE_SHARE).tobytes()
    return _digest(b"share-" + kind.encode(), ids, values)


def share_commitment(round_id: int, owner: int, holder: int, share: np.ndarray) -> bytes:
    """The 64-byte commitment to a whole share: the seed part's, then the key part's
    (:func:`part_commitment`; the two parts are revealed separately at unmask)."""
    return part_commitment(round_id, owner, holder, "seed", share[:CHUNKS]) + part_commitment(
        round_id, owner, holder, "key", share[CHUNKS:]
    )


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
    mask_seed: bytes = b""  # seed of the pairwise mask with this peer


InputFn = Callable[[RoundConfig], np.ndarray]


class SecAggClient:
    """One client's part in one round.

    Parameters
    ----------
    client_id
        This client's id (as the server addresses it).
    data
        The ring vector to contribute (``config.dim`` entries below ``2^modulus_bits``), or a
        function of the round's config that returns it when the masked input is due (called
        once: a re-mask reuses the vector).
    rand
        Secret randomness (keys, seeds, Shamir coefficients, nonces); ``os.urandom``.
    policy
        The conditions this client puts on a round (:class:`ClientPolicy`; by default
        ``t > k / 2`` and at least 2 clients).
    """

    def __init__(
        self,
        client_id: int,
        data: np.ndarray | InputFn,
        *,
        rand: RandomBytes = os.urandom,
        policy: ClientPolicy | None = None,
    ) -> None:
        self.id = client_id
        self._data = data
        self._rand = rand
        self.policy = policy if policy is not None else ClientPolicy()
        self.stage = Stage.SETUP
        self.config: RoundConfig | None = None
        self._peers: dict[int, _Peer] = {}
        self._point = 0
        self._live: list[int] = []  # neighbours with valid keys (hold our shares)
        self._u2: list[int] = []  # neighbours we mask with
        self._held: dict[int, np.ndarray] = {}  # owner -> (seed share || key share)
        #: neighbours this client left out, and why (bad key, bad share)
        self.rejected: dict[int, str] = {}
        self._input: np.ndarray | None = None  # kept for a re-mask, dropped at unmask
        self._remasked = False
        self._survivors: tuple[int, ...] | None = None

    # -- helpers --------------------------------------------------------------------------
    def _expect(self, msg: Message, *stages: Stage) -> RoundConfig:
        if self.stage not in stages:
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
        if isinstance(msg, RemaskRequest):
            return self._remask(msg)
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
        if cfg.dim < 0:
            raise ProtocolError(f"client {self.id}: unusable round config {cfg}")
        refused = self.policy.violation(cfg.num_clients, len(msg.neighbours) + 1, cfg.threshold)
        if refused is not None:
            self.stage = Stage.DONE
            raise SecAggAbort(Stage.SETUP.value, f"client {self.id} refused the round: {refused}")
        self.config = cfg
        self._point = msg.point
        self._peers = {v: _Peer(x) for v, x in msg.neighbours.items()}
        self._c = KeyPair.generate(self._rand)
        self._s = KeyPair.generate(self._rand)
        self._seed = self._rand(SEED_BYTES)
        sign_public = b""
        if cfg.consistency_check:
            self._sign = Ed25519PrivateKey.from_private_bytes(self._rand(KEY_BYTES))
            sign_public = self._sign.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.stage = Stage.SHARE_KEYS
        return KeysAdvert(
            cfg.round_id,
            self.id,
            self._c.public,
            self._s.public,
            sign_public,
            seed_commitment(cfg.round_id, self.id, self._seed),
        )

    def _accept_keys(self, msg: KeysBroadcast, cfg: RoundConfig) -> list[int]:
        """The neighbours whose advertised keys are usable, with both pairwise keys agreed;
        the others go to ``rejected`` (a malformed, low-order or repeated key)."""
        parsed: dict[int, tuple[bytes, bytes, bytes]] = {}
        for v, blob in msg.keys.items():
            try:
                c_pub, s_pub, sign_pub = split_keys(blob, cfg.consistency_check)
                if c_pub == s_pub:
                    raise ProtocolError("the same key for both purposes")
            except ProtocolError as exc:
                self.rejected[v] = f"bad public key: {exc}"
                continue
            parsed[v] = (c_pub, s_pub, sign_pub)
        owners: dict[bytes, list[int]] = {self._c.public: [self.id], self._s.public: [self.id]}
        for v, (c_pub, s_pub, _) in parsed.items():
            owners.setdefault(c_pub, []).append(v)
            owners.setdefault(s_pub, []).append(v)
        live: list[int] = []
        for v in sorted(parsed):
            c_pub, s_pub, sign_pub = parsed[v]
            if len(owners[c_pub]) > 1 or len(owners[s_pub]) > 1:
                self.rejected[v] = "a public key that another client also advertised"
                continue
            peer = self._peers[v]
            try:  # both agreements now: a low-order key fails here (all-zero shared secret)
                # one key per pair and round serves both directions (the info is order-free)
                share = _share_info(cfg.round_id, self.id, v, self._c.public, c_pub)
                peer.share_key = agree(self._c.private, c_pub, share)
                mask = mask_info(cfg.round_id, self.id, v, self._s.public, s_pub)
                peer.mask_seed = agree(self._s.private, s_pub, mask)
            except ProtocolError as exc:
                self.rejected[v] = f"bad public key: a low-order or invalid X25519 point ({exc})"
                continue
            peer.c_public, peer.s_public, peer.sign_public = c_pub, s_pub, sign_pub
            live.append(v)
        return live

    def _share_keys(self, msg: KeysBroadcast) -> EncryptedShares:
        cfg = self._expect(msg, Stage.SHARE_KEYS)
        unknown = set(msg.keys) - set(self._peers)
        if unknown:
            raise ProtocolError(f"client {self.id}: keys of non-neighbours {sorted(unknown)}")
        self._live = self._accept_keys(msg, cfg)
        self._need(len(self._live) + 1, "neighbours advertised usable keys")
        xs = np.array([self._point] + [self._peers[v].point for v in self._live], dtype=np.uint64)
        # seed and key are chunked separately so each owns exactly CHUNKS columns
        secrets = np.concatenate(
            [shamir.bytes_to_field(self._seed), shamir.bytes_to_field(self._s.secret)]
        )
        shares = shamir.split(secrets, xs, cfg.threshold, self._rand)
        self._held[self.id] = shares[0]
        commitments = {self.id: share_commitment(cfg.round_id, self.id, self.id, shares[0])}
        out: dict[int, bytes] = {}
        for row, v in zip(shares[1:], self._live, strict=True):
            peer = self._peers[v]
            plain = row.astype(_WIRE_SHARE).tobytes()
            ad = aead.associated_data(cfg.round_id, self.id, v)
            out[v] = aead.seal(peer.share_key, plain, ad, self._rand)
            commitments[v] = share_commitment(cfg.round_id, self.id, v, row)
        self.stage = Stage.MASKED_INPUT
        return EncryptedShares(cfg.round_id, self.id, out, commitments)

    def _open_share(self, cfg: RoundConfig, v: int, sealed: bytes, commitment: bytes) -> None:
        """Keep ``v``'s share if it authenticates and matches ``v``'s commitment."""
        key = self._peers[v].share_key
        plain = aead.open_sealed(key, sealed, aead.associated_data(cfg.round_id, v, self.id))
        if len(plain) != 2 * CHUNKS * _WIRE_SHARE.itemsize:
            raise ProtocolError(f"a share of {len(plain)} bytes")
        row = np.frombuffer(plain, dtype=_WIRE_SHARE).astype(np.uint64)
        if int(row.max()) >= shamir.PRIME:
            raise ProtocolError("a share outside the field")
        if commitment != share_commitment(cfg.round_id, v, self.id, row):
            raise ProtocolError("a share that does not match its owner's commitment")
        self._held[v] = row

    def _masked_input(self, msg: SharesDelivery) -> MaskedInput:
        cfg = self._expect(msg, Stage.MASKED_INPUT)
        unknown = set(msg.ciphertexts) - set(self._live)
        if unknown:
            raise ProtocolError(f"client {self.id}: shares from non-neighbours {sorted(unknown)}")
        self._need(len(msg.ciphertexts) + 1, "neighbours sent shares")
        rejected: dict[int, str] = {}
        for v, sealed in msg.ciphertexts.items():
            try:
                self._open_share(cfg, v, sealed, msg.commitments.get(v, b""))
            except ProtocolError as exc:
                rejected[v] = self.rejected[v] = str(exc)
        # masks go to every sender the server relayed, accepted or not, so that the server's
        # view of the pairs holds; a rejected sender's share is neither held nor revealed
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
        self._input = x.astype(dt, copy=False)
        self.stage = Stage.CONSISTENCY if cfg.consistency_check else Stage.UNMASK
        return MaskedInput(cfg.round_id, self.id, self._mask(cfg, self._u2), rejected)

    def _mask(self, cfg: RoundConfig, pairs: list[int]) -> np.ndarray:
        """The input plus the self-mask plus the pairwise masks with ``pairs``."""
        assert self._input is not None
        dt = dtype_for_bits(cfg.modulus_bits)
        masked = self._input.astype(dt, copy=True)
        prg = PrgKind(cfg.prg)
        buf = np.empty(cfg.dim, dtype=dt)
        ring_add(
            masked, expand(self._seed, cfg.dim, cfg.modulus_bits, prg, out=buf), cfg.modulus_bits
        )
        for v in pairs:
            mask = expand(self._peers[v].mask_seed, cfg.dim, cfg.modulus_bits, prg, out=buf)
            if self.id < v:
                ring_add(masked, mask, cfg.modulus_bits)
            else:
                ring_sub(masked, mask, cfg.modulus_bits)
        return masked

    def _remask(self, msg: RemaskRequest) -> MaskedInput:
        """The same input masked again without ``msg.excluded`` (once a round; the list is
        empty for a client none of whose neighbours was excluded: the server discarded every
        upload of the first pass).

        The server learns the difference of the two uploads: the pairwise masks with the
        excluded clients, which the excluded clients know anyway. Still at least ``t`` holders
        of this client's shares must remain, or it drops out.
        """
        cfg = self._expect(msg, Stage.CONSISTENCY, Stage.UNMASK)
        if self._remasked or self._survivors is not None:
            raise ProtocolError(f"client {self.id}: a second re-mask, or one after signing")
        gone = set(msg.excluded)
        if self.id in gone or not gone <= set(self._u2):
            raise ProtocolError(f"client {self.id}: re-mask excluding {sorted(gone)}")
        self._remasked = True
        self._u2 = [v for v in self._u2 if v not in gone]
        for v in gone:
            self._held.pop(v, None)
            self.rejected.setdefault(v, "excluded by the server")
        self._need(len(self._u2) + 1, "neighbours left after the exclusions")
        return MaskedInput(cfg.round_id, self.id, self._mask(cfg, self._u2))

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
        """``t`` valid signatures over this client's signed survivor set (its own counts once
        the server relays it back and it verifies), else abort."""
        assert self._survivors is not None
        payload = consistency_payload(cfg.round_id, self._survivors)
        valid = 0
        for v, sig in msg.signatures.items():
            if v == self.id:
                key = self._sign.public_key()
            else:
                peer = self._peers.get(v)
                if peer is None or v not in self._survivors or not peer.sign_public:
                    raise ProtocolError(
                        f"client {self.id}: signature from {v}, not a surviving peer"
                    )
                key = Ed25519PublicKey.from_public_bytes(peer.sign_public)
            try:
                key.verify(sig, payload)
            except (InvalidSignature, ValueError) as exc:
                self.stage = Stage.DONE
                raise SecAggAbort(
                    Stage.UNMASK.value, f"client {self.id}: {v} signed a different survivor set"
                ) from exc
            valid += 1
        self._need(valid, "valid consistency signatures")

    def _unmask(self, msg: UnmaskRequest) -> UnmaskShares:
        cfg = self._expect(msg, Stage.UNMASK)
        self._input = None
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
