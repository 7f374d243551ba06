"""A user's own labelled data: captures and logs, and a labels file naming their clients.

``phloem iot train DATA... --labels labels.csv`` trains on any captures, resolver logs or FTL
databases (files, folders, globs: :func:`~phloem.iot.batch.expand_inputs`), the bundled doh_iot
corpus being one more input (``doh_iot``). Each file gives one event per client, anchored as
``identify`` anchors it (DHCP, else the first query), so the model learns what it will later
be shown; an event is labelled by its key, a MAC (a capture on the device's link, FTL's
network table) or an IP (a resolver log).

The labels file is a CSV with a header: a key column (``mac``, ``ip`` or ``key``: a MAC in any
usual spelling, or an IP address), ``device``, and optionally ``manufacturer`` and
``category``::

    mac,device,manufacturer,category
    9c:a2:f4:6e:de:25,tapo_plug,TP-Link,plug
    192.168.1.23,roomba,iRobot,vacuum

A row that cannot be used (no key, a key that is neither a MAC nor an IP, no device, a key
already given to another device) is skipped and counted by kind in :class:`LabelStats`; a
missing file or missing columns are one :class:`~phloem.core.errors.ConfigError`.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from phloem.core.errors import ConfigError
from phloem.iot.events import Event
from phloem.iot.sources import AUTO, looks_like_text

__all__ = [
    "CORPUS",
    "KEY_COLUMNS",
    "Collected",
    "KeyLabels",
    "LabelStats",
    "collect_labelled",
    "load_key_labels",
    "normalise_key",
]

CORPUS = "doh_iot"
"""The input that names the bundled doh_iot corpus (with its own labels)."""

KEY_COLUMNS = ("mac", "ip", "key")
"""Columns a labels file may name its clients by (the first present is used)."""

_MAC = re.compile(r"^[0-9a-f]{12}$")


def normalise_key(text: str) -> str | None:
    """A client key as events carry it: a MAC as ``aa:bb:cc:dd:ee:ff``, an IP in its
    canonical form; ``None`` when ``text`` is neither.

    MACs may be written with colons, dashes, dots (``aabb.ccdd.eeff``) or nothing between
    the digits, in either case.
    """
    t = text.strip().lower()
    digits = re.sub(r"[:\-.]", "", t)
    if _MAC.match(digits) and (len(t) == 12 or not t.replace(".", "").isdigit()):
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    try:
        return str(ipaddress.ip_address(t))
    except ValueError:
        return None


@dataclass
class LabelStats:
    """What :func:`load_key_labels` read: ``rows`` used, and those skipped by kind."""

    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.skipped.items()))
        return f"labels: {self.rows} rows" + (f"; skipped {kinds}" if kinds else "")


@dataclass(frozen=True)
class KeyLabels:
    """Client key -> device, and device -> its manufacturer and category."""

    devices: dict[str, str]
    hierarchy: dict[str, tuple[str, str]]


def load_key_labels(path: Path, stats: LabelStats | None = None) -> KeyLabels:
    """Read a labels file (see the module docstring).

    A device listed with different manufacturers or categories keeps the first (the others
    are counted as ``inconsistent hierarchy``); an empty manufacturer or category reads as
    ``?``.

    Raises
    ------
    ConfigError
        Naming ``labels``: the file does not exist, is not a text CSV, has no key column or no
        ``device`` column, or labels nothing.
    """
    stats = stats if stats is not None else LabelStats()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError("labels", f"{path} {what} (a CSV: mac or ip, device, ...)")
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not looks_like_text(head):
        raise ConfigError("labels", f"{path} is not a text CSV file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in reader.fieldnames or ()]
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError("labels", f"{path}: not a readable CSV ({exc})") from None
    key_col = next((c for c in KEY_COLUMNS if c in columns), None)
    if key_col is None or "device" not in columns:
        raise ConfigError(
            "labels",
            f"{path} needs a header with a key column ({', '.join(KEY_COLUMNS)}) and 'device'; "
            f"it has {columns or 'none'}",
        )
    devices: dict[str, str] = {}
    hierarchy: dict[str, tuple[str, str]] = {}
    for raw in rows:
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        if not row.get(key_col):
            stats.skipped["no key"] += 1
            continue
        key = normalise_key(row[key_col])
        if key is None:
            stats.skipped["bad key"] += 1
            continue
        device = row.get("device", "")
        if not device:
            stats.skipped["no device"] += 1
            continue
        if devices.get(key, device) != device:
            stats.skipped["key of another device"] += 1
            continue
        devices[key] = device
        stats.rows += 1
        level = (row.get("manufacturer") or "?", row.get("category") or "?")
        if hierarchy.setdefault(device, level) != level:
            stats.skipped["inconsistent hierarchy"] += 1
    if not devices:
        raise ConfigError("labels", f"{path} labels no client ({stats.summary()})")
    return KeyLabels(devices, hierarchy)


@dataclass
class Collected:
    """What :func:`collect_labelled` read.

    Attributes
    ----------
    events
        Labelled events, one per labelled client per file.
    files
        Files read.
    skipped_files
        ``(file, why)`` for each file that is not an input (the others are still used).
    unlabelled
        Clients whose key the labels file does not name (not trained on).
    records
        Damaged or skipped records of the files read, by kind.
    """

    events: list[Event] = field(default_factory=list)
    files: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    unlabelled: int = 0
    records: Counter[str] = field(default_factory=Counter)


def collect_labelled(
    paths: Iterable[Path],
    labels: KeyLabels,
    *,
    kind: str = AUTO,
    year: int | None = None,
    anchor: str = "dhcp-or-first-query",
    into: Collected | None = None,
) -> Collected:
    """One labelled event per labelled client of each file (``experiment`` = the file).

    A file that is not a capture, log or FTL database is skipped with its reason; the
    records each source skipped are summed by kind.
    """
    from phloem.iot.batch import read_events

    out = into if into is not None else Collected()
    for read in read_events(list(paths), kind=kind, year=year, anchor=anchor):
        if read.stats is None:
            out.skipped_files.append((str(read.path), read.error or ""))
            continue
        out.files += 1
        out.records.update(read.stats.damage())
        for e in read.events:
            device = labels.devices.get(e.key)
            if device is None:
                out.unlabelled += 1
                continue
            out.events.append(replace(e, device=device, experiment=str(read.path)))
    return out


def check_devices(option: str, named: Sequence[str], known: Iterable[str]) -> None:
    """``named`` devices all among ``known``, else a :class:`ConfigError` listing them."""
    have = set(known)
    missing = [d for d in named if d not in have]
    if missing:
        raise ConfigError(option, f"no training event of {', '.join(missing)}", sorted(have))
