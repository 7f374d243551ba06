"""Fixtures for the data tests: keep decode caches out of $HOME (data gating: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Decode caches go to a temporary folder, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHLOEM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "phloem-cache"))
        yield
