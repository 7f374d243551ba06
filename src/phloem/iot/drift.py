"""Which known devices have moved since the model was trained (``phloem iot drift``).

Devices change: a firmware update brings new cloud names, a CDN moves, an app adds a
service. The model still names such a device, but with less confidence, and the unknown
detector, calibrated on the device as it was, starts flagging it. :func:`drift_report` reads
recent captures or logs, answers every client at one window (the model's last checkpoint by
default), groups the clients by device -- their labelled device when a labels file names them,
else the device the model answers, leaving out the clients whose MAC vendor no known device
has (new devices, counted apart) -- and compares each group with what the model saw of that
device on its held-out calibration events (``trained_on["reference"]``):

- **flagged**: how many clients were flagged unknown, against the rate expected of a device
  that has not moved (the larger of the calibration target and the device's own calibration
  rate); the one-sided binomial tail ``P(X >= flagged)`` is the evidence that it moved;
- **confidence**: the mean top probability now against then;
- **new names**: the names its clients queried that training never saw, most frequent first.

A device moved when the tail is below ``alpha`` or its confidence fell by more than
``max_confidence_drop``, with at least ``min_clients`` clients; the report then suggests
recalibrating on recent traffic. Without labels a new device answered as a known one lands in
that device's group and looks like drift: the report says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phloem.core.errors import ConfigError
from phloem.iot.events import Event
from phloem.iot.identify import Answer, Identifier
from phloem.iot.labelled import KeyLabels
from phloem.iot.unknown import masked_names

__all__ = ["DeviceDrift", "DriftParams", "DriftReport", "drift_report"]

_NO_REFERENCE_TARGET = 0.01  # models saved before the reference was recorded


@dataclass(frozen=True)
class DriftParams:
    """How drift is judged.

    Attributes
    ----------
    window_s
        Seconds after each client's anchor to answer at (``None``: the model's last
        checkpoint, the window its reference was measured at).
    alpha
        A device moved when it is flagged this unlikely often for an unmoved device.
    max_confidence_drop
        ... or when its mean top probability fell by more than this.
    min_clients
        Devices with fewer clients are listed but never called moved.
    """

    window_s: float | None = None
    alpha: float = 0.01
    max_confidence_drop: float = 0.1
    min_clients: int = 5

    def __post_init__(self) -> None:
        if self.window_s is not None and not (math.isfinite(self.window_s) and self.window_s >= 0):
            raise ConfigError("window_s", f"must be non-negative seconds, got {self.window_s}")
        if not (math.isfinite(self.alpha) and 0 < self.alpha < 1):
            raise ConfigError("alpha", f"{self.alpha} is not in (0, 1)")
        if not (math.isfinite(self.max_confidence_drop) and 0 < self.max_confidence_drop <= 1):
            raise ConfigError("max_confidence_drop", f"{self.max_confidence_drop} is not in (0, 1]")
        if self.min_clients < 1:
            raise ConfigError("min_clients", f"must be at least 1, got {self.min_clients}")


@dataclass(frozen=True)
class DeviceDrift:
    """One device's clients in the recent traffic, against the model's reference.

    ``right`` (with labels only) is the share of its clients the model named right;
    ``p_value`` the binomial tail of ``flagged`` at the rate ``expected``; ``ref_top_p`` and
    ``ref_flagged`` the reference (``None`` for models without one).
    """

    device: str
    clients: int
    flagged: int
    expected: float
    p_value: float
    top_p: float
    ref_top_p: float | None
    ref_flagged: float | None
    new_names: tuple[tuple[str, int], ...]
    right: float | None
    moved: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "clients": self.clients,
            "flagged": self.flagged,
            "expected_rate": self.expected,
            "p_value": self.p_value,
            "top_p": round(self.top_p, 4),
            "ref_top_p": self.ref_top_p,
            "ref_flagged": self.ref_flagged,
            "new_names": [list(x) for x in self.new_names],
            "right": self.right,
            "moved": self.moved,
            "why": self.why,
        }


@dataclass
class DriftReport:
    """:func:`drift_report`'s answer: one row per device (moved first), what was read."""

    window_s: float
    devices: list[DeviceDrift]
    grouped_by: str  # "labels" or "answers"
    files: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    clients: int = 0
    silent: int = 0  # clients without a query in the window (not scored)
    unlabelled: int = 0  # with labels: clients not named, or named as a device never trained on
    foreign: int = 0  # without labels: clients whose MAC vendor no known device has (new ones)

    @property
    def moved(self) -> list[DeviceDrift]:
        return [d for d in self.devices if d.moved]

    def advice(self) -> str:
        """What to do, in one line."""
        moved = self.moved
        if not moved:
            return "no known device has moved; the model's calibration holds."
        names = ", ".join(d.device for d in moved[:8]) + (" ..." if len(moved) > 8 else "")
        caveat = (
            ""
            if self.grouped_by == "labels"
            else " (grouped by the model's answers: a new device answered as a known one looks"
            " the same; --labels tells them apart)"
        )
        return (
            f"{len(moved)} known device(s) have moved: {names}{caveat}. Recalibrate on recent "
            "traffic: label their clients and retrain with the old and the new data, "
            "`phloem iot train doh_iot NEW_DATA... --labels labels.csv`."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "grouped_by": self.grouped_by,
            "files": self.files,
            "skipped_files": [list(x) for x in self.skipped_files],
            "clients": self.clients,
            "silent": self.silent,
            "unlabelled": self.unlabelled,
            "foreign": self.foreign,
            "devices": [d.to_dict() for d in self.devices],
            "advice": self.advice(),
        }


def binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def _row(
    identifier: Identifier,
    device: str,
    group: Sequence[tuple[Event, Answer]],
    window_s: float,
    labelled: bool,
    p: DriftParams,
) -> DeviceDrift:
    ref = identifier.trained_on.get("reference") or {}
    mine = (ref.get("devices") or {}).get(device)
    target = float(ref.get("target_false_unknown", _NO_REFERENCE_TARGET))
    ref_flagged = None if mine is None else float(mine["flagged"])
    ref_top_p = None if mine is None else float(mine["top_p"])
    expected = max(target, ref_flagged or 0.0)
    n = len(group)
    flagged = sum(a.unknown for _, a in group)
    tail = binomial_tail(flagged, n, expected)
    top_p = sum(a.confidence for _, a in group) / n
    new: Counter[str] = Counter()
    for e, _ in group:
        new.update(masked_names(e.window(window_s)) - identifier.vocabulary)
    right = sum(a.top[0].label == device for _, a in group) / n if labelled else None
    why = []
    if tail < p.alpha:
        why.append(f"flagged {flagged}/{n}, expected {expected:.1%} (p = {tail:.1e})")
    if ref_top_p is not None and ref_top_p - top_p > p.max_confidence_drop:
        why.append(f"confidence {top_p:.2f}, was {ref_top_p:.2f}")
    moved = bool(why) and n >= p.min_clients
    if why and not moved:
        why.append(f"only {n} client(s)")
    return DeviceDrift(device, n, flagged, expected, tail, top_p, ref_top_p, ref_flagged,
                       tuple(new.most_common(3)), right, moved, "; ".join(why))  # fmt: skip


def drift_report(
    identifier: Identifier,
    paths: Sequence[Path],
    params: DriftParams | None = None,
    *,
    labels: KeyLabels | None = None,
    kind: str = "auto",
    year: int | None = None,
    anchor: str = "dhcp-or-first-query",
) -> DriftReport:
    """Compare recent traffic in ``paths`` with what ``identifier`` was trained on.

    Parameters
    ----------
    identifier
        The deployed model.
    paths
        Captures, logs or FTL databases (see :func:`~phloem.iot.batch.expand_inputs`).
    params
        The window and the thresholds (default: ``DriftParams()``).
    labels
        Names the clients (:func:`~phloem.iot.labelled.load_key_labels`): group by the true
        device, and report the share named right. Clients of devices the model was never
        trained on are left out (they are unknown devices, not drift).
    kind, year, anchor
        How the files are read (as for ``identify``).
    """
    from phloem.iot.batch import read_events

    p = params if params is not None else DriftParams()
    window = identifier.checkpoints[-1] if p.window_s is None else p.window_s
    report = DriftReport(window, [], "labels" if labels is not None else "answers")
    groups: dict[str, list[tuple[Event, Answer]]] = {}
    known = set(identifier.classes)
    for read in read_events(paths, kind=kind, year=year, anchor=anchor):
        if read.stats is None:
            report.skipped_files.append((str(read.path), read.error or ""))
            continue
        report.files += 1
        report.clients += len(read.events)
        talking = [e for e in read.events if e.window(window)]
        report.silent += len(read.events) - len(talking)
        answers = identifier.answer_many(talking, window, top=1, explain=False)
        for e, a in zip(talking, answers, strict=True):
            if labels is None:
                if any(w.startswith("MAC vendor") for w in a.why_unknown):
                    report.foreign += 1  # no known device has its vendor: a new device
                    continue
                device: str | None = a.top[0].label
            else:
                device = labels.devices.get(e.key)
                if device is None or device not in known:
                    report.unlabelled += 1
                    continue
            groups.setdefault(str(device), []).append((e, a))
    rows = [
        _row(identifier, d, g, window, labels is not None, p) for d, g in sorted(groups.items())
    ]
    report.devices = sorted(rows, key=lambda r: (not r.moved, r.p_value, r.device))
    return report
