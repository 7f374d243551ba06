"""Named classifier kinds: which per-event classifier a command trains.

A model kind is a class that declares its ``name``, a one-line ``description`` and its frozen
``Params``, registers itself in :data:`MODEL_KINDS`, and makes unfitted classifiers
(:meth:`ModelKind.factory`). ``phloem iot train --model NAME`` and
``phloem iot evaluate --model NAME`` pick one by name.

Built in: ``logreg`` (:class:`~phloem.iot.models.LogRegClassifier`) and ``mlp``
(:class:`~phloem.iot.models.MLPClassifier`, the paper's 64-64). Their ``Params`` defaults are
the classifiers' own. Importing this module imports neither scikit-learn nor torch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from phloem.core.errors import ConfigError
from phloem.core.registry import Configured, Registry

if TYPE_CHECKING:
    from phloem.iot.evaluate import Trainable

__all__ = ["MLP", "MODEL_KINDS", "LogReg", "LogRegParams", "MLPParams", "ModelKind"]


class ModelKind(Configured, ABC):
    """A named kind of classifier with its parameters.

    Built with an instance of its ``Params`` (default: ``Params()``), kept as ``params``.
    """

    kind: ClassVar[str] = "model kind"

    @abstractmethod
    def factory(self) -> Callable[[], Trainable]:
        """A function that makes one unfitted classifier with these parameters per call."""


MODEL_KINDS: Registry[type[ModelKind]] = Registry("model kind", "model")
"""Classifier kinds by name (``logreg``, ``mlp``)."""


def _positive(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(field, f"must be a positive number, got {value!r}")


@dataclass(frozen=True)
class LogRegParams:
    """Parameters of :class:`~phloem.iot.models.LogRegClassifier` (its defaults).

    Attributes
    ----------
    C
        Inverse L2 regularisation strength (> 0).
    balanced
        Weight classes inversely to their frequency.
    max_iter
        lbfgs iterations (>= 1).
    """

    C: float = 10.0
    balanced: bool = False
    max_iter: int = 2000

    def __post_init__(self) -> None:
        _positive("C", self.C)
        if self.max_iter < 1:
            raise ConfigError("max_iter", f"must be at least 1, got {self.max_iter}")


@MODEL_KINDS.register
class LogReg(ModelKind):
    """Multinomial logistic regression."""

    name: ClassVar[str] = "logreg"
    description: ClassVar[str] = "multinomial logistic regression, scikit-learn"
    Params: ClassVar[type[LogRegParams]] = LogRegParams
    params: LogRegParams

    def factory(self) -> Callable[[], Trainable]:
        from phloem.iot.models import LogRegClassifier

        p = self.params
        return lambda: LogRegClassifier(p.C, balanced=p.balanced, max_iter=p.max_iter)


@dataclass(frozen=True)
class MLPParams:
    """Parameters of :class:`~phloem.iot.models.MLPClassifier` (its defaults).

    Attributes
    ----------
    hidden_units
        Hidden layer sizes; ``(64, 64)`` is the paper's Dense64-Dense64.
    lr, weight_decay
        Adam step size (> 0) and L2 penalty (>= 0).
    batch_size, max_epochs, patience
        Minibatch size, epoch cap, epochs without a lower validation loss before stopping.
    val_fraction
        Share of the training rows held out for early stopping, in [0, 1).
    balanced
        Weight the loss inversely to class frequency.
    seed
        Seeds the initial weights, the validation split and the batch order.
    """

    hidden_units: tuple[int, ...] = (64, 64)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 10
    val_fraction: float = 0.1
    balanced: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.hidden_units or any(h < 1 for h in self.hidden_units):
            raise ConfigError(
                "hidden_units", f"need one or more sizes >= 1, got {self.hidden_units}"
            )
        _positive("lr", self.lr)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError("weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        for field in ("batch_size", "max_epochs", "patience"):
            if getattr(self, field) < 1:
                raise ConfigError(field, f"must be at least 1, got {getattr(self, field)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("val_fraction", f"must be in [0, 1), got {self.val_fraction}")


@MODEL_KINDS.register
class MLP(ModelKind):
    """A small ReLU MLP (torch), trained with Adam and early stopping."""

    name: ClassVar[str] = "mlp"
    description: ClassVar[str] = "the paper's 64-64 MLP, torch"
    Params: ClassVar[type[MLPParams]] = MLPParams
    params: MLPParams

    def factory(self) -> Callable[[], Trainable]:
        from phloem.iot.models import MLPClassifier

        p = self.params
        return lambda: MLPClassifier(
            p.hidden_units,
            lr=p.lr,
            weight_decay=p.weight_decay,
            batch_size=p.batch_size,
            max_epochs=p.max_epochs,
            patience=p.patience,
            val_fraction=p.val_fraction,
            balanced=p.balanced,
            seed=p.seed,
        )
