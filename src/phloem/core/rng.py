"""Seeded random streams: one independent stream per (stage, round, client).

Every stochastic function in phloem takes a generator derived here from the run seed, so the
same seed gives a bit-identical history whatever the backend and whatever order clients run in.
Streams are addressed, not consumed: ``SeedStreams(seed).numpy(Stage.CLIENT, r, i)`` is the same
generator no matter how many other streams were drawn before, which is what makes the serial
and multi-process backends agree and what makes ``--resume`` exact.

The key ``(stage, *keys)`` is used as the ``spawn_key`` of a :class:`numpy.random.SeedSequence`,
i.e. the stream is exactly the child that ``SeedSequence(seed).spawn`` would produce along that
path.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["SeedStreams", "Stage"]


class Stage(IntEnum):
    """The independent consumers of randomness in a run."""

    SAMPLING = 0
    MODEL_INIT = 1
    CLIENT_INIT = 2
    CLIENT = 3
    COMPRESSION = 4
    SERVER = 5
    DATA = 6
    PARTITION = 7
    AGGREGATION = 8  # dropouts, neighbour graphs, quantisation of secure aggregation


class SeedStreams:
    """Addressable random streams derived from one run seed.

    Parameters
    ----------
    seed
        The run seed (any non-negative integer, up to 128 bits used).
    """

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = int(seed)

    def sequence(self, stage: Stage, *keys: int) -> np.random.SeedSequence:
        """The :class:`~numpy.random.SeedSequence` of stream ``(stage, *keys)``."""
        return np.random.SeedSequence(self.seed, spawn_key=(int(stage), *map(int, keys)))

    def int_seed(self, stage: Stage, *keys: int) -> int:
        """A 63-bit integer seed for stream ``(stage, *keys)`` (for ``torch.Generator``)."""
        state = self.sequence(stage, *keys).generate_state(1, np.uint64)
        return int(state[0]) & ((1 << 63) - 1)

    def numpy(self, stage: Stage, *keys: int) -> np.random.Generator:
        """A fresh PCG64 generator for stream ``(stage, *keys)``."""
        return np.random.Generator(np.random.PCG64(self.sequence(stage, *keys)))

    def torch(self, stage: Stage, *keys: int) -> torch.Generator:
        """A fresh CPU ``torch.Generator`` for stream ``(stage, *keys)``."""
        import torch

        return torch.Generator().manual_seed(self.int_seed(stage, *keys))

    def __repr__(self) -> str:
        return f"SeedStreams(seed={self.seed})"
