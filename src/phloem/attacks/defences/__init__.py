"""Defences: wrappers of the edge part (each registers itself in :data:`DEFENCES`)."""

from phloem.attacks.defences.base import Defence, DefendedEdge

__all__ = ["Defence", "DefendedEdge"]
