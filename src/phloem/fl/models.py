"""Models for the simulator, and a flat-parameter binding that makes them cheap to drive.

Federated optimisation is stated over a parameter vector ``x`` in R^d; :class:`FlatModule` makes
a ``torch.nn.Module`` read its parameters from one contiguous buffer and write its gradients to
another, so that a local step is a single ``axpy`` on the flat vector, there are no per-parameter
Python loops in the hot path, and one model object is reused for every client (pfl-style).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from phloem.core.registry import NoParams
from phloem.fl.registries import MODELS

__all__ = [
    "CNN",
    "MLP",
    "BinaryLogistic",
    "BinaryLogisticParams",
    "FlatModule",
    "Linear",
    "Logistic",
    "MLPParams",
    "Model",
    "build_model",
    "cnn28",
    "cnn32",
    "linear_model",
    "mlp",
    "seeded",
]


def linear_model(in_features: int, out_features: int) -> nn.Module:
    """An affine map on flattened inputs (linear or logistic regression)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, out_features))


def mlp(in_features: int, hidden: Sequence[int], out_features: int) -> nn.Module:
    """A ReLU multi-layer perceptron on flattened inputs."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def _cnn(in_channels: int, side: int, num_classes: int, width: int) -> nn.Module:
    # Two conv-pool stages then two dense layers: the LeNet-style net FedAvg (McMahan et al.,
    # 2017) used for MNIST/FEMNIST; no batch norm, whose running statistics do not federate.
    feat = (side // 4) ** 2 * 2 * width
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(feat, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def cnn28(num_classes: int, in_channels: int = 1, width: int = 16) -> nn.Module:
    """Small CNN for 28x28 images (MNIST, FEMNIST)."""
    return _cnn(in_channels, 28, num_classes, width)


def cnn32(num_classes: int, in_channels: int = 3, width: int = 16) -> nn.Module:
    """Small CNN for 32x32 images (CIFAR-10)."""
    return _cnn(in_channels, 32, num_classes, width)


class Model(ABC):
    """A registered model kind (``[model] name``) with its own parameters."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    #: squared loss on one output (``True``) or cross-entropy over the classes
    regression: ClassVar[bool] = False
    #: one logit and the logistic loss on labels +-1 (two classes only)
    binary: ClassVar[bool] = False
    #: takes windows of int64 token indices (not float features); its evaluation reports
    #: perplexity, ``exp`` of the test cross-entropy
    tokens: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def build(cls, params: Any, feature_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        """The module for inputs of ``feature_shape`` with ``num_outputs`` outputs.

        Raises
        ------
        ValueError
            When the model cannot take such inputs.
        """


def _flat_size(feature_shape: tuple[int, ...]) -> int:
    n_in = 1
    for s in feature_shape:
        n_in *= s
    return n_in


@MODELS.register
class Linear(Model):
    name: ClassVar[str] = "linear"
    description: ClassVar[str] = "affine map, squared loss (linear regression)"
    regression: ClassVar[bool] = True

    @classmethod
    def build(cls, params: NoParams, feature_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        return linear_model(_flat_size(feature_shape), num_outputs)


@MODELS.register
class Logistic(Model):
    name: ClassVar[str] = "logistic"
    description: ClassVar[str] = "affine map, cross-entropy (multinomial logistic regression)"

    @classmethod
    def build(cls, params: NoParams, feature_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        return linear_model(_flat_size(feature_shape), num_outputs)


@dataclass(frozen=True)
class BinaryLogisticParams:
    """``bias``: add an intercept (the convex benchmark of the literature has none)."""

    bias: bool = False


@MODELS.register
class BinaryLogistic(Model):
    """``f(x) = mean_j log(1 + exp(-y_j a_j^T x)) + l2/2 ||x||^2`` with labels ``y_j = +-1``:
    the L2-regularised logistic regression of the federated-optimisation literature (e.g. the
    LIBSVM experiments of EF21, Richtarik et al., 2021), one weight per feature."""

    name: ClassVar[str] = "binary_logistic"
    description: ClassVar[str] = "one logit, logistic loss on labels +-1, no bias by default"
    Params: ClassVar[type[BinaryLogisticParams]] = BinaryLogisticParams
    binary: ClassVar[bool] = True

    @classmethod
    def build(
        cls, params: BinaryLogisticParams, feature_shape: tuple[int, ...], num_outputs: int
    ) -> nn.Module:
        if num_outputs != 2:
            raise ValueError(
                f"model 'binary_logistic' needs two classes, the data have {num_outputs}; "
                "use 'logistic' (softmax) for more"
            )
        linear = nn.Linear(_flat_size(feature_shape), 1, bias=params.bias)
        nn.init.zeros_(linear.weight)  # the convex benchmark starts at x = 0
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)
        return nn.Sequential(nn.Flatten(), linear)


@dataclass(frozen=True)
class MLPParams:
    """``hidden``: the widths of the hidden layers."""

    hidden: tuple[int, ...] = (64,)

    def __post_init__(self) -> None:
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden sizes must be >= 1, got {list(self.hidden)}")


@MODELS.register
class MLP(Model):
    name: ClassVar[str] = "mlp"
    description: ClassVar[str] = "multilayer perceptron with ReLU (hidden widths)"
    Params: ClassVar[type[MLPParams]] = MLPParams

    @classmethod
    def build(
        cls, params: MLPParams, feature_shape: tuple[int, ...], num_outputs: int
    ) -> nn.Module:
        return mlp(_flat_size(feature_shape), params.hidden, num_outputs)


@MODELS.register
class CNN(Model):
    name: ClassVar[str] = "cnn"
    description: ClassVar[str] = "small CNN for (C, 28, 28) or (C, 32, 32) images"

    @classmethod
    def build(cls, params: NoParams, feature_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        if len(feature_shape) == 3 and feature_shape[1:] == (28, 28):
            return cnn28(num_outputs, feature_shape[0])
        if len(feature_shape) == 3 and feature_shape[1:] == (32, 32):
            return cnn32(num_outputs, feature_shape[0])
        raise ValueError(
            f"model 'cnn' needs (C, 28, 28) or (C, 32, 32) image inputs, got feature shape "
            f"{feature_shape}; use 'mlp' or 'logistic' for flat features"
        )


def build_model(
    kind: str, feature_shape: tuple[int, ...], num_outputs: int, params: Any = None
) -> nn.Module:
    """Build the registered model ``kind`` (default parameters unless ``params`` is given).

    Raises
    ------
    ConfigError
        For an unknown ``kind`` (listing the registered ones).
    ValueError
        If the model cannot take inputs of ``feature_shape`` (a CNN given flat features).
    """
    model = MODELS.get(kind)
    return model.build(model.Params() if params is None else params, feature_shape, num_outputs)


class FlatModule:
    """A module whose parameters and gradients live in two flat buffers.

    Parameters
    ----------
    module
        The model. Its parameters are re-pointed at slices of :attr:`flat` (values preserved).
    dtype
        Floating dtype of parameters (and so of every vector the simulator handles).
    device
        Where the module, :attr:`flat` and :attr:`grad` live (``"cpu"``, ``"cuda:0"``).

    Notes
    -----
    Only parameters are federated: a module with buffers (batch norm's running statistics)
    is refused; use GroupNorm or batch norm without running statistics
    (``track_running_stats=False``), as :mod:`phloem.fl.archs.resnet` does.
    """

    def __init__(
        self,
        module: nn.Module,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        module.to(device=device, dtype=dtype)
        params = list(module.parameters())
        if list(module.buffers()):
            raise ValueError(
                "FlatModule supports parameter-only models (no buffers such as batch norm's "
                "running statistics; use GroupNorm or BatchNorm2d(track_running_stats=False))"
            )
        self.module = module
        self.device = torch.device(device)
        self.dim = sum(p.numel() for p in params)
        self.flat = torch.empty(self.dim, dtype=dtype, device=self.device)
        self.grad = torch.zeros(self.dim, dtype=dtype, device=self.device)
        offset = 0
        for p in params:
            n = p.numel()
            self.flat[offset : offset + n].copy_(p.data.reshape(-1))
            p.data = self.flat[offset : offset + n].view_as(p)
            # Autograd accumulates in place into an existing .grad, so gradients land in self.grad.
            p.grad = self.grad[offset : offset + n].view_as(p)
            offset += n

    def initial_vector(self) -> torch.Tensor:
        """A copy of the current parameters as a flat vector (on the CPU)."""
        return self.flat.to("cpu", copy=True)

    # Pickled as is, every parameter would travel with its own copy of the storage and come
    # back cut loose from ``flat`` and ``grad`` (a Ray actor or a spawned worker would then
    # train a model the oracles never write to); the aliasing is rebuilt on arrival instead.
    def __getstate__(self) -> dict[str, Any]:
        return {"module": self.module, "dtype": self.flat.dtype, "device": self.device}

    def __setstate__(self, state: dict[str, Any]) -> None:
        device = state.get("device", "cpu")
        self.__init__(state["module"], state["dtype"], device)  # type: ignore[misc]


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build ``factory()`` with PyTorch's default initialisation drawn from ``seed``.

    The global torch RNG is forked and restored, so nothing outside leaks in or out.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()
