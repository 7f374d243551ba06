"""Typed protocol messages and their compact binary wire encoding.

Server -> client: :class:`Setup`, :class:`KeysBroadcast`, :class:`SharesDelivery`,
:class:`RemaskRequest`, :class:`ConsistencyRequest`, :class:`UnmaskRequest`. Client -> server:
:class:`KeysAdvert`, :class:`EncryptedShares`, :class:`MaskedInput`, :class:`ConsistencySignature`,
:class:`UnmaskShares`.

Every message carries the ``round_id`` it belongs to; client-to-server messages carry their
``sender``. :func:`encode` / :func:`decode` give a self-describing, versioned byte string in
which arrays travel in their own dtype (a 2^32 ring costs 4 bytes an entry, 2^16 two), ids as
8 bytes, and public keys and ciphertexts as raw bytes. The encoding is what transports carry
(in-process driver, sockets, a Flower ``ConfigRecord``) and what the byte counts measure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from phloem.core.errors import ProtocolError
from phloem.secagg.stages import Stage

__all__ = [
    "ConsistencyRequest",
    "ConsistencySignature",
    "EncryptedShares",
    "KeysAdvert",
    "KeysBroadcast",
    "MaskedInput",
    "Message",
    "RemaskRequest",
    "RoundConfig",
    "Setup",
    "SharesDelivery",
    "Stage",
    "UnmaskRequest",
    "UnmaskShares",
    "decode",
    "encode",
]


@dataclass(frozen=True)
class RoundConfig:
    """Public parameters of one aggregation round, sent to every client at set-up."""

    round_id: int
    dim: int  # ring entries per input vector
    modulus_bits: int  # arithmetic in Z_(2^modulus_bits)
    threshold: int  # t: shares that reconstruct a secret
    prg: str = "aes-ctr"
    consistency_check: bool = False  # Bonawitz round 3 (signatures; malicious server)
    #: n, the clients in the round (the server always states it; a client's policy checks it)
    num_clients: int = 0


@dataclass(frozen=True)
class Message:
    """Base of every protocol message."""

    TYPE: ClassVar[int] = 0
    round_id: int


@dataclass(frozen=True)
class Setup(Message):
    TYPE: ClassVar[int] = 1
    config: RoundConfig
    client: int
    #: share holders of this client other than itself, id -> Shamir x-coordinate
    neighbours: dict[int, int]
    point: int  # this client's own x-coordinate


@dataclass(frozen=True)
class KeysAdvert(Message):
    TYPE: ClassVar[int] = 2
    sender: int
    c_public: bytes  # share-encryption key
    s_public: bytes  # mask-agreement key
    sign_public: bytes = b""  # Ed25519 key, when the consistency check is on
    #: SHA-256 commitment to the self-mask seed (see :func:`phloem.secagg.client.seed_commitment`)
    seed_commitment: bytes = b""


@dataclass(frozen=True)
class KeysBroadcast(Message):
    TYPE: ClassVar[int] = 3
    #: neighbour id -> c_public || s_public || sign_public (neighbours that advertised)
    keys: dict[int, bytes]


@dataclass(frozen=True)
class EncryptedShares(Message):
    TYPE: ClassVar[int] = 4
    sender: int
    ciphertexts: dict[int, bytes]  # receiver -> sealed (seed share, key share)
    #: holder (the sender itself included) -> commitment to that holder's share, 64 bytes
    commitments: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class SharesDelivery(Message):
    TYPE: ClassVar[int] = 5
    ciphertexts: dict[int, bytes]  # sender -> sealed share addressed to this client
    #: sender -> its commitment to the share addressed to this client
    commitments: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class MaskedInput(Message):
    TYPE: ClassVar[int] = 6
    sender: int
    vector: np.ndarray
    #: senders whose relayed share this client could not accept, and why (it holds none of
    #: theirs and will reveal none)
    rejected: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RemaskRequest(Message):
    """Mask the same input again, without the pairwise masks of ``excluded`` (at most once a
    round: sent only when clients had to be excluded for invalid shares)."""

    TYPE: ClassVar[int] = 11
    excluded: tuple[int, ...]


@dataclass(frozen=True)
class ConsistencyRequest(Message):
    TYPE: ClassVar[int] = 7
    survivors: tuple[int, ...]  # the whole U3


@dataclass(frozen=True)
class ConsistencySignature(Message):
    TYPE: ClassVar[int] = 8
    sender: int
    signature: bytes


@dataclass(frozen=True)
class UnmaskRequest(Message):
    TYPE: ClassVar[int] = 9
    survivors: tuple[int, ...]  # holders reveal their mask-seed share of these
    dropped: tuple[int, ...]  # ... and their key share of these
    signatures: dict[int, bytes]  # consistency-check signatures (empty when off)


@dataclass(frozen=True)
class UnmaskShares(Message):
    TYPE: ClassVar[int] = 10
    sender: int
    seed_shares: dict[int, np.ndarray]
    key_shares: dict[int, np.ndarray]


_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Setup,
        KeysAdvert,
        KeysBroadcast,
        EncryptedShares,
        SharesDelivery,
        MaskedInput,
        ConsistencyRequest,
        ConsistencySignature,
        UnmaskRequest,
        UnmaskShares,
        RemaskRequest,
    )
}

_MAGIC = b"PSA2"  # 2: commitments, rejections, re-masks, n in the config
_DTYPES = {"u1": 1, "u2": 2, "u4": 3, "u8": 4}
_DTYPE_OF = {v: np.dtype("<" + k) for k, v in _DTYPES.items()}


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self.parts.append(struct.pack("<B", v))

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack("<I", v))

    def u64(self, v: int) -> None:
        self.parts.append(struct.pack("<Q", v))

    def blob(self, b: bytes) -> None:
        self.u32(len(b))
        self.parts.append(b)

    def array(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        code = _DTYPES.get(a.dtype.str.lstrip("<>=|")[0:2])
        if code is None or a.ndim != 1:
            raise ProtocolError(f"cannot encode a {a.ndim}-d {a.dtype} array")
        self.u8(code)
        self.u64(a.size)
        self.parts.append(a.astype(_DTYPE_OF[code], copy=False).tobytes())


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ProtocolError("truncated message")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return int(struct.unpack("<B", self.take(1))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def blob(self) -> bytes:
        return bytes(self.take(self.u32()))

    def array(self) -> np.ndarray:
        code = self.u8()
        if code not in _DTYPE_OF:
            raise ProtocolError(f"unknown array dtype code {code}")
        dt = _DTYPE_OF[code]
        n = self.u64()
        a = np.frombuffer(self.take(n * dt.itemsize), dtype=dt)  # read-only view, no copy
        return a if dt.isnative else a.astype(dt.newbyteorder("="))


# One tag per field type; the message classes' annotations say which one applies.
def _put(w: _Writer, kind: str, v: Any) -> None:
    if kind == "int":
        w.u64(v)
    elif kind == "bool":
        w.u8(int(v))
    elif kind == "bytes":
        w.blob(v)
    elif kind == "str":
        w.blob(v.encode("utf-8", "replace"))
    elif kind == "np.ndarray":
        w.array(v)
    elif kind == "tuple[int, ...]":
        w.u32(len(v))
        for x in v:
            w.u64(x)
    elif kind.startswith("dict[int, "):
        inner = kind[len("dict[int, ") : -1]
        w.u32(len(v))
        for key, x in v.items():
            w.u64(key)
            _put(w, inner, x)
    elif kind == "RoundConfig":
        for f in fields(RoundConfig):
            _put(w, str(f.type), getattr(v, f.name))
    else:  # pragma: no cover - a new field type without an encoder is a programming error
        raise TypeError(f"no wire encoding for {kind}")


def _get(r: _Reader, kind: str) -> Any:
    if kind == "int":
        return r.u64()
    if kind == "bool":
        flag = r.u8()
        if flag > 1:
            raise ProtocolError(f"a flag must be 0 or 1, got {flag}")
        return bool(flag)
    if kind == "bytes":
        return r.blob()
    if kind == "str":
        return r.blob().decode()
    if kind == "np.ndarray":
        return r.array()
    if kind == "tuple[int, ...]":
        return tuple(r.u64() for _ in range(r.u32()))
    if kind.startswith("dict[int, "):
        inner = kind[len("dict[int, ") : -1]
        out = {}
        for _ in range(r.u32()):
            key = r.u64()
            if key in out:  # one entry per client: a repeat is malformed, not an overwrite
                raise ProtocolError(f"client {key} appears twice")
            out[key] = _get(r, inner)
        return out
    if kind == "RoundConfig":
        return RoundConfig(**{f.name: _get(r, str(f.type)) for f in fields(RoundConfig)})
    raise TypeError(f"no wire decoding for {kind}")  # pragma: no cover


def encode(msg: Message) -> bytes:
    """The wire bytes of ``msg``."""
    w = _Writer()
    w.parts.append(_MAGIC)
    w.u8(msg.TYPE)
    for f in fields(msg):
        _put(w, str(f.type), getattr(msg, f.name))
    return b"".join(w.parts)


def decode(data: bytes) -> Message:
    """Parse wire bytes; raises :class:`ProtocolError` on anything malformed."""
    if bytes(data[:4]) != _MAGIC:
        raise ProtocolError("not a phloem secagg message (bad magic or version)")
    r = _Reader(data)
    r.take(4)
    cls = _TYPES.get(r.u8())
    if cls is None:
        raise ProtocolError("unknown message type")
    try:
        values = {f.name: _get(r, str(f.type)) for f in fields(cls)}
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"malformed {cls.__name__}: {exc}") from exc
    if r.pos != len(r.data):
        raise ProtocolError(f"{len(r.data) - r.pos} trailing bytes after {cls.__name__}")
    return cls(**values)
