"""Many captures and logs in one process (``phloem iot identify PATH...``).

:func:`expand_inputs` turns files, folders (searched recursively) and glob patterns into a
sorted list of files; :func:`identify_paths` reads each with its sniffed source, answers every
client at each requested window (device -> manufacturer -> category), and yields one
:class:`FileResult` per file. A file that is not an input (empty, compressed, not a capture or
log, a database that is not FTL's) becomes a result with its one-line error, and the batch goes
on; :func:`write_summary` writes one row per client as CSV or markdown.
"""

from __future__ import annotations

import csv
import glob
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from phloem.core.errors import ConfigError, PhloemError
from phloem.iot.events import ANCHOR_MODES, AnchorMode, Event, events_from_observations
from phloem.iot.identify import Answer, Identifier, level_dict, level_text
from phloem.iot.sources import AUTO, SourceStats, feature_gap, open_observations

__all__ = [
    "BatchParams",
    "FileEvents",
    "FileResult",
    "expand_inputs",
    "identify_paths",
    "read_events",
    "write_summary",
]

_GLOB = set("*?[")


@dataclass(frozen=True)
class BatchParams:
    """``windows_s``: seconds after each client's anchor to answer at (ascending, >= 0);
    ``top``: devices listed; ``anchor``: what starts a client's clock; ``kind``: the source
    (``auto``: sniffed per file); ``year``: of dnsmasq lines."""

    windows_s: tuple[float, ...] = (0.0, 2.0, 60.0)
    top: int = 3
    anchor: str = "dhcp-or-first-query"
    kind: str = AUTO
    year: int | None = None

    def __post_init__(self) -> None:
        ws = tuple(float(w) for w in self.windows_s)
        if not ws or any(not (math.isfinite(w) and w >= 0) for w in ws):
            raise ConfigError("windows_s", f"must be non-negative seconds, got {list(ws)}")
        object.__setattr__(self, "windows_s", tuple(sorted(set(ws))))
        if self.top < 1:
            raise ConfigError("top", f"must be at least 1, got {self.top}")
        if self.anchor not in ANCHOR_MODES:
            raise ConfigError("anchor", f"unknown {self.anchor!r}", ANCHOR_MODES)


@dataclass
class FileResult:
    """One file's clients, or why it was skipped.

    Attributes
    ----------
    path
        The file.
    clients
        One JSON-able dict per client: ``key``, ``first_seen`` and ``windows``, a list with,
        at each window, ``s``, ``device``, ``confidence``, ``manufacturer``, ``category``
        (label, probability and what named it), ``unknown`` with ``why_unknown``, and
        ``n_queries``; the last window's ``drivers`` and manufacturer ``evidence``.
    summary
        The source's one line on what it read and skipped.
    error
        Why the file was skipped (``None``: it was read).
    warning
        The model uses feature blocks this file's source lacks (a capture model on a log).
    """

    path: Path
    clients: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    error: str | None = None
    warning: str | None = None


def expand_inputs(items: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The files named by ``items`` (files; folders, searched recursively, hidden entries
    skipped; glob patterns, ``**`` included), sorted and each once; and a line for each item
    that named nothing."""
    found: dict[Path, None] = {}
    missing: list[str] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_file():
            found[path] = None
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
            if not files:
                missing.append(f"{text}: a folder with no files")
            found.update(dict.fromkeys(files))
        elif _GLOB & set(text):
            hits = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not hits:
                missing.append(f"{text}: no file matches")
            found.update(dict.fromkeys(hits))
        else:
            missing.append(f"{text}: no such file or folder")
    return list(found), missing


def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def _at(a: Answer) -> dict[str, Any]:
    return {
        "s": a.elapsed_s,
        "device": a.device,
        "confidence": round(a.confidence, 4),
        "manufacturer": level_dict(a.manufacturer),
        "category": level_dict(a.category),
        "unknown": a.unknown,
        "why_unknown": list(a.why_unknown),
        "n_queries": a.n_queries,
    }


@dataclass
class FileEvents:
    """One file's events (one per client) and its source's counters, or why it was skipped."""

    path: Path
    events: list[Event] = field(default_factory=list)
    stats: SourceStats | None = None
    error: str | None = None


def read_events(
    paths: Sequence[Path],
    *,
    kind: str = AUTO,
    year: int | None = None,
    anchor: str = "dhcp-or-first-query",
) -> Iterator[FileEvents]:
    """Each file's events, in order; a file that is not an input (empty, compressed, not a
    capture or log, a database that is not FTL's) yields its one-line error instead."""
    for path in paths:
        try:
            obs, stats = open_observations(path, kind=kind, year=year)
            events = events_from_observations(
                obs, anchor=cast(AnchorMode, anchor), stats=stats.events
            )
        except ConfigError as e:
            yield FileEvents(path, error=e.problem)  # the path is the result's own
        except PhloemError as e:
            yield FileEvents(path, error=str(e))
        else:
            yield FileEvents(path, events, stats)


def identify_paths(
    identifier: Identifier,
    paths: Sequence[Path],
    params: BatchParams | None = None,
    *,
    on_file: Callable[[FileResult], None] | None = None,
) -> Iterator[FileResult]:
    """Each of ``paths`` identified, one :class:`FileResult` per file, in order (``on_file``
    sees each as it is done)."""
    p = params if params is not None else BatchParams()
    last = p.windows_s[-1]
    for read in read_events(paths, kind=p.kind, year=p.year, anchor=p.anchor):
        result = FileResult(read.path, error=read.error)
        if read.stats is not None:
            events, stats = read.events, read.stats
            per_window = [
                identifier.answer_many(events, w, top=p.top, explain=w == last) for w in p.windows_s
            ]
            for k, e in enumerate(events):
                answers = [col[k] for col in per_window]
                result.clients.append({
                    "file": str(read.path),
                    "key": e.key,
                    "first_seen": datetime.fromtimestamp(e.anchor_utc, tz=UTC).isoformat(
                        timespec="seconds"
                    ),
                    "windows": [_at(a) for a in answers],
                    "top": [level_dict(v) for v in answers[-1].top],
                    "drivers": [[w, round(d, 4)] for w, d in answers[-1].drivers],
                    "evidence": list(answers[-1].evidence),
                })  # fmt: skip
            result.summary = stats.summary()
            result.warning = feature_gap(identifier.model.vectorizer.spec.blocks, stats.kind)
        if on_file is not None:
            on_file(result)
        yield result


def _cell(w: dict[str, Any]) -> str:
    dev = w["device"] or ("unknown" if w["unknown"] else "-")
    parts = [f"{dev} {w['confidence']:.2f}"]
    for level in ("manufacturer", "category"):
        if w[level] is not None:
            parts.append(level_text(w[level]))
    return " > ".join(parts)


def summary_rows(results: Sequence[FileResult], windows_s: Sequence[float]) -> list[list[str]]:
    """One row per client (file, client, first seen, the answer at each window), and one per
    skipped file (its error)."""
    rows = []
    for r in results:
        if r.error is not None:
            rest = ["-"] * (len(windows_s) - 1)
            rows.append([str(r.path), "-", "-", "skipped: " + r.error, *rest])
        for c in r.clients:
            rows.append([str(r.path), c["key"], c["first_seen"], *(_cell(w) for w in c["windows"])])
    return rows


def write_summary(results: Sequence[FileResult], windows_s: Sequence[float], path: Path) -> Path:
    """The summary as CSV (``.csv``) or a markdown table (``.md``)."""
    header = ["file", "client", "first seen", *(f"at {w:g} s" for w in windows_s)]
    rows = summary_rows(results, windows_s)
    if path.suffix == ".md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
    else:
        raise ConfigError("summary", f"{path}: write a .csv or a .md file")
    return path
