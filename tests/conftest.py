"""Shared test fixtures: small federated problems, gating on the shared data folder, and a
private cache folder (decode caches and cached optima never go to the user's ~/.cache)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from phloem.data.paths import data_dir, require_data
from phloem.data.synthetic import make_quadratic
from phloem.fl.problem import QuadraticProblem

# ``HYPOTHESIS_PROFILE=ci`` (set by .ci/run): the same examples every run
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def need_data_file(relative: str) -> Path:
    """The path of ``relative`` in the data folder; skip (or fail when data are required)."""
    root = data_dir()
    if root is None:
        reason = "PHLOEM_DATA_DIR is not set"
    elif not (root / relative).is_file():
        reason = f"{root / relative} is missing"
    else:
        return root / relative
    if require_data():
        pytest.fail(f"{reason}, but PHLOEM_REQUIRE_DATA is set")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_file() -> Callable[[str], Path]:
    """``data_file("mnist/...")`` -> path, skipping when the shared data are absent."""
    return need_data_file


def quadratic(num_clients: int = 10, dim: int = 20, seed: int = 0) -> QuadraticProblem:
    """A heterogeneous strongly convex federated quadratic (L = 1, mu = 0.2)."""
    q = make_quadratic(num_clients, dim, 1.0, 0.2, np.random.default_rng(seed), 1.0)
    return QuadraticProblem(q.A, q.b, q.weights)


@pytest.fixture(scope="session")
def quad() -> QuadraticProblem:
    return quadratic()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches go to a temporary folder, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHLOEM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "phloem-cache"))
        yield
