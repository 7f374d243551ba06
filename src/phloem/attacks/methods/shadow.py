"""Query-free inversion through a shadow edge part (He, Zhang & Lee, ACSAC 2019, section 6).

He et al., *Model inversion attacks against collaborative inference*: the adversary is the
untrusted cloud party. It holds the cloud part ``f_cloud``, knows the edge part's architecture
but not its weights, cannot query the edge part, and has labelled images from the victim's task.
It trains a shadow edge part ``f'`` so that ``f_cloud(f'(x))`` classifies its own images
(``f_cloud`` frozen): the frozen cloud part pulls ``f'`` towards IRs it can read, which are the
real edge part's. It then inverts the private IRs through ``f'`` as in white-box rMLE
(:func:`~phloem.attacks.methods.optimise.invert`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.methods.base import Attack
from phloem.attacks.methods.optimise import invert
from phloem.attacks.registries import ATTACKS
from phloem.attacks.threat import Access, EdgeOracle
from phloem.core import checks as _checks
from phloem.core.errors import ConfigError

__all__ = ["ShadowModel", "ShadowParams"]

#: the labelled image sets (their labels are the victims' classes)
LABELLED_SETS = ("cifar10", "mnist")


@dataclass(frozen=True)
class ShadowParams:
    """Training the shadow: ``epochs`` over the attacker's labelled images in batches of
    ``batch_size``, Adam at ``lr``, cross-entropy through the frozen cloud part. Inverting
    through it: ``steps`` of Adam at ``invert_lr`` with TV weight ``tv_weight``, ``batch`` IRs
    at a time (rMLE's knobs)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    steps: int = 400
    invert_lr: float = 0.05
    tv_weight: float = 0.01
    batch: int = 128

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "steps", "batch"):
            _checks.integer(name, getattr(self, name), low=1)
        for name in ("lr", "invert_lr"):
            _checks.real(name, getattr(self, name), low=0.0, low_open=True)
        _checks.real("tv_weight", self.tv_weight, low=0.0)


@ATTACKS.register
class ShadowModel(Attack):
    """He et al.'s query-free attack: a shadow edge trained through the cloud part, then rMLE."""

    name: ClassVar[str] = "shadow-model"
    description: ClassVar[str] = (
        "query-free, holds the cloud part: train a shadow edge through it, invert (He et al.)"
    )
    Params: ClassVar[type[ShadowParams]] = ShadowParams
    access: ClassVar[frozenset[Access]] = frozenset({Access.QUERY_FREE, Access.BLACK_BOX})

    #: the shadow's accuracy (through the cloud part) on the attacker's images after training
    train_accuracy: float = float("nan")

    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        p: ShadowParams = self.params
        cloud = oracle.cloud().eval().requires_grad_(False)
        shadow = oracle.shadow(gen)
        if labels is None:
            raise ConfigError(
                "aux.name",
                "the shadow-model attack trains through the cloud part on labelled images of "
                "the victim's task; the attacker's images have no labels",
                list(LABELLED_SETS),
            )
        self._shape = oracle.input_shape
        self._gen = gen
        with torch.no_grad():
            classes = int(cloud(shadow(aux[:1])).shape[1])
        if labels.shape[0] != aux.shape[0] or int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise ConfigError(
                "aux.name",
                f"labels must be one class in 0..{classes - 1} per image (the cloud part's "
                f"outputs); got {labels.shape[0]} labels in "
                f"{int(labels.min())}..{int(labels.max())} for {aux.shape[0]} images",
            )
        opt = torch.optim.Adam(shadow.parameters(), lr=p.lr)
        shadow.train()
        for _ in range(p.epochs):
            order = torch.randperm(aux.shape[0], generator=gen)
            for i in range(0, aux.shape[0], p.batch_size):
                idx = order[i : i + p.batch_size]
                opt.zero_grad()
                logits = cloud(shadow(aux[idx]))
                torch.nn.functional.cross_entropy(logits, labels[idx]).backward()  # type: ignore[no-untyped-call]
                opt.step()
        shadow.eval().requires_grad_(False)
        with torch.no_grad():
            hits = sum(
                int((cloud(shadow(aux[i : i + 256])).argmax(1) == labels[i : i + 256]).sum())
                for i in range(0, aux.shape[0], 256)
            )
        self.train_accuracy = hits / aux.shape[0]
        self._shadow = shadow

    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        p: ShadowParams = self.params
        return torch.cat(
            [
                invert(
                    self._shadow,
                    irs[i : i + p.batch],
                    self._shape,
                    self._gen,
                    steps=p.steps,
                    lr=p.invert_lr,
                    tv_weight=p.tv_weight,
                )
                for i in range(0, irs.shape[0], p.batch)
            ]
        )
