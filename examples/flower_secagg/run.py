"""Run the example Flower app in Flower's simulation engine (Ray), with phloem's SecAgg+.

    python examples/flower_secagg/run.py [NUM_CLIENTS] [ROUNDS]

Prints, per round, the clients in the secure sum, the seconds each protocol stage took and
the mean squared error of the global model over all shards. For a deployment (SuperLink +
SuperNodes + ``flwr run``) see ``README.md`` and ``local_deployment.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # Ray workers inherit sys.path

from flwr.simulation import run_simulation
from phloem_secagg_app import client_app, server_app, task


def main(num_clients: int = 10, rounds: int = 3) -> dict[str, Any]:
    """Simulate ``rounds`` rounds over ``num_clients`` clients; per-round results."""
    server_app.RESULTS.clear()
    run_simulation(
        server_app=server_app.make_server_app(
            num_server_rounds=rounds, num_nodes=num_clients, stage_timeout_s=60.0
        ),
        client_app=client_app.app,
        num_supernodes=num_clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": min(4, os.cpu_count() or 1), "include_dashboard": False},
        },
    )
    return {"rounds": list(server_app.RESULTS)}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    r = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    out = main(n, r)
    for i, rnd in enumerate(out["rounds"], 1):
        loss = sum(task.mse(p, rnd["parameters"]) for p in range(n)) / n
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in rnd["stage_s"].items())
        print(f"round {i}: {rnd['included']}/{n} clients in the sum, mse {loss:.4f} ({stages})")
