"""A source registered from outside phloem is sniffed, opened and summarised like a built-in
(the worked example of docs/iot.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from phloem.core.errors import ConfigError
from phloem.iot.events import Observation
from phloem.iot.sources import (
    SOURCES,
    Reading,
    Sniff,
    Source,
    SourceStats,
    file_sources,
    open_observations,
    sniff_format,
)

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class JsonLinesParams:
    key_field: str = "client"

    def __post_init__(self) -> None:
        if not self.key_field:
            raise ConfigError("key_field", "name the field that holds the client")


class JsonLines(Source):
    """One JSON object per line: {"ts": ..., "client": ..., "name": ...}."""

    name: ClassVar[str] = "jsonl"
    description: ClassVar[str] = "JSON lines of {ts, client, name}"
    Params: ClassVar[type[JsonLinesParams]] = JsonLinesParams
    params: JsonLinesParams

    @classmethod
    def sniff(cls, head: bytes) -> Sniff:
        return Sniff.YES if head.startswith(b'{"ts"') else Sniff.NO

    def open(
        self, target: str | os.PathLike[str], reading: Reading, stats: SourceStats
    ) -> Iterator[Observation]:
        if reading.follow:
            raise ConfigError("follow", "JSON lines are read once")
        return self._read(Path(target), stats)

    def _read(self, path: Path, stats: SourceStats) -> Iterator[Observation]:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                stats.log.lines += 1
                row = json.loads(line)
                stats.log.queries += 1
                yield Observation(row["ts"], row[self.params.key_field], "query", row["name"], 1)


@pytest.fixture
def jsonl() -> Iterator[type[JsonLines]]:
    SOURCES.register(JsonLines)  # what @SOURCES.register does at import
    yield JsonLines
    SOURCES.unregister(JsonLines.name)


@pytest.fixture
def lines(tmp_path: Path) -> Path:
    rows = [{"ts": T0 + i, "client": f"10.0.0.{i % 2}", "name": f"n{i}.example"} for i in range(3)]
    path = tmp_path / "queries.txt"  # no telling suffix
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_registered_source_is_sniffed_and_read(jsonl: Any, lines: Path) -> None:
    assert jsonl in file_sources()
    assert sniff_format(lines) == "jsonl"
    obs, stats = open_observations(lines)
    assert [(o.ts, o.key, o.name) for o in obs] == [
        (T0 + i, f"10.0.0.{i % 2}", f"n{i}.example") for i in range(3)
    ]
    assert stats.kind == "jsonl"
    assert stats.summary() == "log lines 3, queries 3, malformed 0 (skipped)"
    # named explicitly it reads the same; following it is refused by the source itself
    assert len(list(open_observations(lines, kind="jsonl")[0])) == 3
    with pytest.raises(ConfigError) as info:
        open_observations(lines, kind="jsonl", follow=True)
    assert info.value.field == "follow"


def test_without_it_the_file_is_taken_for_a_dnsmasq_log(lines: Path) -> None:
    assert "jsonl" not in SOURCES
    assert sniff_format(lines) == "dnsmasq"
    with pytest.raises(ConfigError) as info:
        open_observations(lines, kind="jsonl")
    assert info.value.field == "kind" and "jsonl" not in (info.value.allowed or ())


def test_a_registered_source_claims_only_its_own_files(jsonl: Any, tmp_path: Path) -> None:
    unbound = tmp_path / "unbound.log"
    unbound.write_text("[1700000000] unbound[1:0] info: 10.0.0.1 a.io. A IN\n")
    dnsmasq = tmp_path / "pihole.log"
    dnsmasq.write_text("Jan  1 00:00:00 dnsmasq[1]: query[A] a.io from 10.0.0.9\n")
    assert (sniff_format(unbound), sniff_format(dnsmasq)) == ("unbound", "dnsmasq")


def test_an_interface_source_is_not_a_file_kind(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("Jan  1 00:00:00 dnsmasq[1]: query[A] a.io from 10.0.0.9\n")
    with pytest.raises(ConfigError) as info:
        open_observations(log, kind="interface")
    assert info.value.field == "kind" and "does not read the file" in str(info.value)
    assert "interface" not in (info.value.allowed or ())
    with pytest.raises(ConfigError) as info:
        open_observations(None, interface="lo", kind="pcap")
    assert info.value.field == "kind" and info.value.allowed == ("auto", "interface")
