"""What every learned inverter shares: the query set, the training budget and the loss.

A learned inversion attack trains a decoder ``g`` on pairs ``(f_edge(x), x)`` from the
attacker's query set (:func:`~phloem.attacks.methods.base.fit_queries`) and answers
``g(ir)``. The architectures differ (one module each); the training here does not, so that a
comparison between them is about the architecture: same queries, same epochs, batch size,
learning rate, optimiser (Adam), learning-rate schedule and loss.

The losses: pixel ``mse`` and ``l1``; ``ssim``, ``1 - SSIM`` with the Gaussian 11x11 window
the evaluation reports (what the attacker is judged by, so a natural target); and ``ssim+l1``,
``0.84 (1 - SSIM) + 0.16 L1``, the mix Zhao, Gallo, Frosio & Kautz (*Loss functions for image
restoration with neural networks*, IEEE TCI 2017) found best for restoration networks (theirs
uses multi-scale SSIM; a 32x32 image is too small for its five scales, so this is single-scale).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from phloem.attacks import metrics
from phloem.attacks.methods.base import Attack, fit_queries
from phloem.attacks.threat import Access, EdgeOracle
from phloem.core import checks as _checks
from phloem.core.errors import ConfigError
from phloem.nets.training import Schedule, lr_factor

__all__ = [
    "LearnedInversion",
    "LearnedParams",
    "Loss",
    "Schedule",
    "reconstruction_loss",
    "spatial",
    "upsample_stages",
]


class Loss(StrEnum):
    """The reconstruction loss of a learned inverter."""

    MSE = "mse"
    L1 = "l1"
    SSIM = "ssim"
    SSIM_L1 = "ssim+l1"


#: Zhao et al.'s weight of the SSIM term in their mixed loss
_MIX_ALPHA = 0.84


def reconstruction_loss(loss: Loss, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The scalar training loss between a batch of reconstructions and their originals."""
    if loss is Loss.MSE:
        return F.mse_loss(recon, target)
    l1 = F.l1_loss(recon, target)
    if loss is Loss.L1:
        return l1
    dissim = 1.0 - metrics.ssim(recon, target, dtype=recon.dtype).mean()
    if loss is Loss.SSIM:
        return dissim
    return _MIX_ALPHA * dissim + (1.0 - _MIX_ALPHA) * l1


@dataclass(frozen=True)
class LearnedParams:
    """The training budget every learned inverter gets (its own architecture knobs extend it).

    ``epochs`` over the query set, in batches of ``batch_size``, Adam at ``lr`` (following
    ``schedule``) with ``weight_decay``, minimising ``loss`` between ``g(f_edge(x))`` and ``x``.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: Loss = Loss.MSE
    schedule: Schedule = Schedule.CONSTANT

    def __post_init__(self) -> None:
        _checks.integer("epochs", self.epochs, low=1)
        _checks.integer("batch_size", self.batch_size, low=1)
        _checks.real("lr", self.lr, low=0.0, low_open=True)
        _checks.real("weight_decay", self.weight_decay, low=0.0)
        try:
            object.__setattr__(self, "loss", Loss(self.loss))
        except ValueError:
            raise ConfigError("loss", f"unknown {self.loss!r}", [m.value for m in Loss]) from None
        try:
            object.__setattr__(self, "schedule", Schedule(self.schedule))
        except ValueError:
            raise ConfigError(
                "schedule", f"unknown {self.schedule!r}", [m.value for m in Schedule]
            ) from None


def upsample_stages(ir_size: int, out_size: int) -> int:
    """How many x2 upsamplings take a side of ``ir_size`` to at least ``out_size``."""
    return max(0, math.ceil(math.log2(out_size / ir_size))) if ir_size < out_size else 0


def spatial(
    ir_shape: tuple[int, ...], channels: int, input_shape: tuple[int, int, int]
) -> tuple[nn.Module, tuple[int, int, int]]:
    """A layer that turns an IR into a feature map, and that map's ``(C, H, W)``.

    A map IR ``(C, H, W)`` passes unchanged. A flat IR (after a fully connected layer) goes
    through a linear layer to ``channels`` maps of an eighth of the input's side (at least 1),
    which the decoder then upsamples.
    """
    if len(ir_shape) == 3:
        c, h, w = ir_shape
        return nn.Identity(), (c, h, w)
    features = math.prod(ir_shape)
    h, w = max(1, input_shape[1] // 8), max(1, input_shape[2] // 8)
    layer = nn.Sequential(
        nn.Flatten(), nn.Linear(features, channels * h * w), nn.Unflatten(1, (channels, h, w))
    )
    return layer, (channels, h, w)


class LearnedInversion(Attack):
    """Base of the decoders trained on the query set; subclasses give :meth:`decoder`."""

    Params: ClassVar[type[LearnedParams]] = LearnedParams
    access: ClassVar[frozenset[Access]] = frozenset({Access.WHITE_BOX, Access.BLACK_BOX})

    @abstractmethod
    def decoder(self, ir_shape: tuple[int, ...], input_shape: tuple[int, int, int]) -> nn.Module:
        """The untrained decoder from an IR of ``ir_shape`` to an image of ``input_shape``
        (logits: a sigmoid follows)."""

    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        p = self.params
        images, irs = fit_queries(oracle, aux)
        with torch.random.fork_rng(devices=[]):  # initialise from gen, global state untouched
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            self._net = self.decoder(tuple(irs.shape[1:]), oracle.input_shape)
        opt = torch.optim.Adam(self._net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        per_epoch = math.ceil(images.shape[0] / p.batch_size)
        self._net.train()
        for epoch in range(p.epochs):
            order = torch.randperm(images.shape[0], generator=gen)
            total = torch.zeros(())
            for k, i in enumerate(range(0, images.shape[0], p.batch_size)):
                idx = order[i : i + p.batch_size]
                for group in opt.param_groups:  # the victims' schedules, per step
                    group["lr"] = p.lr * lr_factor(
                        p.schedule, epoch * per_epoch + k, p.epochs * per_epoch
                    )
                opt.zero_grad()
                recon = torch.sigmoid(self._net(irs[idx]))
                loss = reconstruction_loss(p.loss, recon, images[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += loss.detach() * len(idx)  # no sync with the hot loop: read per epoch
            if self.on_progress is not None:
                mean = float(total) / images.shape[0]
                self.on_progress(f"epoch {epoch + 1}/{p.epochs}: {p.loss.value} loss {mean:.4f}")
        self._net.eval()

    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        step = 256
        with torch.no_grad():
            out = [torch.sigmoid(self._net(irs[i : i + step])) for i in range(0, len(irs), step)]
        return torch.cat(out)
