"""LPIPS, the learned perceptual distance, from weights the user supplies (never random ones).

Zhang, Isola, Efros, Shechtman & Wang, *The unreasonable effectiveness of deep features as a
perceptual metric*, CVPR 2018. For images ``x, y`` in ``[0, 1]``:

1. map to ``[-1, 1]`` and scale per channel, ``(2x - 1 - shift) / scale`` with the paper's
   ``shift = (-0.030, -0.088, -0.188)``, ``scale = (0.458, 0.448, 0.450)`` (grey images are
   repeated over three channels);
2. take the backbone's activations at five layers (AlexNet: after each of its five ReLUs;
   VGG-16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3);
3. unit-normalise each activation along its channels, ``f / (||f||_2 + 1e-10)``;
4. ``d = sum_l mean_{h,w} w_l . (f_l(x) - f_l(y))^2``, with ``w_l`` the learned non-negative
   per-channel weights of the paper's linear layers.

The metric is only as meaningful as its weights: an ImageNet-trained backbone and the
calibrated linear layers. Neither can be fetched here (no network at run time), so the user
passes two files: the backbone's ``state_dict`` in torchvision's layout (``features.0.weight``
...; e.g. ``alexnet-owt-7be5be79.pth``) and the linear layers in the ``lpips`` package's
layout (``lin0.model.1.weight`` ... ``lin4.model.1.weight``; its ``weights/v0.1/alex.pth``).
Both are read with ``torch.load(weights_only=True)``, so a file cannot run code. Without them
there is no LPIPS column; a random backbone is never substituted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from phloem.core.errors import ConfigError, DataNotFoundError

__all__ = ["LPIPS", "LPIPS_NETS", "MIN_SIDE"]

#: per backbone: the torchvision ``features`` layout as (kind, args) per index, and the
#: indices after which LPIPS taps an activation
_ALEX: list[tuple[str, tuple[int, ...]]] = [
    ("conv", (3, 64, 11, 4, 2)),
    ("relu", ()),
    ("pool", (3, 2)),
    ("conv", (64, 192, 5, 1, 2)),
    ("relu", ()),
    ("pool", (3, 2)),
    ("conv", (192, 384, 3, 1, 1)),
    ("relu", ()),
    ("conv", (384, 256, 3, 1, 1)),
    ("relu", ()),
    ("conv", (256, 256, 3, 1, 1)),
    ("relu", ()),
]


def _vgg16() -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = []
    c_in = 3
    for i, (c_out, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if i:
            out.append(("pool", (2, 2)))
        for _ in range(convs):
            out += [("conv", (c_in, c_out, 3, 1, 1)), ("relu", ())]
            c_in = c_out
    return out


_LAYOUTS: dict[str, tuple[list[tuple[str, tuple[int, ...]]], tuple[int, ...]]] = {
    "alex": (_ALEX, (1, 4, 7, 9, 11)),
    "vgg": (_vgg16(), (3, 8, 15, 22, 29)),
}
#: the smallest image side each backbone's layers accept (AlexNet's stride-4 11x11 stem and
#: two 3x3 poolings; VGG-16's four 2x2 poolings)
MIN_SIDE = {"alex": 31, "vgg": 16}
#: the backbones LPIPS is defined for here
LPIPS_NETS = tuple(_LAYOUTS)


def _load(path: str | Path, what: str, field: str) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataNotFoundError(
            f"{what} for LPIPS",
            [file],
            f"Put the file there or point `{field}` at it (LPIPS never runs on random weights).",
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: one line, naming it
        raise ConfigError(field, f"{file} is not a readable torch state_dict ({exc})") from None
    if not isinstance(state, dict):
        raise ConfigError(field, f"{file} holds a {type(state).__name__}, not a state_dict")
    return state


class LPIPS(nn.Module):
    """LPIPS distance (see the module docstring); ``forward(x, y)`` is ``(N,)``, 0 for equal
    images, smaller is more similar."""

    SHIFT: ClassVar[tuple[float, float, float]] = (-0.030, -0.088, -0.188)
    SCALE: ClassVar[tuple[float, float, float]] = (0.458, 0.448, 0.450)
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self, net: str, backbone: dict[str, torch.Tensor], linear: dict[str, torch.Tensor]
    ) -> None:
        super().__init__()
        if net not in _LAYOUTS:
            raise ConfigError("metrics.lpips_net", f"unknown {net!r}", list(LPIPS_NETS))
        layout, taps = _LAYOUTS[net]
        self.net = net
        self.taps = taps
        layers: list[nn.Module] = []
        for kind, args in layout:
            if kind == "conv":
                c_in, c_out, k, stride, pad = args
                layers.append(nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad))
            elif kind == "relu":
                layers.append(nn.ReLU())
            else:
                layers.append(nn.MaxPool2d(args[0], stride=args[1]))
        self.features = nn.Sequential(*layers[: taps[-1] + 1])
        wanted = {f"features.{k}" for k in self.features.state_dict()}
        ours = {k: v for k, v in backbone.items() if k in wanted}
        self._check("metrics.lpips_backbone", wanted, ours, self.features.state_dict())
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in ours.items()})
        channels = [self._channels(t) for t in taps]
        weights = []
        for i, c in enumerate(channels):
            key = f"lin{i}.model.1.weight"
            w = linear.get(key)
            if w is None or tuple(w.shape) != (1, c, 1, 1):
                got = "missing" if w is None else f"shape {tuple(w.shape)}"
                raise ConfigError(
                    "metrics.lpips_linear",
                    f"{key} is {got}; the {net} LPIPS needs shape (1, {c}, 1, 1) (the lpips "
                    "package's weights/v0.1 layout)",
                )
            w = w.detach().float().reshape(c)
            if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
                raise ConfigError(
                    "metrics.lpips_linear",
                    f"{key} has negative or non-finite weights; LPIPS's are non-negative "
                    "(a forged or damaged file?)",
                )
            weights.append(w)
        self.lin = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in weights])
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _check(
        field: str, wanted: set[str], got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]
    ) -> None:
        missing = sorted(wanted - set(got))
        if missing:
            raise ConfigError(
                field,
                f"{len(missing)} backbone weights missing (e.g. {', '.join(missing[:3])}); "
                "expected torchvision's layout",
            )
        for key, value in got.items():
            shape = tuple(ref[key.removeprefix("features.")].shape)
            if tuple(value.shape) != shape:
                raise ConfigError(field, f"{key} has shape {tuple(value.shape)}, needs {shape}")
            if not bool(torch.isfinite(value).all()):
                raise ConfigError(field, f"{key} holds NaN or infinite weights")

    def _channels(self, tap: int) -> int:
        convs = [m for m in list(self.features)[: tap + 1] if isinstance(m, nn.Conv2d)]
        return int(convs[-1].out_channels)

    @classmethod
    def from_files(cls, net: str, backbone: str | Path, linear: str | Path) -> LPIPS:
        """Build from the two weight files (see the module docstring)."""
        return cls(
            net,
            _load(backbone, f"the {net} backbone weights", "metrics.lpips_backbone"),
            _load(linear, "the linear-layer weights", "metrics.lpips_linear"),
        )

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped activations of the scaled images ``x`` in ``[0, 1]``."""
        if min(x.shape[-2:]) < MIN_SIDE[self.net]:
            raise ValueError(
                f"LPIPS ({self.net}) needs images of at least {MIN_SIDE[self.net]} pixels a "
                f"side, got {tuple(x.shape[-2:])}"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = (2 * x - 1 - self.shift) / self.scale
        out: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for fx, fy, w in zip(self.activations(x), self.activations(y), self.lin, strict=True):
            nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + ((nx - ny).pow(2) * w.view(1, -1, 1, 1)).sum(dim=1).mean(dim=(1, 2))
        return total

    def distances(self, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """``forward`` in batches, without gradients, as float64 ``(N,)``."""
        with torch.no_grad():
            parts: Sequence[torch.Tensor] = [
                self(x[i : i + batch], y[i : i + batch]) for i in range(0, x.shape[0], batch)
            ]
        return torch.cat(list(parts)).double()
