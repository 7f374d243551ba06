"""Secure aggregation in a real local Flower deployment: phloem's against Flower's SecAgg+.

    PYTHONPATH=src python benchmarks/secagg/deployment/run.py [--nodes 5] [--dim 99999]
        [--rounds 3] [--repeats 2] [--import-repeats 7] [--out results.json]

Both variants run the same app (``examples/flower_secagg``: FedAvg on a linear model of
``dim + 1`` parameters) on the same deployment -- ``flower-superlink --insecure`` and
``--nodes`` x ``flower-supernode`` on 127.0.0.1 (``examples/flower_secagg/local_deployment.py``),
one fresh ClientApp process per message, ``flwr run`` -- and differ only in the fit workflow
and the client mod: ``PhloemSecAggWorkflow`` + ``phloem_secagg_mod`` or Flower's
``SecAggPlusWorkflow`` + ``secaggplus_mod``, with the same ``num_shares``, threshold,
clipping range, ``max_weight`` and stage timeout. Runs alternate between the two.

Measured:

- per round, the wall time of the fit workflow (``fit_s``: from the ServerApp, around the
  workflow call) and, for phloem, each stage's seconds (``RoundSummary.stage_s``);
- the import time of each client mod in fresh processes: the marginal seconds of importing it
  after ``flwr.supernode.cli`` (what a ``flwr-clientapp`` process has loaded before it loads
  the app), and the whole process's wall time for ``python -c "import <mod>"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "flower_secagg"
sys.path.insert(0, str(EXAMPLE))

import numpy as np  # noqa: E402
from local_deployment import LocalDeployment  # noqa: E402
from phloem_secagg_app import task  # noqa: E402

#: the Flower baseline, as modules of the same app
FLOWER_SERVER = """
from flwr.server.workflow import SecAggPlusWorkflow

from phloem_secagg_app.server_app import make_server_app
from phloem_secagg_app.task import MAX_WEIGHT

app = make_server_app(
    workflow=lambda cfg: SecAggPlusWorkflow(
        num_shares=cfg.num_shares,
        reconstruction_threshold=cfg.threshold,
        clipping_range=cfg.clipping_range,
        max_weight=MAX_WEIGHT,
        timeout=cfg.stage_timeout_s,
    )
)
"""
FLOWER_CLIENT = """
from flwr.client import ClientApp
from flwr.client.mod import secaggplus_mod

from phloem_secagg_app.client_app import client_fn

app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
"""

MODS = {
    "phloem": "from phloem.secagg.flower import phloem_secagg_mod",
    "flower": "from flwr.client.mod import secaggplus_mod",
}


def app_dir(variant: str, dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    if variant == "flower":
        pkg = dest / "phloem_secagg_app"
        (pkg / "flower_server.py").write_text(FLOWER_SERVER)
        (pkg / "flower_client.py").write_text(FLOWER_CLIENT)
        toml = dest / "pyproject.toml"
        text = toml.read_text()
        text = text.replace(
            "phloem_secagg_app.server_app:app", "phloem_secagg_app.flower_server:app"
        )
        text = text.replace(
            "phloem_secagg_app.client_app:app", "phloem_secagg_app.flower_client:app"
        )
        toml.write_text(text)
    return dest


def one_run(variant: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    app = app_dir(variant, work / "app")
    results = work / "rounds.jsonl"
    run_config = (
        f"num-nodes={args.nodes} num-server-rounds={args.rounds} model-dim={args.dim} "
        f"num-shares={args.num_shares} threshold={args.threshold} "
        f'stage-timeout-s={args.stage_timeout_s} results-file="{results}"'
    )
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with LocalDeployment(args.nodes, workdir=work / "deploy", env=env) as deployment:
        start = time.perf_counter()
        out = deployment.run(app, run_config, timeout_s=1800.0)
        wall = time.perf_counter() - start
        if out.returncode != 0 or not results.exists():
            raise RuntimeError(out.stdout[-4000:] + out.stderr[-4000:] + deployment.logs())
    rounds = [json.loads(line) for line in results.read_text().splitlines()]
    previous = [np.zeros(args.dim), np.zeros(1)]
    for r in rounds:
        model = [np.asarray(a) for a in r.pop("parameters")]
        # evidence that the round aggregated (Flower's workflow keeps no summary to say so)
        pairs = zip(model, previous, strict=True)
        r["model_changed"] = any(not np.array_equal(a, b) for a, b in pairs)
        r["mse"] = float(np.mean([task.mse(p, model) for p in range(args.nodes)]))
        r["run_wall_s"] = wall
        previous = model
    return rounds


def import_times(repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds to import each mod in fresh processes (marginal and whole process)."""
    marginal = (
        "import time, flwr.supernode.cli\n"
        "t = time.perf_counter()\n"
        "{stmt}\n"
        "print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    out: dict[str, dict[str, list[float]]] = {k: {"marginal_s": [], "process_s": []} for k in MODS}
    for _ in range(repeats):
        for name, stmt in MODS.items():  # interleaved: drift hits both alike
            res = subprocess.run(
                [sys.executable, "-c", marginal.format(stmt=stmt)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            out[name]["marginal_s"].append(float(res.stdout.strip().splitlines()[-1]))
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", stmt], env=env, check=True)
            out[name]["process_s"].append(time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(repeats):
        subprocess.run([sys.executable, "-c", "import flwr.supernode.cli"], env=env, check=True)
    base = (time.perf_counter() - t) / repeats
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in out.items()}
    med["flwr.supernode.cli (no mod)"] = {"process_s": base}
    return med


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import flwr

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "flwr": flwr.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--dim", type=int, default=99_999, help="model-dim (dim + 1 params)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="deployment runs per variant")
    parser.add_argument("--num-shares", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--stage-timeout-s", type=float, default=300.0)
    parser.add_argument("--import-repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("deployment_results.json"))
    args = parser.parse_args()

    report: dict[str, Any] = {"machine": machine(), "args": {**vars(args), "out": str(args.out)}}
    report["imports"] = import_times(args.import_repeats)
    print(json.dumps(report["imports"], indent=1), flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"phloem": [], "flower": []}
    for rep in range(args.repeats):
        for variant in runs:
            with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as tmp:
                rounds = one_run(variant, args, Path(tmp))
            for r in rounds:
                r["repeat"] = rep
            runs[variant].extend(rounds)
            fits = ", ".join(f"{r['fit_s']:.2f}" for r in rounds)
            print(f"{variant} run {rep}: fit_s per round [{fits}]", flush=True)
    report["runs"] = runs
    summary: dict[str, Any] = {}
    for variant, rounds in runs.items():
        ok = [r for r in rounds if r["model_changed"]]
        summary[variant] = {
            "rounds": len(rounds),
            "rounds_aggregated": len(ok),
            "final_mse": [r["mse"] for r in rounds if r["round"] == args.rounds],
            "median_fit_s": statistics.median(r["fit_s"] for r in ok),
            "min_fit_s": min(r["fit_s"] for r in ok),
            "max_fit_s": max(r["fit_s"] for r in ok),
        }
        stages = [r["stage_s"] for r in rounds if r["stage_s"]]
        if stages:
            summary[variant]["median_stage_s"] = {
                k: statistics.median(s[k] for s in stages) for k in stages[0]
            }
    summary["ratio_flower_over_phloem"] = (
        summary["flower"]["median_fit_s"] / summary["phloem"]["median_fit_s"]
    )
    report["summary"] = summary
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({"machine": report["machine"], "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
