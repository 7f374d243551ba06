"""One Flower simulation (Ray) with secure aggregation: Flower's SecAgg+ or phloem's, same app.

    python run_flower_sim.py IMPL N DIM NUM_SHARES THRESHOLD OUT.json      # IMPL: flower | phloem

Both runs use the same Flower 1.42 ``ServerApp`` / ``ClientApp`` and the shared workload (client
``i`` returns a float32 vector of DIM values U(-1, 1) from ``default_rng(1000 + i)``, weight
``1 + i mod 7``, max_weight 10), differing only in the fit workflow and the client mod:
``SecAggPlusWorkflow`` + ``secaggplus_mod`` or ``PhloemSecAggWorkflow`` + ``phloem_secagg_mod``.
Ray runs the clients on the machine's cores (``num_cpus`` 1 each), so "round s" is the wall
time of a real simulated round, Ray's messaging included; round 2 is the steady state.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.simulation import run_simulation

from phloem.secagg.bench import MAX_WEIGHT, client_vector, client_weight
from phloem.secagg.flower import PhloemSecAggWorkflow, phloem_secagg_mod

IMPL, N, DIM = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
K, T, OUT = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
ROUNDS = 2
RESULT: dict[str, Any] = {"impl": IMPL, "N": N, "DIM": DIM, "k": K, "t": T, "round_s": []}


class BenchClient(NumPyClient):  # type: ignore[misc]
    def __init__(self, i: int) -> None:
        self.i = i

    def get_parameters(self, config: Any) -> list[np.ndarray]:
        return [np.zeros(DIM, dtype=np.float32)]

    def fit(self, parameters: Any, config: Any) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        return [client_vector(self.i, DIM)], int(client_weight(self.i)), {}


def client_fn(context: Any) -> Any:
    return BenchClient(int(context.node_config["partition-id"])).to_client()


mod = secaggplus_mod if IMPL == "flower" else phloem_secagg_mod
client_app = ClientApp(client_fn=client_fn, mods=[mod])
server_app = ServerApp()


class Timed:
    """Times each call of the wrapped fit workflow (one secure-aggregation round)."""

    def __init__(self, wf: Any) -> None:
        self.wf = wf

    def __call__(self, grid: Any, context: Any) -> None:
        t0 = time.perf_counter()
        self.wf(grid, context)
        RESULT["round_s"].append(round(time.perf_counter() - t0, 3))


@server_app.main()
def main(grid: Any, context: Any) -> None:
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=N,
        min_available_clients=N,
        initial_parameters=ndarrays_to_parameters([np.zeros(DIM, dtype=np.float32)]),
    )
    lctx = LegacyContext(context=context, config=ServerConfig(num_rounds=ROUNDS), strategy=strategy)
    if IMPL == "flower":
        wf: Any = SecAggPlusWorkflow(
            num_shares=K, reconstruction_threshold=T, max_weight=MAX_WEIGHT
        )
    else:
        wf = PhloemSecAggWorkflow(num_shares=K, threshold=T, max_weight=MAX_WEIGHT)
    DefaultWorkflow(fit_workflow=Timed(wf))(grid, lctx)
    agg = next(iter(lctx.state.array_records["parameters"].values())).numpy()
    w = np.array([client_weight(i) for i in range(N)], dtype=np.float64)
    exact = sum(w[i] * client_vector(i, DIM).astype(np.float64) for i in range(N)) / w.sum()
    RESULT["max_abs_error"] = float(np.max(np.abs(agg - exact)))


if __name__ == "__main__":
    t0 = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=N,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "include_dashboard": False},
        },
    )
    RESULT["run_simulation_s"] = round(time.perf_counter() - t0, 2)
    RESULT["driver_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    with open(OUT, "w") as f:
        json.dump(RESULT, f, indent=1)
    print("RESULT", json.dumps(RESULT))
