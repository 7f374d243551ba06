"""The DoH-IoT DNS capture set (SafeNetIoT/doh_iot) used for rapid IoT device identification.

Thompson, Mandalari, Haddadi, "Rapid IoT Device Identification at the Edge", DistributedML '21.
The captures come from automated power-cycle experiments (plug off 2 min, on 5 min, DNS only):
``dns_only_dev.tar.gz`` holds one pcapng file per experiment,
``dns_only/<device>/<day>/<YYYY-MM-DD>_<HH:MM:SS>.<seconds>s.pcap``.

File names
----------
- The time stamp is the capture start in **UK local time** (``Europe/London``). Checked against
  the packets: with this reading, every first packet falls 0.3 s to 405 s after the start, on
  both sides of the 2023-10-29 BST->GMT change (10-19..28 are BST, 11-22 is GMT).
- ``<seconds>`` is the **capture length in whole seconds** (not a fraction of a second: the
  values span 352..420, i.e. about 6-7 minutes, never the uniform 0..999 of milliseconds, and
  the last packet of every capture falls at most 0.9 s after ``start + seconds``).
- A negative ``<seconds>`` (announced for a few captures of 2023-10-29, none in this tarball)
  is read as a wall-clock difference across the fall-back hour: the true length is
  ``seconds + 3600`` and the start was still in BST (``fold=0``).
- A start in the repeated hour 01:00-02:00 of 2023-10-29 is ambiguous; it is read as BST
  (``fold=0``, the first occurrence) unless the caller asks otherwise, and flagged
  :attr:`CaptureInfo.ambiguous` so it can be filtered.

Nothing is extracted to disk: the tarball is streamed (``tarfile`` mode ``"r|gz"``); indexing all
12,021 members takes about half a second.
"""

from __future__ import annotations

import csv
import re
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

from phloem.data.paths import find_data_file
from phloem.iot.pcap import looks_like_capture

__all__ = [
    "CAPTURES_FILE",
    "LABELS_FILE",
    "UK",
    "CaptureIndex",
    "CaptureInfo",
    "DeviceLabel",
    "ScanStats",
    "by_experiment",
    "index_captures",
    "iter_captures",
    "load_hierarchy",
    "load_labels",
    "parse_capture_name",
    "temporal_split",
]

LABELS_FILE = "iot/doh_iot/labels.csv"
"""Location of the labels inside the data folder (``PHLOEM_DATA_DIR``)."""
CAPTURES_FILE = "iot/doh_iot/dns_only_dev.tar.gz"
"""Location of the capture tarball inside the data folder."""
UK = ZoneInfo("Europe/London")
"""Time zone of the capture file names."""

_WHAT = "DoH-IoT captures (github.com/SafeNetIoT/doh_iot)"
_NAME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})_(?P<time>\d{2}:\d{2}:\d{2})\.(?P<secs>-?\d+(?:\.\d+)?)s\.pcap$"
)
_FALL_BACK_S = 3600.0


@dataclass(frozen=True, slots=True)
class DeviceLabel:
    """One row of ``labels.csv``."""

    device: str
    manufacturer: str
    category: str


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    """What a capture's tar member name says about it.

    Attributes
    ----------
    device
        Device directory name (a key of :func:`load_labels`).
    day
        The ``<day>`` directory (UK local calendar day of the experiment).
    start_utc
        Capture start, timezone-aware UTC.
    duration_s
        Capture length in seconds (the ``<seconds>`` suffix, corrected for the fall-back hour).
    path
        The tar member name.
    ambiguous
        Whether the local start time fell in a repeated (fall-back) hour.
    """

    device: str
    day: date
    start_utc: datetime
    duration_s: float
    path: str
    ambiguous: bool = False

    @property
    def experiment_id(self) -> str:
        """A unique id of the experiment: ``"<device>/<start UTC ISO>"``."""
        return f"{self.device}/{self.start_utc.isoformat()}"

    @property
    def end_utc(self) -> datetime:
        """Capture end, ``start_utc + duration_s``."""
        return self.start_utc + timedelta(seconds=self.duration_s)


def load_labels(path: str | Path | None = None) -> dict[str, DeviceLabel]:
    """Device -> (manufacturer, category) from ``labels.csv``.

    Parameters
    ----------
    path
        The CSV file (or a folder holding it); by default ``<PHLOEM_DATA_DIR>/iot/doh_iot/``.

    Raises
    ------
    DataNotFoundError
        The file is not found (the message says where to put it).
    ValueError
        The header lacks ``device``, ``manufacturer`` or ``category``, or a device repeats.
    """
    file = find_data_file(LABELS_FILE, explicit=path, what="DoH-IoT labels.csv")
    labels: dict[str, DeviceLabel] = {}
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"device", "manufacturer", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{file}: missing columns {sorted(missing)}")
        for row in reader:
            device = row["device"].strip()
            if not device:
                continue
            if device in labels:
                raise ValueError(f"{file}: device {device!r} listed twice")
            labels[device] = DeviceLabel(
                device, row["manufacturer"].strip(), row["category"].strip()
            )
    return labels


def load_hierarchy(path: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """Device -> ``(manufacturer, category)`` from ``labels.csv`` (see :func:`load_labels`):
    the label hierarchy an :class:`~phloem.iot.identify.Identifier` answers up."""
    return {d: (lab.manufacturer, lab.category) for d, lab in load_labels(path).items()}


def parse_capture_name(member_name: str, *, fold: int = 0) -> CaptureInfo:
    """Parse ``.../<device>/<day>/<YYYY-MM-DD>_<HH:MM:SS>.<seconds>s.pcap``.

    Parameters
    ----------
    member_name
        A tar member name (any prefix before ``<device>`` is ignored).
    fold
        Which occurrence of a repeated local time to take (0: BST, 1: GMT) when the start falls
        in the fall-back hour and the suffix does not decide it (see the module docstring).

    Returns
    -------
    CaptureInfo

    Raises
    ------
    ValueError
        The name does not follow the pattern, or its date or time is invalid.

    Examples
    --------
    >>> info = parse_capture_name(
    ...     "dns_only/echodot5/2023-10-19/2023-10-19_00:02:55.402s.pcap")
    >>> info.start_utc.isoformat(), info.duration_s
    ('2023-10-18T23:02:55+00:00', 402.0)
    """
    parts = PurePosixPath(member_name).parts
    if len(parts) < 3:
        raise ValueError(f"not <device>/<day>/<file>: {member_name!r}")
    device, day_text, file_name = parts[-3:]
    match = _NAME.match(file_name)
    if match is None:
        raise ValueError(f"capture name does not parse: {member_name!r}")
    day = date.fromisoformat(day_text)
    local = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    seconds = float(match["secs"])
    if seconds < 0:  # wall-clock length across the fall-back hour: the start was in BST
        seconds += _FALL_BACK_S
        fold = 0
    first = local.replace(tzinfo=UK, fold=0)
    second = local.replace(tzinfo=UK, fold=1)
    # repeated hour: the first occurrence (BST) has the larger offset; a skipped hour is not
    ambiguous = (first.utcoffset() or timedelta()) > (second.utcoffset() or timedelta())
    start = (second if fold else first).astimezone(UTC)
    return CaptureInfo(device, day, start, seconds, member_name, ambiguous)


@dataclass(slots=True)
class ScanStats:
    """What a pass over the tarball met (filled in by :func:`iter_captures`)."""

    members: int = 0
    """Regular-file members seen."""
    captures: int = 0
    """Captures yielded."""
    unparsed: list[str] = field(default_factory=list)
    """Member names that :func:`parse_capture_name` rejected."""
    corrupt: list[str] = field(default_factory=list)
    """Members whose bytes could not be read or are not a pcap/pcapng file."""


def iter_captures(
    path: str | Path | None = None,
    *,
    devices: Iterable[str] | None = None,
    stats: ScanStats | None = None,
) -> Iterator[tuple[CaptureInfo, bytes]]:
    """Stream ``(info, pcap bytes)`` for each capture of the tarball, in archive order.

    Parameters
    ----------
    path
        The tarball (or a folder holding it); by default found in the data folder.
    devices
        Only these devices (all when ``None``).
    stats
        Filled in as the stream goes: members seen, unparsed names, corrupt members. Names
        that do not parse and members that are empty or not pcap/pcapng are skipped, not fatal.

    Raises
    ------
    DataNotFoundError
        The tarball is not found.
    """
    file = find_data_file(CAPTURES_FILE, explicit=path, what=_WHAT)
    wanted = None if devices is None else frozenset(devices)
    stats = stats if stats is not None else ScanStats()
    with tarfile.open(file, mode="r|gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            stats.members += 1
            try:
                info = parse_capture_name(member.name)
            except ValueError:
                stats.unparsed.append(member.name)
                continue
            if wanted is not None and info.device not in wanted:
                continue
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            if not looks_like_capture(data):
                stats.corrupt.append(member.name)
                continue
            stats.captures += 1
            yield info, data


@dataclass(frozen=True, slots=True)
class CaptureIndex:
    """Every capture of the tarball with its :class:`CaptureInfo`, sorted by device and start.

    Built by :func:`index_captures`; held in memory only (rebuild per call, ~0.5 s).
    """

    captures: tuple[CaptureInfo, ...]
    unparsed: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.captures)

    def __iter__(self) -> Iterator[CaptureInfo]:
        return iter(self.captures)

    @property
    def devices(self) -> list[str]:
        """Sorted device names."""
        return sorted({c.device for c in self.captures})

    @property
    def days(self) -> list[date]:
        """Sorted experiment days."""
        return sorted({c.day for c in self.captures})

    def counts(self) -> dict[tuple[str, date], int]:
        """Number of captures per ``(device, day)``."""
        return dict(sorted(Counter((c.device, c.day) for c in self.captures).items()))

    def counts_per_device(self) -> dict[str, int]:
        """Number of captures per device."""
        return dict(sorted(Counter(c.device for c in self.captures).items()))

    def counts_per_day(self) -> dict[date, int]:
        """Number of captures per day (all devices)."""
        return dict(sorted(Counter(c.day for c in self.captures).items()))

    def devices_on(self, day: date) -> list[str]:
        """Sorted devices with at least one capture on ``day``."""
        return sorted({c.device for c in self.captures if c.day == day})


def index_captures(
    path: str | Path | None = None, *, devices: Iterable[str] | None = None
) -> CaptureIndex:
    """List all captures of the tarball (reads it once; corrupt members are counted).

    Parameters
    ----------
    path
        The tarball (or a folder holding it); by default found in the data folder.
    devices
        Only these devices (all when ``None``).
    """
    stats = ScanStats()
    infos = [info for info, _ in iter_captures(path, devices=devices, stats=stats)]
    infos.sort(key=lambda c: (c.device, c.start_utc))
    return CaptureIndex(tuple(infos), tuple(stats.unparsed), tuple(stats.corrupt))


def temporal_split(
    infos: Iterable[CaptureInfo],
    *,
    cutoff: date | datetime | None = None,
    train_days: int | None = None,
) -> tuple[list[CaptureInfo], list[CaptureInfo]]:
    """Split captures by time: train on earlier experiments, test on later ones.

    Give exactly one of ``cutoff`` and ``train_days``. Both sides keep input order.

    Parameters
    ----------
    infos
        Captures to split.
    cutoff
        A ``date``: captures whose :attr:`CaptureInfo.day` is before it train, the others
        test. A tz-aware ``datetime``: captures starting before it train.
    train_days
        The first ``train_days`` distinct days present in ``infos`` train, the later ones test
        (e.g. ``train_days=7`` on 2023-10-19..28 trains on 10-19..25 and tests on 10-26..28).

    Raises
    ------
    ValueError
        Not exactly one of ``cutoff``/``train_days``, ``train_days < 0``, or a naive datetime.
    """
    items = list(infos)
    if (cutoff is None) == (train_days is None):
        raise ValueError("give exactly one of cutoff and train_days")
    if train_days is not None:
        if train_days < 0:
            raise ValueError(f"train_days must be >= 0, got {train_days}")
        days = sorted({c.day for c in items})
        train_set = set(days[:train_days])
        train = [c for c in items if c.day in train_set]
        test = [c for c in items if c.day not in train_set]
        return train, test
    if isinstance(cutoff, datetime):
        if cutoff.tzinfo is None:
            raise ValueError("cutoff datetime must be timezone-aware")
        moment = cutoff
        return [c for c in items if c.start_utc < moment], [
            c for c in items if c.start_utc >= moment
        ]
    assert cutoff is not None  # exactly one of the two was checked above
    return [c for c in items if c.day < cutoff], [c for c in items if c.day >= cutoff]


def by_experiment(infos: Sequence[CaptureInfo]) -> dict[str, CaptureInfo]:
    """Captures keyed by :attr:`CaptureInfo.experiment_id` (one capture is one experiment).

    Use the keys as groups (e.g. scikit-learn ``GroupKFold``) so that all DNS events of one
    power-cycle experiment fall on the same side of a split.

    Raises
    ------
    ValueError
        Two captures share a device and start time.
    """
    out: dict[str, CaptureInfo] = {}
    for info in infos:
        key = info.experiment_id
        if key in out:
            raise ValueError(f"duplicate experiment {key}: {out[key].path} and {info.path}")
        out[key] = info
    return out
