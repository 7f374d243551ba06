"""A tiny Flower app whose FedAvg runs through phloem's secure aggregation.

Each client holds a shard of a synthetic linear-regression problem (``y = X w* + b* +
noise``, shards of different sizes), takes a few full-batch gradient steps from the global
model, and returns its model and its number of examples. The server never sees a client's
model: :class:`~phloem.secagg.flower.PhloemSecAggWorkflow` hands FedAvg only the
secure-aggregated, ``num_examples``-weighted mean.

The two lines that differ from a Flower app using SecAgg+ are marked ``# <- phloem``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Context
from flwr.client import Client, ClientApp, NumPyClient
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import Grid

from phloem.secagg.flower import PhloemSecAggWorkflow, phloem_secagg_mod

DIM = 20
MODEL_SHAPES = [(DIM,), (1,)]  # weights, bias
LOCAL_STEPS = 5
LEARNING_RATE = 0.1
MAX_WEIGHT = 200.0  # no shard holds more examples, so no client weight is capped

#: one entry per round, written by the ServerApp (run_simulation runs it in this process)
RESULTS: list[dict[str, Any]] = []


def shard(partition_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(X, y)`` of one client: 20 to 65 examples of a shared linear model."""
    truth = np.random.default_rng(0)
    w_star, b_star = truth.normal(size=DIM), 0.5
    gen = np.random.default_rng(1 + partition_id)
    x = gen.normal(size=(20 + 15 * (partition_id % 4), DIM))
    y = x @ w_star + b_star + 0.1 * gen.normal(size=len(x))
    return x, y


def mse(partition_id: int, params: list[np.ndarray]) -> float:
    x, y = shard(partition_id)
    return float(np.mean((x @ params[0] + params[1][0] - y) ** 2))


def train_locally(
    partition_id: int, params: list[np.ndarray]
) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """A few gradient steps on the client's shard: ``(model, num_examples, metrics)``."""
    x, y = shard(partition_id)
    w, b = params[0].astype(np.float64), float(params[1][0])
    for _ in range(LOCAL_STEPS):
        residual = x @ w + b - y
        w -= LEARNING_RATE * 2.0 * x.T @ residual / len(y)
        b -= LEARNING_RATE * 2.0 * float(residual.mean())
    model = [w.astype(np.float32), np.array([b], dtype=np.float32)]
    return model, len(y), {"train_mse": mse(partition_id, model)}


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
        return mse(self.partition_id, parameters), len(shard(self.partition_id)[1]), {}


def client_fn(context: Context) -> Client:
    return LinearRegressionClient(int(context.node_config["partition-id"])).to_client()


client_app = ClientApp(client_fn=client_fn, mods=[phloem_secagg_mod])  # <- phloem


def make_server_app(
    num_rounds: int = 3, timeout_s: float | None = 60.0, num_clients: int = 10
) -> ServerApp:
    """The ServerApp: FedAvg over all ``num_clients`` clients, fit rounds through phloem's
    SecAgg+. Every round waits until all clients are connected: a secure sum over whoever
    happened to connect first could be too small (SecAgg+ needs at least 3)."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        rounds = int(context.run_config.get("num-server-rounds", num_rounds))
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=num_clients,
            min_evaluate_clients=num_clients,
            min_available_clients=num_clients,
            initial_parameters=ndarrays_to_parameters(
                [np.zeros(s, dtype=np.float32) for s in MODEL_SHAPES]
            ),
        )
        secagg = PhloemSecAggWorkflow(  # <- phloem
            clipping_range=4.0, max_weight=MAX_WEIGHT, timeout_s=timeout_s
        )

        def fit_round(grid: Grid, ctx: Context) -> None:
            secagg(grid, ctx)
            _record(ctx, secagg)

        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy
        )
        DefaultWorkflow(fit_workflow=fit_round)(grid, legacy)

    return server_app


def _record(context: Context, secagg: PhloemSecAggWorkflow) -> None:
    from flwr.common import parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import arrayrecord_to_parameters

    summary = secagg.last_round
    params = arrayrecord_to_parameters(context.state.array_records["parameters"], keep_input=True)
    RESULTS.append(
        {
            "parameters": parameters_to_ndarrays(params),
            "included": 0 if summary is None else len(summary.included),
            "max_weight": MAX_WEIGHT,
            "step": None if summary is None else summary.quantizer.step,
            "stage_s": {} if summary is None else dict(summary.stage_s),
        }
    )


server_app = make_server_app()
