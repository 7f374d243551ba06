"""The victim contract: a torch module made of named layers, any of which can be the split.

A :class:`SplitModel` builds an ordered list of ``(name, module)`` layers; ``f_edge`` is the
layers up to and including the split point, ``f_cloud`` the rest, and ``forward`` all of them,
so ``cloud(split)(edge(split)(x)) == forward(x)`` for every split point (tested). Layer names
follow the papers (He et al.'s ``conv11 ... ReLU32``; VGG's ``block1_pool ... fc1``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from phloem.core.errors import ConfigError
from phloem.core.registry import NoParams

__all__ = ["SplitModel"]


class SplitModel(nn.Module, ABC):
    """A victim classifier ``f = f_cloud ∘ f_edge`` with named split points.

    Subclasses declare ``name``, ``description``, ``Params`` (a frozen dataclass),
    ``input_shape`` ``(C, H, W)`` and ``num_classes``, and implement :meth:`layers`.
    Inputs are images in ``[0, 1]``; any normalisation is the model's own first layer.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    kind: ClassVar[str] = "victim"
    input_shape: ClassVar[tuple[int, int, int]]
    num_classes: ClassVar[int] = 10

    def __init__(self, params: Any = None) -> None:
        super().__init__()
        self.params = self.Params() if params is None else params
        if not isinstance(self.params, self.Params):
            raise TypeError(f"victim {self.name!r} takes {self.Params.__name__}")
        self.net = nn.ModuleDict(dict(self.layers()))

    @abstractmethod
    def layers(self) -> list[tuple[str, nn.Module]]:
        """The model's layers in order, each with its split-point name."""

    @property
    def splits(self) -> tuple[str, ...]:
        """The split points, in order (every layer but the last)."""
        return tuple(self.net)[:-1]

    def _index(self, split: str) -> int:
        names = list(self.net)
        if split not in names[:-1]:
            raise ConfigError(
                "victim.split", f"{split!r} is not a split point of {self.name}", list(self.splits)
            )
        return names.index(split)

    def edge(self, split: str) -> nn.Sequential:
        """``f_edge``: the layers up to and including ``split`` (sharing this model's weights)."""
        modules = list(self.net.values())
        return nn.Sequential(*modules[: self._index(split) + 1])

    def cloud(self, split: str) -> nn.Sequential:
        """``f_cloud``: the layers after ``split``."""
        modules = list(self.net.values())
        return nn.Sequential(*modules[self._index(split) + 1 :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net.values():
            x = layer(x)
        return x
