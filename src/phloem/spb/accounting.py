"""What one worker's SPB step costs: FLOPs forward and backward, activation bytes saved, time.

:class:`StepMeter` wraps a step's forward and backward passes
(:func:`~phloem.spb.virtual.local_gradients` takes one) with

- ``torch.utils.flop_counter.FlopCounterMode`` around the forward and, separately, the
  backward (torch counts matrix products and convolutions: ``2 m n k`` for an ``m x k`` by
  ``k x n`` product; element-wise work is not counted);
- ``torch.autograd.graph.saved_tensors_hooks`` around the forward, adding up the bytes of
  every buffer autograd keeps for the backward pass, each buffer once (a tensor saved by two
  operations is held once), parameters excluded (weights are stored anyway; what SPB saves is
  activations).

Blocks before the cut run without autograd, so they save nothing and cost no backward FLOPs;
that is where a shallow worker's savings come from. :func:`measure_step` measures one step;
:func:`profile_model` measures every depth and every block (``phloem spb profile``), the table
the ``profile`` depth plan and the Jigsaw simulator read.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from phloem.spb.virtual import forward_from_cut, local_gradients

__all__ = ["BlockCost", "Profile", "StepCost", "StepMeter", "measure_step", "profile_model"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepCost:
    """One worker's step: FLOPs forward and backward, activation bytes saved for backward."""

    depth: int
    forward_flops: int
    backward_flops: int
    saved_bytes: int


class StepMeter:
    """Counts one step's forward and backward FLOPs and saved activation bytes."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        self._params = {p.untyped_storage().data_ptr() for b in blocks for p in b.parameters()}
        self._seen: set[int] = set()
        self.forward_flops = self.backward_flops = self.saved_bytes = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in self._params and ptr not in self._seen:  # each buffer once
            self._seen.add(ptr)
            self.saved_bytes += t.untyped_storage().nbytes()
        return t

    @contextmanager
    def forward(self) -> Iterator[None]:
        """Around the forward pass."""
        counter = FlopCounterMode(display=False)
        with counter, torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield
        self.forward_flops += counter.get_total_flops()

    @contextmanager
    def backward(self) -> Iterator[None]:
        """Around the backward pass."""
        counter = FlopCounterMode(display=False)
        with counter:
            yield
        self.backward_flops += counter.get_total_flops()

    def cost(self, depth: int) -> StepCost:
        return StepCost(depth, self.forward_flops, self.backward_flops, self.saved_bytes)


def measure_step(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    depth: int,
    loss_fn: LossFn,
    dropped: frozenset[int] = frozenset(),
) -> StepCost:
    """Run one worker's SPB step at ``depth`` and measure it (parameters' ``.grad`` untouched)."""
    meter = StepMeter(blocks)
    local_gradients(blocks, x, y, depth, loss_fn, dropped, meter=meter)
    return meter.cost(depth)


@dataclass(frozen=True)
class BlockCost:
    """One block's row of a profile.

    ``forward_flops`` and ``forward_ms`` are the block's own forward pass;
    ``backward_flops``, ``saved_bytes`` and ``backward_ms`` what backpropagating through it
    adds to a worker's step (the step at depth ``L - i`` minus the step at depth ``L - i - 1``),
    so they add up to a full worker's step. Times are medians, and a difference of two medians
    can be slightly negative for a cheap block.
    """

    name: str
    params: int
    param_bytes: int
    forward_flops: int
    backward_flops: int
    saved_bytes: int
    forward_ms: float
    backward_ms: float


@dataclass(frozen=True)
class Profile:
    """A model's measured costs at one batch size: per block, and per depth."""

    model: str
    batch_size: int
    threads: int
    blocks: tuple[BlockCost, ...]
    depths: tuple[StepCost, ...]
    #: median wall time of a whole step (forward and backward) at each depth, ms
    step_ms: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        return cls(
            model=str(data["model"]),
            batch_size=int(data["batch_size"]),
            threads=int(data["threads"]),
            blocks=tuple(BlockCost(**b) for b in data["blocks"]),
            depths=tuple(StepCost(**c) for c in data["depths"]),
            step_ms=tuple(float(t) for t in data["step_ms"]),
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile_model(
    model: str,
    names: Sequence[str],
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    *,
    repeats: int = 5,
) -> Profile:
    """Measure every depth's step and every block of ``blocks`` on the batch ``(x, y)``.

    The blocks run in training mode (batch norm updates its running statistics: profile a
    throwaway copy).
    """
    n = len(blocks)
    for b in blocks:
        b.train()
    depths = tuple(measure_step(blocks, x, y, d, loss_fn) for d in range(1, n + 1))
    step_ms = tuple(
        _median_ms(lambda d=d: local_gradients(blocks, x, y, d, loss_fn), repeats)  # type: ignore[misc]
        for d in range(1, n + 1)
    )

    def forward_only() -> None:
        with torch.no_grad():
            loss_fn(forward_from_cut(blocks, x, 0), y)

    no_grad_ms = _median_ms(forward_only, repeats)  # what a step at depth 0 would take
    rows = []
    h = x
    for i, (name, block) in enumerate(zip(names, blocks, strict=True)):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            out = block(h)
        fwd_ms = _median_ms(lambda b=block, h=h: b(h), repeats)  # type: ignore[misc]
        d = n - i  # backpropagating through block i is the step at depth n - i
        below = depths[d - 2] if d >= 2 else StepCost(0, 0, 0, 0)
        ms_below = step_ms[d - 2] if d >= 2 else no_grad_ms
        params = [p for p in block.parameters() if p.requires_grad]
        rows.append(
            BlockCost(
                name=name,
                params=sum(p.numel() for p in params),
                param_bytes=sum(p.numel() * p.element_size() for p in params),
                forward_flops=counter.get_total_flops(),
                backward_flops=depths[d - 1].backward_flops - below.backward_flops,
                saved_bytes=depths[d - 1].saved_bytes - below.saved_bytes,
                forward_ms=fwd_ms,
                backward_ms=step_ms[d - 1] - ms_below,
            )
        )
        h = out
    return Profile(model, len(y), torch.get_num_threads(), tuple(rows), depths, step_ms)


def write_profile(profile: Profile, folder: Path) -> tuple[Path, Path]:
    """``profile.json`` (what the ``profile`` plan and the Jigsaw simulator read) and
    ``profile.csv`` (one row per block, then one per depth) in ``folder``."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    js, cs = folder / "profile.json", folder / "profile.csv"
    profile.write(js)
    with cs.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        keys = list(BlockCost.__dataclass_fields__)
        w.writerow(["kind", *keys])
        for b in profile.blocks:
            w.writerow(["block", *(getattr(b, k) for k in keys)])
        w.writerow(["kind", "depth", "forward_flops", "backward_flops", "saved_bytes", "step_ms"])
        for c, ms in zip(profile.depths, profile.step_ms, strict=True):
            w.writerow(["depth", c.depth, c.forward_flops, c.backward_flops, c.saved_bytes, ms])
    return js, cs
