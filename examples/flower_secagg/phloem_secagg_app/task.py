"""The learning task of the example: a synthetic linear regression split across nodes.

Each node holds a shard of ``y = X w* + b* + noise`` (20 to 65 examples, by partition id),
takes a few full-batch gradient steps from the global model and returns its model and its
number of examples. Only numpy: the client process imports nothing more for the task.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOCAL_STEPS = 5
LEARNING_RATE = 0.1
MAX_WEIGHT = 200.0  # no shard holds more examples, so no client weight is capped


def model_shapes(dim: int) -> list[tuple[int, ...]]:
    """The model's arrays: ``dim`` weights and a bias."""
    return [(dim,), (1,)]


def initial_model(dim: int) -> list[np.ndarray]:
    return [np.zeros(s, dtype=np.float32) for s in model_shapes(dim)]


def shard(partition_id: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(X, y)`` of one node: 20 to 65 examples of a shared linear model."""
    truth = np.random.default_rng(0)
    w_star, b_star = truth.normal(size=dim), 0.5
    gen = np.random.default_rng(1 + partition_id)
    x = gen.normal(size=(20 + 15 * (partition_id % 4), dim))
    y = x @ w_star + b_star + 0.1 * gen.normal(size=len(x))
    return x, y


def mse(partition_id: int, params: list[np.ndarray]) -> float:
    x, y = shard(partition_id, len(params[0]))
    return float(np.mean((x @ params[0] + params[1][0] - y) ** 2))


def train_locally(
    partition_id: int, params: list[np.ndarray]
) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """A few gradient steps on the node's shard: ``(model, num_examples, metrics)``."""
    x, y = shard(partition_id, len(params[0]))
    w, b = params[0].astype(np.float64), float(params[1][0])
    # the Hessian's top eigenvalue grows with dim / examples: a step that stays stable
    lr = LEARNING_RATE * min(1.0, 20.0 / len(w))
    for _ in range(LOCAL_STEPS):
        residual = x @ w + b - y
        w -= lr * 2.0 * x.T @ residual / len(y)
        b -= lr * 2.0 * float(residual.mean())
    model = [w.astype(np.float32), np.array([b], dtype=np.float32)]
    return model, len(y), {"train_mse": mse(partition_id, model)}
