"""The ServerApp: FedAvg over every node, its fit rounds through phloem's SecAgg+.

The one line that differs from a Flower app using SecAgg+ is marked ``# <- phloem``.

Before the first round the server waits until ``num-nodes`` SuperNodes are connected, saying
every ``LOG_EVERY_S`` seconds how many it has, and stops with an error naming the missing
nodes after ``wait-for-nodes-s`` (Flower's own client manager would wait silently for a day).
Evaluation is centralised (the server can rebuild the synthetic shards): Flower's federated
evaluation has no reply timeout, so one dead node would hang it for ever.

Run config (``[tool.flwr.app.config]`` in ``pyproject.toml``, ``flwr run --run-config``):
see :class:`AppConfig`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.common import NDArrays, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common.recorddict_compat import arrayrecord_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, Key
from flwr.serverapp import Grid

from phloem.secagg.flower import PhloemSecAggWorkflow
from phloem_secagg_app.task import MAX_WEIGHT, initial_model, mse

#: a fit workflow, as ``DefaultWorkflow(fit_workflow=...)`` takes it
FitWorkflow = Callable[[Grid, Context], None]

LOGGER = logging.getLogger("flwr").getChild("phloem_secagg_app")
LOG_EVERY_S = 5.0

#: per-round results of the ServerApp running in this process (read by ``run.py``)
RESULTS: list[dict[str, Any]] = []


@dataclass(frozen=True)
class AppConfig:
    """The app's run config; each field is the ``[tool.flwr.app.config]`` key with ``-``.

    Attributes
    ----------
    num_server_rounds
        Federated rounds.
    num_nodes
        SuperNodes to wait for before the first round, and to sample in every round (at least
        3: the sum of two clients would tell each the other's model).
    wait_for_nodes_s
        Seconds to wait for ``num_nodes`` SuperNodes before giving up with an error.
    stage_timeout_s
        Seconds each secure-aggregation stage waits for replies; later nodes are dropouts
        (phloem's ``timeout_s``). It must cover a ClientApp's start (a few seconds per
        message in a deployment) and Flower's polling.
    model_dim
        Weights of the linear model (the model has ``model_dim + 1`` parameters).
    clipping_range
        Parameters are clipped to ``[-clipping_range, clipping_range]`` before quantisation.
    num_shares, threshold
        SecAgg+ ``k`` and ``t``; ``0`` and ``0`` let phloem choose them for each round.
    results_file
        If not empty, one JSON line per round is appended to this file (on the machine of
        the ServerApp): clients in the sum, stage seconds, the global model.
    """

    num_server_rounds: int = 3
    num_nodes: int = 3
    wait_for_nodes_s: float = 300.0
    stage_timeout_s: float = 60.0
    model_dim: int = 20
    clipping_range: float = 4.0
    num_shares: int = 0
    threshold: int = 0
    results_file: str = ""

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any], **defaults: Any) -> AppConfig:
        """The config of ``run_config`` (Flower's), over ``defaults``; errors name the key."""
        values = dict(defaults)
        for f in fields(cls):
            key = f.name.replace("_", "-")
            if key in run_config:
                values[f.name] = run_config[key]
        cfg = cls(**values)
        for f in fields(cls):
            value, kind = getattr(cfg, f.name), type(getattr(cls(), f.name))
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
            if not ok or isinstance(value, bool):
                key = f.name.replace("_", "-")
                raise ValueError(f"run config '{key}' = {value!r}: expected a {kind.__name__}")
        if cfg.num_nodes < 3:
            raise ValueError(
                f"run config 'num-nodes' = {cfg.num_nodes}: secure aggregation needs at least "
                "3 nodes (with 2, each learns the other's model from the sum)"
            )
        return cfg


def wait_for_nodes(grid: Grid, num_nodes: int, timeout_s: float) -> list[int]:
    """Block until ``num_nodes`` SuperNodes are connected; log progress, fail on timeout."""
    start = time.monotonic()
    last_log = -LOG_EVERY_S
    while True:
        nodes = list(grid.get_node_ids())
        elapsed = time.monotonic() - start
        if len(nodes) >= num_nodes:
            LOGGER.info("%d of %d nodes connected after %.1fs", len(nodes), num_nodes, elapsed)
            return nodes
        if elapsed >= timeout_s:
            raise TimeoutError(
                f"only {len(nodes)} of the {num_nodes} nodes the run needs connected within "
                f"{timeout_s:g}s (run config 'wait-for-nodes-s'): start "
                f"{num_nodes - len(nodes)} more SuperNode(s), or lower 'num-nodes'"
            )
        if elapsed - last_log >= LOG_EVERY_S:
            LOGGER.info(
                "waiting for nodes: %d of %d connected (%.0fs of %gs)",
                len(nodes),
                num_nodes,
                elapsed,
                timeout_s,
            )
            last_log = elapsed
        time.sleep(0.5)


def _evaluate(
    num_nodes: int,
) -> Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]]]:
    def evaluate(
        server_round: int, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        loss = float(np.mean([mse(p, parameters) for p in range(num_nodes)]))
        return loss, {"mse": loss}

    return evaluate


def phloem_workflow(cfg: AppConfig) -> FitWorkflow:
    """The app's fit workflow: phloem's SecAgg+ with the run config's parameters."""
    return PhloemSecAggWorkflow(  # <- phloem
        cfg.num_shares or None,
        cfg.threshold or None,
        clipping_range=cfg.clipping_range,
        max_weight=MAX_WEIGHT,
        timeout_s=cfg.stage_timeout_s,
    )


def make_server_app(
    workflow: Callable[[AppConfig], FitWorkflow] = phloem_workflow, **defaults: Any
) -> ServerApp:
    """The ServerApp; ``defaults`` (AppConfig fields) apply where the run config is silent.

    ``workflow(config)`` builds the fit workflow (``benchmarks/secagg/deployment`` passes
    Flower's ``SecAggPlusWorkflow`` there, to compare the two in the same app).
    """
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = AppConfig.from_run_config(dict(context.run_config), **defaults)
        wait_for_nodes(grid, cfg.num_nodes, cfg.wait_for_nodes_s)
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=cfg.num_nodes,
            min_available_clients=cfg.num_nodes,
            initial_parameters=ndarrays_to_parameters(initial_model(cfg.model_dim)),
            evaluate_fn=_evaluate(cfg.num_nodes),
        )
        secagg = workflow(cfg)

        def fit_round(grid: Grid, ctx: Context) -> None:
            start = time.perf_counter()
            secagg(grid, ctx)
            _record(ctx, secagg, time.perf_counter() - start, cfg.results_file)

        legacy = LegacyContext(
            context=context,
            config=ServerConfig(num_rounds=cfg.num_server_rounds),
            strategy=strategy,
        )
        DefaultWorkflow(fit_workflow=fit_round)(grid, legacy)

    return server_app


def _record(context: Context, secagg: FitWorkflow, fit_s: float, results_file: str) -> None:
    summary = getattr(secagg, "last_round", None)  # phloem's RoundSummary, if phloem's
    round_id = context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND]
    params = arrayrecord_to_parameters(context.state.array_records["parameters"], keep_input=True)
    model = parameters_to_ndarrays(params)
    entry: dict[str, Any] = {
        "round": round_id,
        "fit_s": fit_s,
        "sampled": None if summary is None else summary.sampled,
        "included": 0 if summary is None else len(summary.included),
        "aborted": None if summary is None else summary.aborted,
        "max_weight": MAX_WEIGHT,
        "step": None if summary is None else summary.quantizer.step,
        "stage_s": {} if summary is None else {str(k): v for k, v in summary.stage_s.items()},
        "time": time.time(),
    }
    RESULTS.append({**entry, "parameters": model})
    if results_file:
        line = {**entry, "parameters": [a.astype(np.float64).tolist() for a in model]}
        with Path(results_file).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


app = make_server_app()
