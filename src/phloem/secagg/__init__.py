"""Secure aggregation: SecAgg (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020).

Layers, bottom up:

- :mod:`phloem.secagg.crypto` -- pure primitives: X25519 + HKDF key agreement, AEAD for relayed
  shares, vectorised Shamir sharing over a prime field, an AES-CTR mask PRG;
- :mod:`phloem.secagg.ring`, :mod:`phloem.secagg.quantize` -- Z_(2^b) arithmetic and the
  float <-> ring mapping with stochastic rounding and an overflow check;
- :mod:`phloem.secagg.graph` -- SecAgg+ neighbour graphs and their parameter choice;
- :mod:`phloem.secagg.messages`, :mod:`phloem.secagg.client`, :mod:`phloem.secagg.server` --
  the protocol as sans-IO state machines over typed messages with a compact wire encoding;
- :mod:`phloem.secagg.driver` -- an in-process driver with dropout injection and accounting.
"""
