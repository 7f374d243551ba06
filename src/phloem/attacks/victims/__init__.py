"""Victims: split models the attacks target (each registers itself in :data:`VICTIMS`)."""

from phloem.attacks.victims.base import SplitModel

__all__ = ["SplitModel"]
