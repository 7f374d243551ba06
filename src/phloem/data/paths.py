"""Where data lives: ``PHLOEM_DATA_DIR`` or an explicit path. Nothing here downloads."""

from __future__ import annotations

import os
from pathlib import Path

from phloem.core.errors import DataNotFoundError

__all__ = ["data_dir", "find_data_file", "require_data"]

ENV_DIR = "PHLOEM_DATA_DIR"
ENV_REQUIRE = "PHLOEM_REQUIRE_DATA"


def data_dir() -> Path | None:
    """The data folder named by ``PHLOEM_DATA_DIR``, or ``None`` when unset."""
    value = os.environ.get(ENV_DIR)
    return Path(value).expanduser() if value else None


def require_data() -> bool:
    """Whether tests that need data must fail instead of skipping (``PHLOEM_REQUIRE_DATA=1``)."""
    return os.environ.get(ENV_REQUIRE, "0") not in ("", "0", "false", "False")


def find_data_file(relative: str, *, explicit: str | Path | None = None, what: str = "") -> Path:
    """Locate a data file.

    Parameters
    ----------
    relative
        Path of the file inside the data folder, e.g. ``"libsvm/a9a.gz"``.
    explicit
        A path given by the user; when set, it is the only place looked at (a file, or a folder
        that holds ``relative``).
    what
        Human name of the data set for the error message.

    Raises
    ------
    DataNotFoundError
        Naming every place looked in and how to provide the file.
    """
    candidates: list[Path] = []
    if explicit is not None:
        p = Path(explicit).expanduser()
        candidates = [p] if not p.is_dir() else [p / relative, p / Path(relative).name]
    else:
        root = data_dir()
        if root is not None:
            candidates = [root / relative]
    for c in candidates:
        if c.is_file():
            return c
    fix = (
        f"Put the file at <data folder>/{relative} and set {ENV_DIR}=<data folder> "
        f"(e.g. {ENV_DIR}=../shared/data), or pass its path explicitly."
    )
    raise DataNotFoundError(what or relative, candidates, fix)
