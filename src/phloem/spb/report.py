"""Runs side by side (``phloem spb compare``), and a model's profile from its name
(``phloem spb profile``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phloem.core.errors import RunNotFoundError
from phloem.core.rundir import RunDir

if TYPE_CHECKING:
    from phloem.spb.accounting import Profile

__all__ = ["RunRow", "compare", "profile_named"]


@dataclass(frozen=True)
class RunRow:
    """One run's outcome and costs (totals over its epochs)."""

    name: str
    status: str
    plan: str
    sync: str
    workers: int
    mode: str
    epochs: int
    test_acc: float
    backward_flops: float
    backward_flops_max_rank: float
    saved_bytes_max_rank: float
    bytes_sent_mean_rank: float
    wall_s: float
    cpu_s: float
    #: epoch, wall seconds and backward FLOPs at which ``run.target_accuracy`` was reached
    #: (``None``: no target, or not reached)
    to_target: dict[str, Any] | None


def _f(row: dict[str, Any], key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, int | float) else float("nan")


def compare(runs: Sequence[Path]) -> list[RunRow]:
    """A row per run folder of ``phloem spb train``.

    Raises
    ------
    RunNotFoundError
        For a folder that is not a finished or stopped SPB run (no ``summary.json`` with a
        plan).
    """
    out = []
    for path in runs:
        rd = RunDir.open(path)
        s = rd.summary()
        if "plan" not in s:
            raise RunNotFoundError(f"{path} is not a run folder of `phloem spb train`")
        final = s.get("final") or {}
        target = s.get("time_to_target")
        out.append(
            RunRow(
                name=rd.name,
                status=str(s.get("status")),
                plan=str(s["plan"]),
                sync=str(s.get("sync")),
                workers=int(s.get("workers", 0)),
                mode=str(s.get("mode")),
                epochs=int(final.get("epoch", -1)) + 1,
                test_acc=_f(final, "test_acc"),
                backward_flops=_f(final, "backward_flops"),
                backward_flops_max_rank=_f(final, "backward_flops_max_rank"),
                saved_bytes_max_rank=_f(final, "saved_bytes_max_rank"),
                bytes_sent_mean_rank=_f(final, "bytes_sent_mean_rank"),
                wall_s=_f(final, "wall_s"),
                cpu_s=_f(final, "cpu_s"),
                to_target=target if isinstance(target, dict) and "epoch" in target else None,
            )
        )
    return out


def profile_named(
    model: str,
    overrides: Sequence[str] = (),
    *,
    batch_size: int = 32,
    repeats: int = 5,
    seed: int = 0,
) -> Profile:
    """The :class:`~phloem.spb.accounting.Profile` of registered ``model`` (``overrides``:
    ``model.<key>=value``) on a random batch of ``batch_size`` inputs of its shape.

    Raises
    ------
    ConfigError
        For an unknown model, key or value, or a batch size or repeat count below 1.
    """
    import torch
    import torch.nn.functional as F

    from phloem.core import checks
    from phloem.core.config import apply_overrides, from_dict
    from phloem.nets.training import init_weights
    from phloem.spb.accounting import profile_model
    from phloem.spb.config import ModelOnly
    from phloem.spb.registries import MODELS

    checks.integer("--batch-size", batch_size, low=1)
    checks.integer("--repeats", repeats, low=1, high=1000)
    data = apply_overrides({"model": {"name": model}}, list(overrides), ModelOnly)
    cfg = from_dict(ModelOnly, data)
    part = MODELS.get(cfg.model.name)(cfg.model.params)
    blocks = part.blocks()
    gen = torch.Generator().manual_seed(seed)
    init_weights(torch.nn.ModuleList(blocks.modules), gen)
    _fits_in_memory(list(blocks.modules), part.input_shape, batch_size)
    x = torch.rand(batch_size, *part.input_shape, generator=gen)
    y = torch.randint(0, part.num_classes, (batch_size,), generator=gen)
    modules = list(blocks.modules)
    return profile_model(model, blocks.names, modules, x, y, F.cross_entropy, repeats=repeats)


def _fits_in_memory(blocks: list[Any], shape: tuple[int, int, int], batch_size: int) -> None:
    """Refuse a batch whose step would not fit in the memory available now (estimated from a
    one-image step: inputs plus saved activations, twice over for the gradients), so that a
    typo is one line naming ``--batch-size``, not the allocator's traceback."""
    import os

    import torch
    import torch.nn.functional as F

    from phloem.spb.accounting import measure_step

    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no check
        return
    one = measure_step(
        blocks,
        torch.rand(1, *shape),
        torch.zeros(1, dtype=torch.int64),
        len(blocks),
        F.cross_entropy,
    )
    per_image = 2 * (one.saved_bytes + 4 * shape[0] * shape[1] * shape[2])
    if per_image * batch_size > available:
        from phloem.core.errors import ConfigError

        raise ConfigError(
            "--batch-size",
            f"{batch_size} images need about {per_image * batch_size / 2**30:.1f} GiB; "
            f"{available / 2**30:.1f} GiB of memory is available",
            [f"<= {available // per_image}"],
        )
