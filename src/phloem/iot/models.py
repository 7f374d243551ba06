"""Per-event device classifiers over :mod:`phloem.iot.features`, and their numpy-only export.

Thompson, Mandalari, Haddadi, "Rapid IoT Device Identification at the Edge", DistributedML '21,
classify a device with an MLP (Dense 64 - Dense 64 - softmax) over its second-level domains.
This module offers that MLP (:class:`MLPClassifier`, torch) and a multinomial logistic
regression (:class:`LogRegClassifier`, scikit-learn), both with scikit-learn conventions
(``fit``, ``predict_proba``, ``predict``, ``classes_``), and:

- :func:`export_numpy`: a :class:`NumpyModel` holding float32 weights and the vectorizer's
  vocabulary in one ``.npz``, for edge deployment without torch, scikit-learn or scipy;
- :func:`max_proba` and :class:`UnknownDetector`: flag events whose top probability is below a
  threshold calibrated on known devices;
- :func:`aggregate_proba`: device probabilities summed to manufacturer (or category) level.

torch is imported lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from phloem.core.errors import PhloemError
from phloem.iot.events import Event
from phloem.iot.features import Vectorizer

if TYPE_CHECKING:
    import torch
    from scipy.sparse import spmatrix

__all__ = [
    "DenseLayer",
    "LogRegClassifier",
    "MLPClassifier",
    "NumpyModel",
    "ProbabilisticClassifier",
    "UnknownDetector",
    "aggregate_proba",
    "export_numpy",
    "max_proba",
]

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
Labels = Sequence[str] | npt.NDArray[np.str_]

DenseLayer = tuple[F32Array, F32Array]
"""``(W, b)`` with ``W`` of shape ``(n_in, n_out)``: ``y = x @ W + b``."""


class ProbabilisticClassifier(Protocol):
    """What :func:`export_numpy` needs: class labels and a stack of dense layers.

    The exported predictor computes ``softmax(L_k(relu(... relu(L_1(x)))))``.
    """

    classes_: npt.NDArray[np.str_]

    def predict_proba(self, X: spmatrix | FloatArray) -> FloatArray: ...

    def dense_layers(self) -> list[DenseLayer]: ...


def _softmax(z: npt.NDArray[Any]) -> npt.NDArray[Any]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[Any] = e / e.sum(axis=1, keepdims=True)
    return out


def _encode(y: Labels) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    classes, codes = np.unique(np.asarray(y, dtype=np.str_), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"need at least two classes to fit a classifier, got {list(classes)}")
    return classes, codes.astype(np.int64)


class LogRegClassifier:
    """Multinomial logistic regression (scikit-learn ``LogisticRegression``, lbfgs).

    Parameters
    ----------
    C
        Inverse L2 regularisation strength.
    balanced
        Weight classes inversely to their frequency (``class_weight="balanced"``).
    max_iter
        lbfgs iterations.
    """

    def __init__(self, C: float = 10.0, *, balanced: bool = False, max_iter: int = 2000) -> None:
        self.C = C
        self.balanced = balanced
        self.max_iter = max_iter
        self.classes_: npt.NDArray[np.str_] = np.array([], dtype=np.str_)
        self._model: Any = None

    def fit(self, X: spmatrix | FloatArray, y: Labels) -> LogRegClassifier:
        """Fit on feature rows ``X`` and device labels ``y``; returns ``self``."""
        from sklearn.linear_model import LogisticRegression

        classes, codes = _encode(y)
        # lbfgs with >2 classes is multinomial (the ``multi_class`` argument is gone in sklearn)
        model = LogisticRegression(
            C=self.C,
            class_weight="balanced" if self.balanced else None,
            max_iter=self.max_iter,
        )
        model.fit(X, codes)
        self.classes_, self._model = classes, model
        return self

    def predict_proba(self, X: spmatrix | FloatArray) -> FloatArray:
        """Class probabilities, columns in :attr:`classes_` order."""
        out: FloatArray = np.asarray(self._fitted().predict_proba(X), dtype=np.float64)
        return out

    def predict(self, X: spmatrix | FloatArray) -> npt.NDArray[np.str_]:
        """Most probable class per row."""
        out: npt.NDArray[np.str_] = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return out

    def dense_layers(self) -> list[DenseLayer]:
        """One layer of logits; a binary model becomes ``[0, z]`` logits (same softmax)."""
        model = self._fitted()
        W = np.asarray(model.coef_, dtype=np.float64).T
        b = np.asarray(model.intercept_, dtype=np.float64)
        if W.shape[1] == 1:  # sigmoid(z) == softmax([0, z])[1]
            W = np.hstack([np.zeros_like(W), W])
            b = np.concatenate([[0.0], b])
        return [(W.astype(np.float32), b.astype(np.float32))]

    def _fitted(self) -> Any:
        if self._model is None:
            raise RuntimeError("LogRegClassifier is not fitted: call fit(X, y) first")
        return self._model


class MLPClassifier:
    """A small ReLU MLP with softmax output (torch), trained with Adam and early stopping.

    Parameters
    ----------
    hidden
        Hidden layer sizes; ``(64, 64)`` is the paper's Dense64-Dense64.
    lr, weight_decay
        Adam step size and L2 penalty.
    batch_size, max_epochs
        Minibatch size and epoch cap.
    patience
        Stop after this many epochs without a lower validation loss; the best weights are
        restored.
    val_fraction
        Share of the training rows held out for early stopping (0 disables it: all
        ``max_epochs`` are run on all rows).
    balanced
        Weight the loss inversely to class frequency.
    seed
        Seeds the initial weights, the validation split and the batch order (``generator``
        wins when given).
    generator
        An injected ``torch.Generator``; its state is advanced by :meth:`fit`.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64),
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        max_epochs: int = 200,
        patience: int = 10,
        val_fraction: float = 0.1,
        balanced: bool = False,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.hidden = tuple(int(h) for h in hidden)
        self.lr, self.weight_decay = lr, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.val_fraction, self.balanced, self.seed = val_fraction, balanced, seed
        self.generator = generator
        self.classes_: npt.NDArray[np.str_] = np.array([], dtype=np.str_)
        self.n_epochs_ = 0
        self._net: torch.nn.Sequential | None = None

    def fit(self, X: spmatrix | FloatArray, y: Labels) -> MLPClassifier:
        """Train on feature rows ``X`` and labels ``y``; returns ``self``."""
        import torch

        gen = self.generator if self.generator is not None else torch.Generator()
        if self.generator is None:
            gen.manual_seed(self.seed)
        classes, codes = _encode(y)
        Xc = _as_csr(X)
        net = self._build(Xc.shape[1], len(classes), gen)
        train, val = self._split(len(codes), gen)
        counts = np.bincount(codes[train], minlength=len(classes)).astype(np.float64)
        weight = None
        if self.balanced:
            weight = torch.tensor(len(train) / (len(classes) * np.maximum(counts, 1.0)))
            weight = weight.to(torch.float32)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        y_t = torch.from_numpy(codes)
        best, best_state, stale = float("inf"), None, 0
        for epoch in range(self.max_epochs):
            net.train()
            order = train[torch.randperm(len(train), generator=gen).numpy()]
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                opt.zero_grad()
                loss_fn(net(_dense(Xc[rows])), y_t[rows]).backward()
                opt.step()
            self.n_epochs_ = epoch + 1
            if len(val) == 0:
                continue
            net.eval()
            with torch.no_grad():
                v = float(loss_fn(net(_dense(Xc[val])), y_t[val]))
            if v < best - 1e-6:
                best, stale = v, 0
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.classes_, self._net = classes, net
        return self

    def predict_proba(self, X: spmatrix | FloatArray) -> FloatArray:
        """Class probabilities, columns in :attr:`classes_` order."""
        import torch

        net = self._fitted()
        Xc = _as_csr(X)
        outs = []
        with torch.no_grad():
            for start in range(0, Xc.shape[0], 4096):
                logits = net(_dense(Xc[start : start + 4096]))
                outs.append(torch.softmax(logits, dim=1).numpy())
        if not outs:
            return np.zeros((0, len(self.classes_)), dtype=np.float64)
        return np.concatenate(outs).astype(np.float64)

    def predict(self, X: spmatrix | FloatArray) -> npt.NDArray[np.str_]:
        """Most probable class per row."""
        out: npt.NDArray[np.str_] = self.classes_[self.predict_proba(X).argmax(axis=1)]
        return out

    def dense_layers(self) -> list[DenseLayer]:
        """The linear layers as ``(W, b)`` float32 arrays, ``W`` of shape ``(n_in, n_out)``."""
        import torch

        layers = [m for m in self._fitted() if isinstance(m, torch.nn.Linear)]
        return [
            (
                m.weight.detach().numpy().T.astype(np.float32),
                m.bias.detach().numpy().astype(np.float32),
            )
            for m in layers
        ]

    def _build(self, n_in: int, n_out: int, gen: torch.Generator) -> torch.nn.Sequential:
        import torch

        sizes = [n_in, *self.hidden, n_out]
        mods: list[torch.nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            lin = torch.nn.Linear(a, b)
            # PyTorch's default init, drawn from the injected generator instead of global state
            bound = 1.0 / float(np.sqrt(a))
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.uniform_(-bound, bound, generator=gen)
            mods.append(lin)
            if i < len(sizes) - 2:
                mods.append(torch.nn.ReLU())
        return torch.nn.Sequential(*mods)

    def _split(
        self, n: int, gen: torch.Generator
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        import torch

        perm = torch.randperm(n, generator=gen).numpy().astype(np.int64)
        n_val = round(self.val_fraction * n)
        if self.val_fraction > 0 and n - n_val < 1:
            raise ValueError(f"too few rows ({n}) for val_fraction={self.val_fraction}")
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    def _fitted(self) -> torch.nn.Sequential:
        if self._net is None:
            raise RuntimeError("MLPClassifier is not fitted: call fit(X, y) first")
        return self._net


def _as_csr(X: spmatrix | FloatArray) -> Any:
    from scipy.sparse import csr_matrix

    return csr_matrix(X, dtype=np.float32)


def _dense(rows: Any) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.asarray(rows.toarray(), dtype=np.float32))


# --- numpy-only export ---------------------------------------------------------------------


class NumpyModel:
    """A torch-, scikit-learn- and scipy-free predictor: vectorizer + dense layers + softmax.

    Parameters
    ----------
    vectorizer
        The fitted vectorizer the model was trained with.
    layers
        ``(W, b)`` float32 pairs; ReLU between layers, softmax after the last.
    classes
        Class labels, in output column order.
    extra
        JSON-able metadata saved beside the weights (e.g. what
        :class:`~phloem.iot.identify.Identifier` needs: unknown thresholds, label hierarchy).
    """

    def __init__(
        self,
        vectorizer: Vectorizer,
        layers: Sequence[DenseLayer],
        classes: Sequence[str],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if not layers:
            raise ValueError("NumpyModel needs at least one layer")
        if layers[0][0].shape[0] != vectorizer.n_features:
            raise ValueError(
                f"first layer expects {layers[0][0].shape[0]} features but the vectorizer has "
                f"{vectorizer.n_features}: export the vectorizer the model was trained with"
            )
        self.vectorizer = vectorizer
        self.layers = [
            (np.ascontiguousarray(W, np.float32), np.ascontiguousarray(b, np.float32))
            for W, b in layers
        ]
        self.classes = [str(c) for c in classes]
        self.extra: dict[str, Any] = dict(extra or {})

    def predict_proba_events(self, events: Sequence[Event], window_s: float) -> F32Array:
        """Class probabilities (float32, ``(len(events), n_classes)``) of each event's window."""
        indptr, indices, values = self.vectorizer.featurise_batch(events, window_s)
        W0, b0 = self.layers[0]
        # sparse rows times dense weights: gather the used rows of W0 and sum them per event
        h = np.zeros((len(events), W0.shape[1]), dtype=np.float32)
        if len(indices):
            # reduceat sums each event's run of rows; an empty run would wrongly yield the
            # next row, so only events with features take part (their runs tile the data).
            filled = np.flatnonzero(np.diff(indptr) > 0)
            h[filled] = np.add.reduceat(W0[indices] * values[:, None], indptr[filled], axis=0)
        h += b0
        for W, b in self.layers[1:]:
            h = np.maximum(h, 0.0) @ W + b
        out: F32Array = _softmax(h).astype(np.float32)
        return out

    def predict_events(self, events: Sequence[Event], window_s: float) -> list[str]:
        """Most probable class of each event's window."""
        return [self.classes[i] for i in self.predict_proba_events(events, window_s).argmax(1)]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one compressed ``.npz``: weights, plus vocabulary/spec/classes as JSON bytes."""
        meta = {
            "vectorizer": self.vectorizer.to_dict(),
            "classes": self.classes,
            "extra": self.extra,
        }
        arrays: dict[str, Any] = {
            "meta_json": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        }
        for i, (W, b) in enumerate(self.layers):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        with open(path, "wb") as fh:
            fh.write(buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NumpyModel:
        """Read a model written by :meth:`save` (no pickle).

        Raises
        ------
        PhloemError
            The file is not such a model (another file, damaged, cut short), naming it.
        """
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(bytes(npz["meta_json"]).decode("utf-8"))
                n = sum(1 for k in npz.files if k.startswith("W"))
                layers = [(npz[f"W{i}"], npz[f"b{i}"]) for i in range(n)]
            vec = Vectorizer.from_dict(meta["vectorizer"])
            return cls(vec, layers, meta["classes"], meta.get("extra"))
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise PhloemError(
                f"{os.fspath(path)} is not a phloem IoT model, or it is damaged "
                f"({type(e).__name__}: {str(e)[:200]}); make one with `phloem iot train`"
            ) from None


def export_numpy(
    model: ProbabilisticClassifier,
    vectorizer: Vectorizer,
    extra: Mapping[str, Any] | None = None,
) -> NumpyModel:
    """Freeze a fitted classifier and its vectorizer into a :class:`NumpyModel`.

    Its probabilities match ``model.predict_proba(vectorizer.transform(...))`` to float32
    precision. Size is about ``4 * (n_features * width_1 + ...)`` bytes before compression.
    """
    return NumpyModel(vectorizer, model.dense_layers(), [str(c) for c in model.classes_], extra)


# --- unknown devices and hierarchy ----------------------------------------------------------


def max_proba(proba: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """The top class probability of each row (a confidence score)."""
    out: FloatArray = np.asarray(proba, dtype=np.float64).max(axis=1)
    return out


@dataclass(frozen=True)
class UnknownDetector:
    """Flag an event as an unknown device when its top probability is below ``threshold``."""

    threshold: float

    @classmethod
    def calibrate(
        cls, probas_known_val: npt.NDArray[np.floating[Any]], target_false_unknown: float = 0.01
    ) -> UnknownDetector:
        """The highest threshold flagging at most ``target_false_unknown`` of known events.

        Parameters
        ----------
        probas_known_val
            Probabilities of validation events from devices the model knows.
        target_false_unknown
            Largest acceptable share of those events flagged unknown.
        """
        if not 0.0 <= target_false_unknown <= 1.0:
            raise ValueError(f"target_false_unknown must be in [0, 1], got {target_false_unknown}")
        scores = np.sort(max_proba(probas_known_val))
        if len(scores) == 0:
            raise ValueError("calibrate needs at least one known validation event")
        k = int(np.floor(target_false_unknown * len(scores) + 1e-9))
        # flagged = scores strictly below the threshold; scores[k] leaves at most k of them
        return cls(float(scores[k]) if k < len(scores) else float("inf"))

    def is_unknown(self, proba: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.bool_]:
        """Whether each row's top probability is below the threshold."""
        out: npt.NDArray[np.bool_] = max_proba(proba) < self.threshold
        return out

    def predict(
        self,
        proba: npt.NDArray[np.floating[Any]],
        classes: Sequence[str] | npt.NDArray[np.str_],
        unknown: str = "unknown",
    ) -> list[str]:
        """The top class of each row, or ``unknown`` where :meth:`is_unknown`."""
        top = np.asarray(proba).argmax(axis=1)
        flags = self.is_unknown(proba)
        return [unknown if f else str(classes[i]) for i, f in zip(top, flags, strict=True)]


def aggregate_proba(
    proba: npt.NDArray[np.floating[Any]],
    classes: Sequence[str] | npt.NDArray[np.str_],
    mapping: Mapping[str, str],
) -> tuple[FloatArray, list[str]]:
    """Sum device probabilities per group (manufacturer, category, ...).

    Parameters
    ----------
    proba
        ``(n, n_devices)`` probabilities, columns in ``classes`` order.
    classes
        Device labels of the columns.
    mapping
        Device -> group; every class must be mapped.

    Returns
    -------
    tuple
        ``(n, n_groups)`` probabilities and the sorted group labels.
    """
    classes = [str(c) for c in classes]
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise ValueError(f"aggregate_proba: no group given for devices {missing}")
    groups = sorted({mapping[c] for c in classes})
    col = {g: j for j, g in enumerate(groups)}
    M = np.zeros((len(classes), len(groups)), dtype=np.float64)
    M[np.arange(len(classes)), [col[mapping[c]] for c in classes]] = 1.0
    out: FloatArray = np.asarray(proba, dtype=np.float64) @ M
    return out, groups
