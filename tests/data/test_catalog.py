"""Integrity checks of a data folder against its manifest (and the CLI that shows them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.data.catalog import sha256_of, verify_folder


def folder(tmp_path: Path) -> Path:
    (tmp_path / "libsvm").mkdir()
    good = tmp_path / "libsvm" / "a9a.gz"
    good.write_bytes(b"hello")
    (tmp_path / "libsvm" / "a9a.t.gz").write_bytes(b"tampered")
    entries = [
        {"file": "libsvm/a9a.gz", "bytes": 5, "sha256": hashlib.sha256(b"hello").hexdigest()},
        {"file": "libsvm/a9a.t.gz", "bytes": 8, "sha256": hashlib.sha256(b"original").hexdigest()},
        {"file": "mnist/absent.gz", "bytes": 1, "sha256": "00"},
        {"file": "libsvm/a9a.gz", "bytes": 6},
    ]
    (tmp_path / "MANIFEST.json").write_text(json.dumps(entries))
    return tmp_path


def test_verify_reports_each_kind_of_problem(tmp_path: Path) -> None:
    checks = verify_folder(folder(tmp_path))
    assert [c.status for c in checks] == ["ok", "checksum mismatch", "missing", "size mismatch"]
    assert sha256_of(tmp_path / "libsvm" / "a9a.gz") == hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(FileNotFoundError, match="no manifest"):
        verify_folder(tmp_path / "libsvm")


def test_data_list_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    root = folder(tmp_path)
    res = runner.invoke(app, ["data", "list", "--folder", str(root)])
    assert res.exit_code == 0
    assert "libsvm a9a" in res.output and "found" in res.output and "missing" in res.output
    res = runner.invoke(app, ["data", "list", "--folder", str(root), "--verify"])
    assert res.exit_code == 1
    assert "checksum mismatch" in res.output and "1 ok, 3 not" in res.output


def test_shared_data_folder_is_intact(data_file) -> None:  # type: ignore[no-untyped-def]
    root = data_file("MANIFEST.json").parent
    small = [c for c in verify_folder(root) if c.file.startswith(("libsvm/", "femnist/", "mnist/"))]
    assert small and all(c.status == "ok" for c in small), [c for c in small if c.status != "ok"]
