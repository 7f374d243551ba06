"""Pure cryptographic primitives of secure aggregation (no protocol state, no I/O).

- :mod:`~phloem.secagg.crypto.keys` -- X25519 key pairs and HKDF-SHA256 key derivation;
- :mod:`~phloem.secagg.crypto.aead` -- ChaCha20-Poly1305 with the routing bound into the
  associated data;
- :mod:`~phloem.secagg.crypto.shamir` -- vectorised Shamir sharing over GF(2^31 - 1);
- :mod:`~phloem.secagg.crypto.prg` -- AES-256-CTR / ChaCha20 expansion of a 256-bit seed into
  a vector over Z_(2^b).

All of them use ``cryptography`` (OpenSSL) for the cryptography itself. Randomness that must be
secret comes from a :data:`RandomBytes` callable, ``os.urandom`` unless a test injects another.
"""

from phloem.secagg.crypto.keys import RandomBytes, insecure_random_bytes

__all__ = ["RandomBytes", "insecure_random_bytes"]
