"""What the attacker knows and can do: the threat model, and the oracle that enforces it.

:class:`ThreatModel` states the attacker's knowledge as explicit, composable parameters
(access, query budget, auxiliary data, knowledge of the architecture). An attack never touches
the victim directly: it gets an :class:`EdgeOracle`, which answers queries through the edge part
(defences included), counts them against the budget, and hands out the edge module itself only
to a white-box attacker.

Importing this module loads no torch (the oracle imports it when built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from phloem.core.errors import ConfigError, PhloemError

if TYPE_CHECKING:
    import torch

__all__ = ["Access", "AuxData", "BudgetExhaustedError", "EdgeOracle", "ThreatModel"]


class Access(StrEnum):
    """How the attacker can use the edge part ``f_edge``."""

    WHITE_BOX = "white-box"
    """Knows its weights and can differentiate through it (rMLE)."""
    BLACK_BOX = "black-box"
    """Can query it with chosen inputs and see the IRs (learned inversion)."""
    QUERY_FREE = "query-free"
    """Sees only the private IRs; no queries (shadow models, UnSplit)."""


class AuxData(StrEnum):
    """What the attacker's own (auxiliary) data is, relative to the private data."""

    SAME_SET = "same-set"
    """Drawn from the same data set as the private inputs (disjoint samples)."""
    SAME_DISTRIBUTION = "same-distribution"
    """Another sample of the same distribution (e.g. the training split)."""
    OTHER_DISTRIBUTION = "other-distribution"
    """Other images (e.g. CIFAR-10 queries, faces as private inputs)."""
    NOISE = "noise"
    """Uniform noise of the input's shape: no data at all."""


@dataclass(frozen=True)
class ThreatModel:
    """The attacker's knowledge.

    Attributes
    ----------
    access
        :class:`Access` to the edge part.
    query_budget
        Inputs the attacker may push through the edge part (``None``: unlimited); 0 with
        ``query-free`` access.
    aux
        :class:`AuxData`: what the attacker's own data is.
    knows_architecture
        Whether the attacker knows the edge part's architecture (a shadow model copies it).
    knows_cloud
        Whether the attacker holds the cloud part ``f_cloud`` (weights and gradients): it *is*
        the cloud party of a collaborative-inference deployment, He et al.'s adversary. Off by
        default (an eavesdropper on the IRs).

    Raises
    ------
    ConfigError
        Naming the field, for an unknown name, a negative budget or a budget with
        ``query-free`` access.
    """

    access: Access = Access.BLACK_BOX
    query_budget: int | None = None
    aux: AuxData = AuxData.SAME_DISTRIBUTION
    knows_architecture: bool = True
    knows_cloud: bool = False

    def __post_init__(self) -> None:
        for name, enum in (("access", Access), ("aux", AuxData)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise ConfigError(name, f"unknown {value!r}", [m.value for m in enum]) from None
        budget = self.query_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
            raise ConfigError("query_budget", f"{budget!r} queries", ["int >= 0", None])
        if budget is not None and budget < 0:
            raise ConfigError("query_budget", f"{budget} queries", ["int >= 0", None])
        if self.access is Access.QUERY_FREE and budget not in (None, 0):
            raise ConfigError("query_budget", "a query-free attacker makes no queries", [0])
        for flag in ("knows_architecture", "knows_cloud"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(flag, f"{getattr(self, flag)!r}", [True, False])

    @property
    def budget(self) -> int | None:
        """Queries allowed: 0 for a query-free attacker, else ``query_budget``."""
        return 0 if self.access is Access.QUERY_FREE else self.query_budget


class BudgetExhaustedError(PhloemError, RuntimeError):
    """An attack asked the oracle for more queries than its threat model allows."""


class EdgeOracle:
    """The attacker's only handle on the victim: the edge part, as the threat model allows.

    Parameters
    ----------
    edge
        ``f_edge`` with the deployment's defences applied: inputs ``(N, C, H, W)`` in [0, 1]
        to IRs.
    threat
        What the attacker may do.
    input_shape
        ``(C, H, W)`` of one input.
    module
        The edge module itself, for white-box access (differentiable, defences included).
    architecture
        ``architecture(gen)`` -> a freshly initialised, untrained copy of the edge part (its
        architecture, no weights), for an attacker that knows the architecture.
    cloud
        ``cloud()`` -> a copy of the trained cloud part, for an attacker that holds it.
    """

    def __init__(
        self,
        edge: torch.nn.Module,
        threat: ThreatModel,
        input_shape: tuple[int, int, int],
        module: torch.nn.Module | None = None,
        architecture: Callable[[torch.Generator], torch.nn.Module] | None = None,
        cloud: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        self._edge = edge
        self.threat = threat
        self.input_shape = input_shape
        self._module = module if module is not None else edge
        self._architecture = architecture
        self._cloud = cloud
        #: queries answered so far
        self.queries = 0

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """``f_edge(x)`` for a batch, counted against the budget (no gradient).

        Raises
        ------
        BudgetExhaustedError
            When the batch would exceed the threat model's query budget.
        """
        import torch

        budget = self.threat.budget
        if budget is not None and self.queries + x.shape[0] > budget:
            raise BudgetExhaustedError(
                f"{self.queries} queries made, {x.shape[0]} more asked, budget "
                f"{budget} ({self.threat.access.value} attacker)"
            )
        self.queries += x.shape[0]
        with torch.no_grad():
            ir: torch.Tensor = self._edge(x)
        return ir

    def white_box(self) -> torch.nn.Module:
        """The edge module (weights and gradients), for a white-box attacker only.

        Raises
        ------
        PhloemError
            When the threat model is not white-box.
        """
        if self.threat.access is not Access.WHITE_BOX:
            raise PhloemError(
                f"a {self.threat.access.value} attacker has no access to the edge part's weights"
            )
        return self._module

    def shadow(self, gen: torch.Generator) -> torch.nn.Module:
        """A randomly initialised edge part of the victim's architecture (no trained weights),
        drawn from ``gen``, for an attacker that knows the architecture.

        Raises
        ------
        PhloemError
            When the threat model says the attacker does not know it, or none was given.
        """
        if not self.threat.knows_architecture or self._architecture is None:
            raise PhloemError("this attacker does not know the edge part's architecture")
        return self._architecture(gen)

    def cloud(self) -> torch.nn.Module:
        """A copy of the trained cloud part ``f_cloud`` (IRs to logits), for an attacker that
        holds it (``knows_cloud``); changing the copy leaves the deployment as it is.

        Raises
        ------
        PhloemError
            When the threat model says the attacker does not hold it, or none was given.
        """
        if not self.threat.knows_cloud or self._cloud is None:
            raise PhloemError(
                "this attacker does not hold the cloud part (set threat.knows_cloud = true for "
                "an attacker that is the cloud party)"
            )
        return self._cloud()
