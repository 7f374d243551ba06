"""Attacks: one module per method, each citing its paper (registered in :data:`ATTACKS`)."""

from phloem.attacks.methods.base import Attack

__all__ = ["Attack"]
