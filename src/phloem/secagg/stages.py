"""The stages of a secure-aggregation round: one enum for the protocol, its transports and reports.

:class:`Stage` names the server's requests in protocol order (Bonawitz et al., CCS 2017,
rounds 0-4, with the set-up in front) plus ``DONE``, the state a client or server is in once its
round is over. Each member *is* its stable lower-case name (a :class:`~enum.StrEnum`): it is
what dropout schedules, config files, reports and Flower records carry, and ``Stage.UNMASK ==
"unmask"``. Comparisons between stages follow protocol order (``Stage.SETUP < Stage.UNMASK``),
never the alphabet; comparing a stage with a plain string by order is refused.

This module imports nothing but the standard library and :mod:`phloem.core.errors`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum

from phloem.core.errors import ConfigError

__all__ = ["PROTOCOL_STAGES", "DropoutSchedule", "Stage"]


class Stage(StrEnum):
    """A protocol stage; its value is its stable name, its order the protocol's."""

    SETUP = "setup"
    """The server sends each client its neighbours; the client advertises two public keys."""
    SHARE_KEYS = "share_keys"
    """The server relays the keys; each client sends its encrypted secret shares."""
    MASKED_INPUT = "masked_input"
    """The server relays the shares; each client sends its masked input."""
    CONSISTENCY = "consistency"
    """Optional: each client signs the survivor set (Bonawitz et al.'s round 3)."""
    UNMASK = "unmask"
    """Each client reveals the shares that remove the survivors' masks."""
    DONE = "done"
    """The round is over (a state, not a request: no client drops out "at" it)."""

    @property
    def order(self) -> int:
        """Position in the round: ``SETUP`` is 0, ``DONE`` last."""
        return _ORDER[self]

    @classmethod
    def parse(cls, name: object, field: str = "stage") -> Stage:
        """The protocol stage called ``name`` (a :class:`Stage` or its name).

        Raises
        ------
        ConfigError
            Naming ``field`` and listing the stage names, when ``name`` is not one of the
            protocol stages (``done`` is not one).
        """
        if isinstance(name, str) and name in _BY_NAME:
            return _BY_NAME[name]
        shown = repr(str(name)) if isinstance(name, str) else f"{type(name).__name__} {name!r}"
        raise ConfigError(field, f"unknown stage {shown}", [s.value for s in PROTOCOL_STAGES])

    def _rank(self, other: str) -> int:
        if not isinstance(other, Stage):
            raise TypeError(f"cannot order the stage {self.value!r} against {other!r}")
        return _ORDER[other]

    def __lt__(self, other: str) -> bool:
        return _ORDER[self] < self._rank(other)

    def __le__(self, other: str) -> bool:
        return _ORDER[self] <= self._rank(other)

    def __gt__(self, other: str) -> bool:
        return _ORDER[self] > self._rank(other)

    def __ge__(self, other: str) -> bool:
        return _ORDER[self] >= self._rank(other)


_ORDER: dict[Stage, int] = {s: i for i, s in enumerate(Stage)}

#: the stages a client is asked to answer (and may drop out at), in protocol order
PROTOCOL_STAGES: tuple[Stage, ...] = tuple(s for s in Stage if s is not Stage.DONE)

_BY_NAME: dict[str, Stage] = {s.value: s for s in PROTOCOL_STAGES}

#: ``{stage: clients that never answer that stage's request}``, keyed by :class:`Stage` members
#: or their names
DropoutSchedule = Mapping[Stage, Collection[int]] | Mapping[str, Collection[int]]
