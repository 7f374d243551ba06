"""History files survive crashes; run folders list and reopen."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from phloem.core.history import History, read_history
from phloem.core.rundir import RunDir, list_runs


def test_history_is_flushed_every_row_and_keeps_nan(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    h = History(p)
    h.append({"round": 0, "loss": 1.5})
    h.append({"round": 1, "loss": math.nan, "x": math.inf})
    # Readable before close: every row is on disk.
    back = read_history(p)
    assert back.rows[0] == {"round": 0, "loss": 1.5}
    assert math.isnan(back.rows[1]["loss"])  # type: ignore[arg-type]
    assert back.rows[1]["x"] == math.inf
    h.close()


def test_truncated_last_line_is_dropped(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text('{"round": 0}\n{"round": 1}\n{"rou')
    assert [r["round"] for r in read_history(p).rows] == [0, 1]


def test_pairs_and_columns() -> None:
    h = History(rows=[{"a": 1, "b": 2.0}, {"a": 2}, {"a": 3, "b": 4.0, "c": "s"}])
    assert h.pairs("a", "b") == ([1.0, 3.0], [2.0, 4.0])
    assert h.columns() == ["a", "b", "c"]
    assert h.column("b") == [2.0, 4.0]


def test_run_dirs_are_unique_and_listed(tmp_path: Path) -> None:
    a = RunDir.create(tmp_path, "exp one", now=0)
    b = RunDir.create(tmp_path, "exp one", now=0)
    assert a.path != b.path and a.name.startswith("exp_one-")
    a.write_config("x = 1\n")
    a.write_summary({"status": "finished", "final": {"test_acc": 0.9}})
    History(a.history_path).append({"round": 0})
    b.write_config("x = 2\n")
    infos = list_runs(tmp_path)
    assert [i.name for i in infos] == [a.name, b.name]
    assert infos[0].status == "finished" and infos[0].rounds == 1
    assert infos[1].status == "running or killed"
    with pytest.raises(FileNotFoundError, match="not a phloem run folder"):
        RunDir.open(tmp_path / "nope")
