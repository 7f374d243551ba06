"""What structured partial backpropagation does to a job, from phloem.spb's measurements.

Two numbers per SPB job:

- ``shallow_compute``: a shallow worker's step time over a full worker's, read from an
  ``phloem spb profile`` table (``profile.json``: ``step_ms`` at each depth) at the shallow
  depth. The deep workers still run the whole backward pass, so the job's iteration is no
  shorter; the shallow workers' GPUs idle for the rest, and that slack is what Jigsaw lends.
- ``penalty``: the extra work SPB costs to reach the same accuracy (statistical efficiency),
  from phloem.spb's accuracy curves: with a full-backprop history and an SPB history of the
  same recipe, ``epochs_to(acc, spb) / epochs_to(acc, full) - 1`` at the highest accuracy
  both reach (:func:`penalty_from_histories`). No compute is free: an SPB job's rate and its
  useful GPU-seconds are divided by ``1 + penalty``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from phloem.core import checks
from phloem.core.errors import ConfigError

__all__ = [
    "PENALTY",
    "SHALLOW_COMPUTE",
    "SpbFactors",
    "epochs_to",
    "penalty_from_histories",
    "shallow_compute_from_profile",
]


#: ResNet-20 at half depth (6 of 11 blocks): 37.6 ms of a 68.9 ms step, measured by
#: ``phloem spb profile resnet20 --batch-size 32`` on this project's 2-core CPU machine
#: (benchmarks/jigsaw/spb_inputs/resnet20_profile.json)
SHALLOW_COMPUTE = 0.547
#: the static half-depth plan's extra epochs to the same accuracy on CIFAR-10 (ResNet-20,
#: 3 seeds: 0.30, 0.21, 0.33; benchmarks/spb/quality/results/cifar10_resnet20_w8.json)
PENALTY = 0.28


@dataclass(frozen=True)
class SpbFactors:
    """``shallow_compute`` in (0, 1], ``penalty`` >= 0, ``shallow_fraction`` of an SPB job's
    GPUs (rounded down, at least one GPU stays deep) that run shallow."""

    shallow_compute: float = SHALLOW_COMPUTE
    penalty: float = PENALTY
    shallow_fraction: float = 0.5

    def __post_init__(self) -> None:
        checks.real("spb.shallow_compute", self.shallow_compute, low=0.0, high=1.0, low_open=True)
        checks.real("spb.penalty", self.penalty, low=0.0, high=10.0)
        checks.real("spb.shallow_fraction", self.shallow_fraction, low=0.0, high=1.0)

    def shallow_count(self, num_gpus: int) -> int:
        """How many of a job's ``num_gpus`` GPUs run shallow."""
        return min(math.floor(self.shallow_fraction * num_gpus + 1e-9), num_gpus - 1)


def shallow_compute_from_profile(path: Path, depth_fraction: float = 0.5) -> float:
    """A shallow worker's step time over a full one's, at ``ceil(depth_fraction * L)`` of the
    ``L`` blocks, from a ``profile.json`` written by ``phloem spb profile``.

    Raises
    ------
    ConfigError
        Naming ``spb.profile``, when the file is missing or not a profile table.
    """
    checks.real("spb.depth_fraction", depth_fraction, low=0.0, high=1.0, low_open=True)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        step_ms = [float(x) for x in data["step_ms"]]
    except FileNotFoundError as e:
        raise ConfigError("spb.profile", f"{path} does not exist (write one with "
                          "`phloem spb profile MODEL --out DIR`)") from e  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("spb.profile", f"{path} is not a phloem spb profile.json ({e})") from e
    if not step_ms or not all(math.isfinite(x) and x > 0 for x in step_ms):
        raise ConfigError("spb.profile", f"{path}: step_ms must be positive numbers")
    blocks = len(step_ms)
    depth = max(1, min(blocks, math.ceil(depth_fraction * blocks - 1e-9)))
    return min(1.0, step_ms[depth - 1] / step_ms[-1])


def epochs_to(accuracy: float, curve: Sequence[float]) -> float:
    """Epochs (1 = after the first) until ``curve`` (accuracy after each epoch) first reaches
    ``accuracy``, interpolated linearly between epochs; ``inf`` if never."""
    prev = 0.0
    for k, a in enumerate(curve):
        if a >= accuracy:
            if k == 0 or a == prev:
                return float(k + 1)
            return k + (accuracy - prev) / (a - prev)
        prev = a
    return math.inf


def penalty_from_histories(full: Sequence[float], spb: Sequence[float]) -> float:
    """The extra epochs SPB needs: ``epochs_to(a, spb) / epochs_to(a, full) - 1`` at ``a``, the
    highest accuracy both curves reach (0 when SPB gets there no later).

    Raises
    ------
    ValueError
        For an empty curve.
    """
    if not full or not spb:
        raise ValueError("both accuracy curves need at least one epoch")
    target = min(max(full), max(spb))
    return max(0.0, epochs_to(target, spb) / epochs_to(target, full) - 1.0)
