"""Authenticated encryption of the shares a client relays to its neighbours via the server.

ChaCha20-Poly1305 (RFC 8439) with a random 96-bit nonce sent in front of the ciphertext. The
associated data binds the protocol version, the round, the sender and the receiver, so a
ciphertext replayed from another round, or re-addressed to another client, or altered in any
bit, fails to open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from phloem.core.errors import ProtocolError
from phloem.secagg.crypto.keys import RandomBytes

__all__ = ["NONCE_BYTES", "OVERHEAD", "associated_data", "open_sealed", "seal"]

NONCE_BYTES = 12
TAG_BYTES = 16
#: Bytes a sealed message adds to its plaintext.
OVERHEAD = NONCE_BYTES + TAG_BYTES


def associated_data(round_id: int, sender: int, receiver: int) -> bytes:
    """What a relayed share is bound to: protocol, round, direction."""
    return b"phloem/secagg/v1|shares|" + b"".join(
        x.to_bytes(8, "big") for x in (round_id, sender, receiver)
    )


def seal(key: bytes, plaintext: bytes, ad: bytes, rand: RandomBytes = os.urandom) -> bytes:
    """``nonce || ChaCha20-Poly1305(key, nonce, plaintext, ad)``."""
    nonce = rand(NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, ad)


def open_sealed(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    """Inverse of :func:`seal`; raises :class:`ProtocolError` if anything was changed."""
    if len(sealed) < OVERHEAD:
        raise ProtocolError(f"sealed share too short ({len(sealed)} bytes)")
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
    except InvalidTag as exc:
        raise ProtocolError(
            "a relayed share failed authentication: tampered, re-addressed, or from another round"
        ) from exc
