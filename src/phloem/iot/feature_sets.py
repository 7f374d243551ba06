"""Named feature sets: which :class:`~phloem.iot.features.FeatureSpec` a command trains on.

A feature set is a class that declares its ``name``, a one-line ``description`` and its
``Params`` (a frozen dataclass; :class:`~phloem.core.registry.NoParams` when it has none), and
registers itself in :data:`FEATURE_SETS`. ``phloem iot train --features NAME`` and
``phloem iot evaluate --features NAME`` pick one by name; the registry lists the names in its
errors and in the commands' help.

Built in: ``full`` (every block), ``log`` (what a resolver log carries) and ``sld`` (the
paper's bag of registered domains).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from phloem.core.registry import Configured, Registry

if TYPE_CHECKING:
    from phloem.iot.features import FeatureSpec

__all__ = ["FEATURE_SETS", "FeatureSet", "Full", "Log", "Sld"]


class FeatureSet(Configured, ABC):
    """A named choice of feature blocks.

    Built with an instance of its ``Params`` (default: ``Params()``), kept as ``params``.
    """

    kind: ClassVar[str] = "feature set"

    @abstractmethod
    def spec(self) -> FeatureSpec:
        """The feature blocks (and their weighting) this set builds."""


FEATURE_SETS: Registry[type[FeatureSet]] = Registry("feature set", "features")
"""Feature sets by name (``full``, ``log``, ``sld``)."""


@FEATURE_SETS.register
class Full(FeatureSet):
    """Every block, the stack fingerprint and the resolver address included (a capture)."""

    name: ClassVar[str] = "full"
    description: ClassVar[str] = "every block"

    def spec(self) -> FeatureSpec:
        from phloem.iot.features import FeatureSpec

        return FeatureSpec()


@FEATURE_SETS.register
class Log(FeatureSet):
    """The blocks a resolver log (dnsmasq, unbound, Pi-hole) can fill."""

    name: ClassVar[str] = "log"
    description: ClassVar[str] = (
        "what a resolver log carries: names, types, counts and order, without the stack "
        "fingerprint or the resolver address"
    )

    def spec(self) -> FeatureSpec:
        from phloem.iot.features import Block, FeatureSpec

        return FeatureSpec(blocks=tuple(b for b in Block if b not in (Block.STACK, Block.RESOLVER)))


@FEATURE_SETS.register
class Sld(FeatureSet):
    """Registered (second-level) domains only: the paper's features."""

    name: ClassVar[str] = "sld"
    description: ClassVar[str] = "registered domains only: the paper's"

    def spec(self) -> FeatureSpec:
        from phloem.iot.features import Block, FeatureSpec

        return FeatureSpec(blocks=(Block.SLD,))
