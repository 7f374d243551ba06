"""What every evaluation protocol shares: the registry, the protocol and report types, the
inputs a protocol runs on, and validated day splits.

A protocol is a class that declares its ``name``, a one-line ``description`` and a frozen
``Params`` dataclass (units in names: ``windows_s``), registers itself in :data:`PROTOCOLS`,
and implements :meth:`EvaluationProtocol.run`: from a :class:`Setup` (the labelled events,
the feature blocks, a classifier factory, the label hierarchy) to a typed
:class:`ProtocolReport` that says how it split the data, gives its scores as a table and as
JSON rows, and may write a report folder.

Importing this module imports neither scikit-learn, scipy nor torch (the command line lists
the protocols without them); protocols import what they compute with when they run.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from phloem.core.errors import ConfigError
from phloem.core.registry import Configured, Registry
from phloem.iot.evaluate import WINDOWS, temporal_split_events
from phloem.iot.events import Event

if TYPE_CHECKING:
    from phloem.iot.evaluate import ModelFactory
    from phloem.iot.features import FeatureSpec

__all__ = [
    "PROTOCOLS",
    "DaySplit",
    "EvaluationProtocol",
    "ProtocolReport",
    "RandomSplitParams",
    "ScoreTable",
    "Setup",
    "Split",
    "Strong",
    "check_fraction",
    "check_seconds",
    "train_days_until",
]

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Setup:
    """What a protocol runs on.

    Attributes
    ----------
    events
        Labelled events (the doh_iot corpus by default), each with its ``day``.
    spec
        The feature blocks to build.
    model
        Makes one unfitted classifier per call.
    hierarchy
        Device -> ``(manufacturer, category)``; may be empty.
    """

    events: Sequence[Event]
    spec: FeatureSpec
    model: ModelFactory
    hierarchy: Mapping[str, tuple[str, str]]


class Strong(str):
    """A table cell to emphasise (the label of a summary row)."""

    __slots__ = ()


@dataclass(frozen=True)
class ScoreTable:
    """Scores as text cells, for a front-end to lay out (every column right-aligned).

    Attributes
    ----------
    columns
        Column headers.
    rows
        One tuple of cells per row; a :class:`Strong` cell is emphasised.
    compact
        Many columns: draw a light frame without edge padding (fits 80 columns).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    compact: bool = False


@dataclass(frozen=True)
class ProtocolReport(ABC):
    """The typed result of one protocol run.

    Attributes
    ----------
    split
        How the events were split into training and test, in words.
    """

    split: str

    @abstractmethod
    def table(self) -> ScoreTable:
        """The scores as a table."""

    @abstractmethod
    def score_rows(self) -> list[dict[str, Any]]:
        """The scores as JSON-able rows (one per score)."""

    def notes(self) -> tuple[str, ...]:
        """Lines to show under the table (default: none)."""
        return ()

    def write_report(self, outdir: Path, *, title: str, meta: Mapping[str, object]) -> Path | None:
        """Write a report folder (``report.md`` and figures); its path, or ``None`` when this
        kind of result has no report (the default)."""
        return None


@dataclass(frozen=True)
class RandomSplitParams:
    """A random split of the captures up to ``test_until`` (``YYYY-MM-DD``): ``test_fraction``
    in the test set, drawn with ``seed``, scored at ``windows_s`` seconds after the anchor."""

    test_until: str = "2023-10-28"
    test_fraction: float = 0.3
    seed: int = 0
    windows_s: tuple[float, ...] = WINDOWS

    def __post_init__(self) -> None:
        check_day("test_until", self.test_until)
        check_fraction("test_fraction", self.test_fraction)
        check_seconds("windows_s", self.windows_s)


class EvaluationProtocol(Configured, ABC):
    """One way to split the data and score the identifier.

    Built with an instance of its ``Params`` (default: ``Params()``), kept as ``params``.
    """

    kind: ClassVar[str] = "protocol"

    @abstractmethod
    def run(self, setup: Setup) -> ProtocolReport:
        """Split, train and score; every split is stated in the report."""


PROTOCOLS: Registry[type[EvaluationProtocol]] = Registry(
    "evaluation protocol",
    "protocol",
    populate=[
        "phloem.iot.protocols.temporal",
        "phloem.iot.protocols.experiment",
        "phloem.iot.protocols.unknown",
        "phloem.iot.protocols.anytime",
        "phloem.iot.protocols.paper",
    ],
)
"""Evaluation protocols by name (``temporal``, ``experiment``, ``unknown``, ``anytime``,
``paper``)."""


# ---- validation shared by the protocols' parameters ---------------------------------------


def check_day(field: str, value: str) -> None:
    """``value`` must be an ISO day, ``YYYY-MM-DD``."""
    try:
        ok = bool(_DAY.fullmatch(value)) and bool(date.fromisoformat(value))
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(field, f"{value!r} is not a day (YYYY-MM-DD)")


def check_seconds(field: str, values: Sequence[float]) -> None:
    """``values`` must be one or more non-negative numbers of seconds."""
    if not values or any(not w >= 0 for w in values):
        raise ConfigError(field, f"{list(values)}: give one or more non-negative seconds")


def check_fraction(field: str, value: float) -> None:
    """``value`` must lie strictly between 0 and 1."""
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ConfigError(field, f"{value} is not in (0, 1)")


# ---- day splits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Training and test events, and how they were split (in words)."""

    train: list[Event]
    test: list[Event]
    description: str


def train_days_until(events: Sequence[Event], train_until: str) -> tuple[list[Event], list[Event]]:
    """The events of the days up to ``train_until`` (included) and those of the later days.

    Raises
    ------
    ConfigError
        Naming ``train_until`` when either side would be empty.
    """
    try:
        return temporal_split_events(events, until=train_until)
    except ValueError as exc:
        raise ConfigError("train_until", str(exc)) from None


@dataclass(frozen=True)
class DaySplit:
    """Train on the days up to ``train_until``, test on ``test_from`` to ``test_until``.

    Attributes
    ----------
    train_until
        Last training day, ``YYYY-MM-DD``.
    test_from
        First test day (``None``: the day after ``train_until``).
    test_until
        Last test day.
    windows_s
        Seconds after the anchor to score at.
    """

    train_until: str = "2023-10-25"
    test_from: str | None = None
    test_until: str = "2023-10-28"
    windows_s: tuple[float, ...] = WINDOWS

    def __post_init__(self) -> None:
        check_day("train_until", self.train_until)
        if self.test_from is not None:
            check_day("test_from", self.test_from)
        check_day("test_until", self.test_until)
        check_seconds("windows_s", self.windows_s)

    def split(self, events: Sequence[Event]) -> Split:
        """The training days and the test days' events, described."""
        train, rest = train_days_until(events, self.train_until)
        first_test = self.test_from
        test = [
            e
            for e in rest
            if (first_test is None or first_test <= e.day) and e.day <= self.test_until
        ]
        if not test:
            raise ConfigError("test_until", "no test events between the given days")
        days = sorted({e.day for e in test})
        shown = ", ".join(days) if len(days) <= 4 else f"{days[0]}..{days[-1]}"
        first_day = min(e.day for e in train)
        return Split(train, test, f"train {first_day}..{self.train_until}, test days {shown}")
