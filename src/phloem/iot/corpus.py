"""The labelled DoH-IoT corpus: one :class:`~phloem.iot.events.Event` per capture.

Each capture of ``dns_only_dev.tar.gz`` records one power-cycle experiment of one device under
test, so the corpus has exactly one event per capture, labelled with the device directory of
its path. What the data show (all 12,021 captures, 37 devices):

- **One client per capture.** No capture holds DNS queries from more than one source MAC,
  and each device uses a single MAC in all its captures (37 devices, 37 MACs); there are no
  queries from the router and no DHCP messages (the captures keep DNS packets only), so in
  practice events are anchored at the device's first query. IP addresses are less stable:
  ``simplicam`` uses 235 addresses over its 530 captures, so clients are keyed by MAC.
- **Picking the device client robustly** (in case a capture did hold other hosts): each
  device's *usual key* is the client that sent the most queries in the largest number of its
  captures; in every capture the usual key's event is taken when present, otherwise the
  client with the most queries (counted in :attr:`CorpusStats.off_key`).
- **No DNS.** 1,462 captures (12.2%) hold no query from the device; they give an event with
  no queries, anchored at the capture start of the file name (the README's "about 11%").
- **Resolvers.** Every device queries public resolvers directly: 8.8.8.8 for all of them,
  8.8.4.4 as a second resolver for many, 114.114.114.114 for ``vtech_baby_monitor`` (its main
  one) and ``aqara_hubM2``.

``Event.day`` is the experiment's ``<day>`` directory (UK local day, as
:attr:`~phloem.iot.dataset.CaptureInfo.day` and :func:`~phloem.iot.dataset.temporal_split`
use it), which differs from the anchor's UTC date only for experiments started between
midnight and 1 a.m. BST. ``Event.experiment`` is
:attr:`~phloem.iot.dataset.CaptureInfo.experiment_id`.

Building the whole corpus takes about 5 s (one streaming pass over the tarball);
:func:`load_corpus` caches it as JSON and reloads it in well under a second.
"""

from __future__ import annotations

import gc
import io
import json
import os
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from phloem.data import default_cache_dir, find_data_file
from phloem.iot.dataset import _WHAT, CAPTURES_FILE, CaptureInfo, ScanStats, iter_captures
from phloem.iot.events import AnchorMode, Event, EventStats, Query, events_from_packets
from phloem.iot.pcap import CaptureFormatError, PcapReader

__all__ = ["CACHE_VERSION", "CorpusStats", "build_corpus", "corpus_cache_file", "load_corpus"]

CACHE_VERSION: Final = 2
"""Bump when the events :func:`build_corpus` produces change; older cache files are ignored."""


@dataclass(slots=True)
class CorpusStats:
    """What :func:`build_corpus` met.

    Attributes
    ----------
    captures
        Events produced (one per readable capture).
    no_dns
        Captures with no query from the device (events with no queries).
    multi_client
        Captures in which more than one client sent queries.
    off_key
        Captures whose event is not the device's usual client (see the module docstring).
    unreadable
        Member names that :class:`~phloem.iot.pcap.PcapReader` rejected (no event).
    device_keys
        Device -> its usual client key (MAC).
    events
        Packet, DNS and anchor counters of :func:`~phloem.iot.events.events_from_packets`.
    scan
        Tarball counters of :func:`~phloem.iot.dataset.iter_captures`.
    """

    captures: int = 0
    no_dns: int = 0
    multi_client: int = 0
    off_key: int = 0
    unreadable: list[str] = field(default_factory=list)
    device_keys: dict[str, str] = field(default_factory=dict)
    events: EventStats = field(default_factory=EventStats)
    scan: ScanStats = field(default_factory=ScanStats)


def _top(events: list[Event]) -> Event | None:
    """The event with the most queries (ties: earliest anchor, then key)."""
    if not events:
        return None
    return min(events, key=lambda e: (-len(e.queries), e.anchor_utc, e.key))


def _label(event: Event | None, info: CaptureInfo, key: str) -> Event:
    """``event`` labelled with its capture; no event: a silent one at the capture start."""
    if event is None:
        event = Event(key, info.start_utc.timestamp(), ())
    return replace(
        event, device=info.device, experiment=info.experiment_id, day=info.day.isoformat()
    )


def build_corpus(
    path: str | Path | None = None,
    *,
    devices: Iterable[str] | None = None,
    anchor: AnchorMode = "dhcp-or-first-query",
    stats: CorpusStats | None = None,
) -> list[Event]:
    """One labelled event per capture of the DoH-IoT tarball.

    Parameters
    ----------
    path
        The tarball (or a folder holding it); by default found in the data folder.
    devices
        Only these devices (all when ``None``).
    anchor
        Anchor mode passed to :func:`~phloem.iot.events.events_from_packets`. The captures
        hold no DHCP, so the default anchors at the device's first query.
    stats
        Filled in with the counters of :class:`CorpusStats`.

    Returns
    -------
    list of Event
        Sorted by device, then capture start; ``device``, ``experiment`` and ``day`` set.
        A capture without any query from the device gives an event with no queries, anchored
        at the capture start of its file name.

    Raises
    ------
    DataNotFoundError
        The tarball is not found.
    """
    stats = stats if stats is not None else CorpusStats()
    # per capture: its events and the one with the most queries (None: no query at all)
    per_capture: list[tuple[CaptureInfo, list[Event], Event | None]] = []
    votes: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for info, data in iter_captures(path, devices=devices, stats=stats.scan):
        try:
            reader = PcapReader(io.BytesIO(data), name=info.path)
            events = events_from_packets(reader, anchor=anchor, stats=stats.events)
        except CaptureFormatError:
            stats.unreadable.append(info.path)
            continue
        talking = [e for e in events if e.queries]
        top = _top(talking)
        stats.multi_client += len(talking) > 1
        per_capture.append((info, events, top))
        if top is not None:
            votes[info.device][top.key] += 1
    keys = {dev: c.most_common(1)[0][0] for dev, c in votes.items()}
    stats.device_keys.update(keys)
    corpus: list[Event] = []
    for info, events, top in per_capture:
        usual = keys.get(info.device, "")
        chosen = next((e for e in events if e.key == usual), None) or top
        if chosen is not None and chosen.key != usual:
            stats.off_key += 1
        event = _label(chosen, info, usual)
        stats.no_dns += not event.queries
        corpus.append(event)
    stats.captures += len(corpus)
    infos = [info for info, _, _ in per_capture]
    pairs = sorted(zip(infos, corpus, strict=True), key=lambda p: (p[0].device, p[0].start_utc))
    return [event for _, event in pairs]


def corpus_cache_file(tarball: Path, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`load_corpus` caches the corpus of ``tarball``.

    The name holds :data:`CACHE_VERSION` and the tarball's size and modification time, so a
    replaced tarball or a new phloem version misses the old entry.
    """
    st = tarball.stat()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"doh_iot_corpus_v{CACHE_VERSION}_{st.st_size}_{st.st_mtime_ns}.json"


def _to_json(events: list[Event]) -> dict[str, Any]:
    rows = [
        [e.key, e.anchor_utc, e.device, e.experiment, e.day,
         [[q.t, q.name, q.qtype, q.resolver, q.stack] for q in e.queries]]
        for e in events
    ]  # fmt: skip
    return {"version": CACHE_VERSION, "events": rows}


def _from_json(doc: dict[str, Any]) -> list[Event]:
    if doc.get("version") != CACHE_VERSION:
        raise ValueError("cache version mismatch")
    return [
        Event(key, anchor, tuple(Query(*q) for q in qs), device, exp, day)
        for key, anchor, device, exp, day, qs in doc["events"]
    ]


def _read_cache(file: Path) -> list[Event]:
    # building ~230k small objects triggers the cyclic GC over and over (3x slower); none of
    # them form cycles, so pause it for the load
    paused = gc.isenabled()
    gc.disable()
    try:
        with file.open(encoding="utf-8") as fh:
            return _from_json(json.load(fh))
    finally:
        if paused:
            gc.enable()


def load_corpus(
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    *,
    refresh: bool = False,
) -> list[Event]:
    """The whole corpus of :func:`build_corpus` (default anchor), cached on disk.

    Parameters
    ----------
    path
        The tarball (or a folder holding it); by default found in the data folder.
    cache_dir
        Cache folder; default ``PHLOEM_CACHE_DIR``, else ``$XDG_CACHE_HOME/phloem``, else
        ``~/.cache/phloem``. The entry is keyed by the tarball's size and mtime (see
        :func:`corpus_cache_file`). A damaged or unwritable cache is rebuilt or skipped with
        a warning, never fatal.
    refresh
        Rebuild and overwrite the cache entry even if it exists.

    Raises
    ------
    DataNotFoundError
        The tarball is not found.
    """
    tarball = find_data_file(CAPTURES_FILE, explicit=path, what=_WHAT)
    file = corpus_cache_file(tarball, cache_dir)
    if not refresh and file.is_file():
        try:
            return _read_cache(file)
        except (OSError, ValueError, TypeError, KeyError):
            pass  # a damaged or stale entry is rebuilt below
    events = build_corpus(tarball)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_to_json(events), fh, separators=(",", ":"))
        os.replace(tmp, file)
    except OSError as exc:
        warnings.warn(
            f"could not write the corpus cache {file} ({exc}); continuing without it", stacklevel=2
        )
    return events
