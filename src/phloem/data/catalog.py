"""What each built-in data set needs on disk, and integrity checks against a folder's manifest.

Nothing here downloads. ``phloem data list`` shows which data sets a data folder can serve;
``--verify`` checks every file against the folder's ``MANIFEST.json`` (``file``, ``bytes``,
``sha256`` entries, as in the project's shared data folder).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CATALOG", "DatasetFiles", "FileCheck", "sha256_of", "verify_folder"]


@dataclass(frozen=True)
class DatasetFiles:
    """A data set and the files (relative to the data folder) its loader reads."""

    name: str
    files: tuple[str, ...]
    note: str = ""


CATALOG: tuple[DatasetFiles, ...] = (
    DatasetFiles("digits", (), "bundled with scikit-learn; needs no data folder"),
    DatasetFiles("libsvm a9a", ("libsvm/a9a.gz", "libsvm/a9a.t.gz")),
    DatasetFiles("libsvm a8a", ("libsvm/a8a.gz",)),
    DatasetFiles("libsvm w8a", ("libsvm/w8a.gz",)),
    DatasetFiles(
        "mnist",
        tuple(
            f"mnist/{s}-ubyte.gz"
            for s in (
                "train-images-idx3",
                "train-labels-idx1",
                "t10k-images-idx3",
                "t10k-labels-idx1",
            )
        ),
    ),
    DatasetFiles("femnist", ("femnist/femnist_leaf_sample.npz",), "research and tests only"),
    DatasetFiles("cifar10", ("cifar10_jpeg/cifar10_jpeg.npz",), "or cifar-10-batches-py/"),
    DatasetFiles(
        "shakespeare", ("shakespeare/shaks12.txt.gz",), "Gutenberg #100; non-commercial, unshipped"
    ),
    DatasetFiles("quadratic", (), "generated"),
    DatasetFiles("synthetic", (), "generated (FedProx Synthetic(alpha, beta))"),
)


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one manifest entry."""

    file: str
    status: str  # ok | missing | size mismatch | checksum mismatch
    detail: str = ""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_folder(root: Path, manifest: Path | None = None) -> list[FileCheck]:
    """Check every file of ``root``'s manifest for presence, size and SHA-256.

    Raises
    ------
    FileNotFoundError
        When there is no manifest to check against.
    ValueError
        When the manifest is not a JSON list of ``{file, bytes, sha256}`` entries.
    """
    manifest = manifest or root / "MANIFEST.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest at {manifest}; nothing to verify against")
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{manifest} must hold a JSON list of entries")
    out = []
    for e in entries:
        if not isinstance(e, dict) or "file" not in e:
            raise ValueError(f"{manifest}: entry without 'file': {e!r}")
        rel = str(e["file"])
        path = root / rel
        if not path.is_file():
            out.append(FileCheck(rel, "missing"))
            continue
        size = path.stat().st_size
        if "bytes" in e and int(e["bytes"]) != size:
            out.append(FileCheck(rel, "size mismatch", f"{size} bytes, manifest says {e['bytes']}"))
            continue
        if "sha256" in e and sha256_of(path) != str(e["sha256"]).lower():
            out.append(FileCheck(rel, "checksum mismatch", "sha256 differs from the manifest"))
            continue
        out.append(FileCheck(rel, "ok"))
    return out
