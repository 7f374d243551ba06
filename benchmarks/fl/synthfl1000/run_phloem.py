# ruff: noqa: E402  (the clock starts before the imports, as in run_plain.py)
"""SynthFL-1000 on phloem's federated simulator: the same work as the shared plain PyTorch loop.

Same data, clients, cohort schedule, initial weights and per-(round, client) shuffling seeds as
``run_plain.py`` of the shared workload (``$BENCH_FL_DIR``, default ``<repo>/../shared/bench/fl``).
Run it from a scratch folder: the workload caches ``synthetic_fl.npz`` in the current directory.

    python run_phloem.py                 # serial backend, one torch thread
    python run_phloem.py --workers 2     # two worker processes, one torch thread each
    python run_phloem.py --backend vectorised   # the cohort trained at once (batched matmuls)
    python run_phloem.py --reference     # also replay the plain loop in-process and compare

It prints ``round r acc=...`` at each evaluation and one ``RESULT phloem ...`` line with the
fields of ``run_plain.py`` (start-up to the end of round 1, median seconds per round over rounds
2..R with evaluation included as in the plain loop, total seconds, final accuracy), plus a hash
of the final model so that repeats and backends can be compared bit for bit.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # before the heavy imports, as in run_plain.py

import argparse
import hashlib
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phloem.core.callbacks import Callback
from phloem.core.history import Row
from phloem.core.rng import SeedStreams, Stage
from phloem.data.dataset import ArrayDataset, Partition
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.backends import Backend, ProcessBackend, SerialBackend
from phloem.fl.local import MinibatchSGD
from phloem.fl.problem import ModelProblem
from phloem.fl.sampling import FixedSchedule
from phloem.fl.simulate import simulate
from phloem.fl.vectorised import VectorisedBackend

REPO_ROOT = Path(__file__).resolve().parents[3]
BENCH_FL_DIR = Path(os.environ.get("BENCH_FL_DIR", REPO_ROOT.parent / "shared" / "bench" / "fl"))
sys.path.insert(0, str(BENCH_FL_DIR))

import workload as w

# The workload's shuffle seed of client ``cid`` in round ``rnd`` (see ``workload.local_train``).
SEED_STRIDE = 100003


class WorkloadSeeds(SeedStreams):
    """phloem's seed streams, except that a client's local stream is the workload's own seed.

    The simulator hands client ``cid`` of round ``r`` the generator ``torch(Stage.CLIENT, r, cid)``
    and MinibatchSGD draws one ``randperm`` from it per epoch, exactly like the plain loop.
    """

    def int_seed(self, stage: Stage, *keys: int) -> int:
        if stage == Stage.CLIENT:
            rnd, cid = keys
            return int(rnd) * SEED_STRIDE + int(cid)
        return super().int_seed(stage, *keys)


class RoundClock(Callback):
    """Wall time at the end of every round (evaluation included) and the accuracies seen."""

    def __init__(self) -> None:
        self.start = 0.0
        self.ends: list[float] = []
        self.cpu_start = 0.0
        self.cpu_ends: list[float] = []
        self.acc: dict[int, float] = {}

    def on_run_start(self, info: dict[str, Any]) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def on_round_end(self, row: Row) -> bool:
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())
        acc = row.get("test_acc")
        if isinstance(acc, float):
            self.acc[int(row["round"] or 0)] = acc
            print(f"round {row['round']} acc={acc:.4f}", flush=True)
        return False

    def round_times(self) -> list[float]:
        return list(np.diff([self.start, *self.ends]))

    def round_cpu_times(self) -> list[float]:
        """CPU seconds of this process per round (less sensitive to other tenants)."""
        return list(np.diff([self.cpu_start, *self.cpu_ends]))


def load_workload() -> tuple[dict[str, np.ndarray], Partition]:
    """The workload's arrays (read once) and its clients as a phloem partition."""
    npz = w.generate()
    data = {k: np.asarray(npz[k]) for k in ("x", "y", "owner", "xt", "yt", "schedule")}
    order, bounds = w.client_slices(npz)
    clients = [order[bounds[k] : bounds[k + 1]] for k in range(w.NUM_CLIENTS)]
    return data, Partition.from_lists(clients, scheme="synthfl1000")


def build_problem(data: dict[str, np.ndarray], partition: Partition) -> ModelProblem:
    train = ArrayDataset(data["x"], data["y"], w.CLASSES)
    test = ArrayDataset(data["xt"], data["yt"], w.CLASSES)
    return ModelProblem(w.make_model(torch), train, test, partition)


def model_hash(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().contiguous().numpy().tobytes()).hexdigest()[:12]


def plain_reference(
    data: dict[str, np.ndarray], partition: Partition, rounds: int
) -> tuple[torch.Tensor, dict[int, float]]:
    """The plain loop's maths (``run_plain.py``): local training, then a weighted model average."""
    glob = w.make_model(torch)
    acc: dict[int, float] = {}
    xt, yt = torch.from_numpy(data["xt"]), data["yt"]
    for r in range(1, rounds + 1):
        total, sums = 0, None
        for cid in data["schedule"][r - 1]:
            rows = partition.clients[int(cid)]
            m = w.make_model(torch)
            m.load_state_dict(glob.state_dict())
            w.local_train(torch, m, data["x"][rows], data["y"][rows], r, cid)
            n, sd = len(rows), m.state_dict()
            total += n
            sums = (
                {k: v * n for k, v in sd.items()}
                if sums is None
                else {k: sums[k] + sd[k] * n for k in sd}
            )
        assert sums is not None
        glob.load_state_dict({k: v / total for k, v in sums.items()})
        if r % w.EVAL_EVERY == 0 or r == rounds:
            with torch.no_grad():
                acc[r] = float((glob(xt).argmax(1).numpy() == yt).mean())
    flat = torch.cat([p.detach().reshape(-1) for p in glob.parameters()])
    return flat, acc


def compare(
    phloem_x: torch.Tensor,
    phloem_acc: dict[int, float],
    data: dict[str, np.ndarray],
    partition: Partition,
) -> None:
    """Print how far phloem's run is from the plain loop's: accuracies and final weights."""
    ref_x, ref_acc = plain_reference(data, partition, w.ROUNDS)
    n_test = len(data["yt"])
    diffs = {r: round((phloem_acc[r] - a) * n_test) for r, a in ref_acc.items() if r in phloem_acc}
    same = [r for r, d in diffs.items() if d == 0]
    max_abs = float((phloem_x - ref_x).abs().max())
    rel = float(torch.linalg.vector_norm(phloem_x - ref_x) / torch.linalg.vector_norm(ref_x))
    print(
        f"REFERENCE plain-loop replay: identical accuracy at {len(same)}/{len(diffs)} evaluations; "
        f"test-row differences per eval round {diffs}; final weights bit-identical="
        f"{bool(torch.equal(phloem_x, ref_x))} max_abs_diff={max_abs:.3g} rel_l2_diff={rel:.3g}",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=0, help="worker processes (0: serial backend)")
    ap.add_argument(
        "--backend",
        choices=["serial", "process", "vectorised"],
        default=None,
        help="execution backend (default: serial, or process when --workers is given)",
    )
    ap.add_argument(
        "--reference",
        action="store_true",
        help="after timing, replay the plain loop in-process and compare accuracies and weights",
    )
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    arrays, partition = load_workload()
    problem = build_problem(arrays, partition)
    algorithm = FedAvg(local=MinibatchSGD(lr=w.LR, batch_size=w.BATCH, epochs=w.LOCAL_EPOCHS))
    name = args.backend or ("process" if args.workers else "serial")
    backend: Backend
    if name == "vectorised":
        backend = VectorisedBackend(threads=1)
    elif name == "process":
        backend = ProcessBackend(workers=args.workers or 2, threads=1)
    else:
        backend = SerialBackend(1)
    clock = RoundClock()
    result = simulate(
        problem,
        algorithm,
        FixedSchedule(arrays["schedule"]),
        rounds=w.ROUNDS,
        seed=WorkloadSeeds(w.SEED),
        backend=backend,
        eval_every=w.EVAL_EVERY,
        callbacks=[clock],
    )
    t_end = time.perf_counter()
    rt = clock.round_times()
    no_eval = [float(v) for v in result.history.column("round_s")[2:]]  # rows 0 and 1 excluded
    print(
        f"RESULT phloem backend={name} workers={args.workers} hidden={w.HIDDEN} rounds={w.ROUNDS} "
        f"first_round_end_s={clock.ends[0] - T_START:.2f} "
        f"median_round_s={statistics.median(rt[1:]):.4f} total_s={t_end - T_START:.2f} "
        f"median_round_cpu_s={statistics.median(clock.round_cpu_times()[1:]):.4f} "
        f"final_acc={clock.acc[w.ROUNDS]:.4f} "
        f"median_round_s_no_eval={statistics.median(no_eval):.4f} "
        f"model_sha={model_hash(result.x)}",
        flush=True,
    )
    if args.reference:
        compare(result.x, clock.acc, arrays, partition)


if __name__ == "__main__":
    main()
