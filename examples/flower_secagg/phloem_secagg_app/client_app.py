"""The ClientApp: a numpy client, its fit rounds answered through phloem's secure aggregation.

The one line that differs from a Flower app using SecAgg+ is marked ``# <- phloem``. This
module imports only what a client needs (Flower's client side, numpy, the mod): in a
deployment every message may start a fresh ClientApp process, which pays these imports.

Node config (``flower-supernode --node-config``): ``partition-id`` (int, required) picks the
node's shard of the data; nothing else is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Context
from flwr.client import Client, ClientApp, NumPyClient

from phloem.secagg.flower import phloem_secagg_mod
from phloem_secagg_app.task import mse, shard, train_locally


class LinearRegressionClient(NumPyClient):
    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        return train_locally(self.partition_id, parameters)

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        x, _ = shard(self.partition_id, len(parameters[0]))
        return mse(self.partition_id, parameters), len(x), {}


def partition_id(context: Context) -> int:
    """The node's ``partition-id``; a clear error when the SuperNode was started without it."""
    value = context.node_config.get("partition-id")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"node config 'partition-id' is {value!r}: start each SuperNode with its own "
            "shard, e.g. flower-supernode ... --node-config 'partition-id=0'"
        )
    return value


def client_fn(context: Context) -> Client:
    return LinearRegressionClient(partition_id(context)).to_client()


app = ClientApp(client_fn=client_fn, mods=[phloem_secagg_mod])  # <- phloem
