"""The threat model table of ``docs/secagg.md`` names a test per row: each must exist.

A row whose test is renamed or deleted would leave a guarantee that nothing checks; this test
fails first.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "secagg.md"


def _table() -> list[str]:
    text = DOC.read_text()
    section = text.split("## Threat model", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def _cited(cell: str) -> list[tuple[str, str]]:
    """``(file, test)`` pairs of a cell; ``::name`` continues the previous file."""
    out: list[tuple[str, str]] = []
    current = ""
    for file, name in re.findall(r"`(?:([\w/]+\.py))?::(\w+)`", cell):
        current = file or current
        out.append((current, name))
    return out


def _tests_in(file: str) -> set[str]:
    tree = ast.parse((ROOT / "tests" / "secagg" / file).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_row_names_tests_that_exist() -> None:
    rows = _table()[1:]  # without the header
    assert len(rows) >= 12
    untested = 0
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        cited = _cited(cells[-1])
        if not cited:
            assert cells[-1] == "–", row  # a limitation, explicitly without a test
            untested += 1
            continue
        for file, name in cited:
            assert name in _tests_in(file), f"{file}::{name} (cited in docs/secagg.md)"
    assert untested <= 1
