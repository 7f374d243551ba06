"""Ray backend: time per round against serial and 1/2 Ray actors, and a model for a cluster.

On SynthFL-1000 (the shared workload of ``benchmarks/fl/synthfl1000``: 1000 clients, the fixed
schedule of 50 a round, 1 local epoch of minibatch SGD, batch 10), with the workload's linear
model or, with ``--hidden 512 512 --epochs 5``, an MLP where the clients' compute dominates.

    python benchmarks/fl/ray/run.py                                  # linear model
    python benchmarks/fl/ray/run.py --hidden 512 512 --epochs 5      # compute-bound

In one process it measures, in order: the serial backend's rounds; each client's compute
(``run_client`` timed alone); the pieces of Ray's overhead (start-up, actor start, a no-op
actor call, the bytes and pickling time of the server state and of a client's result); the
Ray backend's rounds with 1 and 2 actors (histories checked bit-identical to serial). Then it
predicts the per-round time of ``--cohort-model`` clients on M machines:

    T(M) = max_m sum_{i in C_m} t_i                (the slowest machine's clients)
         + M (o_call + S / beta)                   (a call and the server state per machine)
         + K (r + U / beta)                        (each result unpickled and received)
         + K a                                     (the driver's aggregation, per message)

with ``t_i`` the measured per-client compute, ``C_m`` the clients that machine m holds
(:func:`phloem.fl.backends.balance` by sample count, as the backend places them), ``o_call``
the no-op actor call, ``S`` / ``U`` the server state's / a result's pickled bytes, ``r`` a
result's unpickling time, ``beta`` the network's bandwidth (``--gbit``, not measured here:
a 2-core VM) and ``a`` the driver's time per message besides unpickling (serial round minus
the clients' compute). The same formula with M = 1, 2 is printed next to the measured rounds.
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import logging
import os
import pickle
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phloem.data.dataset import ArrayDataset
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.backends import Backend, SerialBackend, balance, run_client
from phloem.fl.local import MinibatchSGD
from phloem.fl.models import mlp, seeded
from phloem.fl.problem import ModelProblem
from phloem.fl.ray_backend import RayBackend
from phloem.fl.sampling import FixedSchedule
from phloem.fl.simulate import TIMING_KEYS, simulate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "synthfl1000"))
# Ray's workers inherit PYTHONPATH but start in the folder below: make its entries absolute
os.environ["PYTHONPATH"] = os.pathsep.join(
    os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
)
os.makedirs(HERE / "results", exist_ok=True)
os.chdir(HERE / "results")  # the workload caches synthetic_fl.npz in the current folder

import run_phloem as synth  # the SynthFL-1000 driver: workload, problem, seeds

w = synth.w


def build(hidden: list[int]) -> tuple[ModelProblem, np.ndarray]:
    arrays, partition = synth.load_workload()
    problem = synth.build_problem(arrays, partition)
    if hidden:
        train = ArrayDataset(arrays["x"], arrays["y"], w.CLASSES)
        test = ArrayDataset(arrays["xt"], arrays["yt"], w.CLASSES)
        module = seeded(lambda: mlp(w.DIM, tuple(hidden), w.CLASSES), w.SEED)
        problem = ModelProblem(module, train, test, partition)
    return problem, arrays["schedule"]


class TimedSerial(SerialBackend):
    """The serial backend, timing each round's clients (the rest of a round is the driver's)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.spent: list[float] = []

    def run_round(self, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = super().run_round(*args)
        self.spent.append(time.perf_counter() - t0)
        return out


class TimedOpen(RayBackend):
    """The Ray backend, timing its ``open`` (actors started, shards shipped)."""

    open_s = 0.0

    def open(self, *args: Any) -> None:
        t0 = time.perf_counter()
        super().open(*args)
        self.open_s = time.perf_counter() - t0


def rounds(problem: ModelProblem, algo: FedAvg, sched: np.ndarray, n: int, backend: Backend):
    res = simulate(
        problem, algo, FixedSchedule(sched), rounds=n, seed=synth.WorkloadSeeds(w.SEED),
        backend=backend, eval_every=10**6,
    )  # fmt: skip
    per_round = [float(v) for v in res.history.column("round_s")[2:]]  # round 1 warms up
    return (statistics.median(per_round), min(per_round)), res.history.rows, res.x


def timed_rows(rows: list[Any]) -> list[float]:
    """``round_s`` of rounds 1.. (row 0 is the initial model)."""
    return [float(r["round_s"]) for r in rows[1:]]


def client_compute(problem: ModelProblem, algo: FedAvg, sched: np.ndarray) -> np.ndarray:
    """Each client's compute time (least of 3: the least disturbed), in round 1's state."""
    streams = synth.WorkloadSeeds(w.SEED)
    x0 = problem.initial_point(torch.Generator())
    server = algo.init_server(x0, [], problem.weights)
    t = np.zeros(problem.num_clients)
    for cid in range(problem.num_clients):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run_client(problem, algo, streams, server, 1, cid, None)
            times.append(time.perf_counter() - t0)
        t[cid] = min(times)
    return t


def pickled(obj: Any) -> tuple[int, float]:
    """Bytes and unpickling time (least of 20) of ``obj``."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        pickle.loads(data)
        times.append(time.perf_counter() - t0)
    return len(data), min(times)


def ray_pieces(ray: Any) -> dict[str, float]:
    """No-op actor call round trip, and the time to start one actor."""

    class Noop:
        def ping(self, x: Any = None) -> None:
            return None

    t0 = time.perf_counter()
    actor = ray.remote(num_cpus=1)(Noop).remote()
    ray.get(actor.ping.remote())
    start = time.perf_counter() - t0
    calls = []
    for _ in range(200):
        t0 = time.perf_counter()
        ray.get(actor.ping.remote())
        calls.append(time.perf_counter() - t0)
    ray.kill(actor)
    return {
        "actor_start_s": start,
        "o_call_s": min(calls),
        "o_call_median_s": statistics.median(calls),
    }


def predict(
    t: np.ndarray, costs: np.ndarray, k: int, machines: int, p: dict[str, float], beta: float
) -> float:
    """The formula of the module docstring, for the first ``k`` clients of ``t``."""
    held = balance(costs[:k], machines)
    compute = max((float(t[g].sum()) for g in held if g), default=0.0)
    used = sum(1 for g in held if g)
    per_machine = p["o_call_s"] + p["S_bytes"] / beta
    per_result = p["r_s"] + p["U_bytes"] / beta
    return compute + used * per_machine + k * (per_result + p["a_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--hidden", type=int, nargs="*", default=[], help="MLP hidden sizes")
    ap.add_argument("--epochs", type=int, default=w.LOCAL_EPOCHS)
    ap.add_argument("--cohort-model", type=int, default=1000, help="K of the cluster model")
    ap.add_argument("--gbit", type=float, default=10.0, help="network Gbit/s of the model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    problem, sched = build(args.hidden)
    algo = FedAvg(local=MinibatchSGD(lr=w.LR, batch_size=w.BATCH, epochs=args.epochs))
    K = sched.shape[1]
    print(
        f"workload: SynthFL-1000, model {'linear' if not args.hidden else f'mlp{args.hidden}'} "
        f"({problem.dim} parameters), {args.epochs} epoch(s), {K} clients a round, "
        f"{args.rounds} rounds; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    timed = TimedSerial()
    (serial_s, serial_min), serial_rows, serial_x = rounds(problem, algo, sched, args.rounds, timed)
    rounds_s = [float(v) for v in timed_rows(serial_rows)]
    driver = [r - c for r, c in zip(rounds_s[1:], timed.spent[1:], strict=True)]
    a_s = statistics.median(driver) / K
    t = client_compute(problem, algo, sched)
    cohort_compute = float(np.median([t[c].sum() for c in sched[1 : args.rounds]]))
    print(
        f"serial: {serial_s * 1e3:.1f} ms/round (least {serial_min * 1e3:.1f}); clients' "
        f"compute alone {cohort_compute * 1e3:.1f} ms; driver {a_s * K * 1e3:.1f} ms",
        flush=True,
    )

    import ray

    ray.cloudpickle.register_pickle_by_value(synth)  # its seed streams travel to the actors
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    init_s = time.perf_counter() - t0
    pieces = ray_pieces(ray)
    streams = synth.WorkloadSeeds(w.SEED)
    server = algo.init_server(problem.initial_point(torch.Generator()), [], problem.weights)
    S_bytes, _ = pickled(server)
    result = run_client(problem, algo, streams, server, 1, int(sched[0][0]), None)
    U_bytes, r_s = pickled(result)
    p = {**pieces, "S_bytes": S_bytes, "U_bytes": U_bytes, "r_s": r_s, "a_s": a_s}

    measured = {}
    for workers in (1, 2):
        backend = TimedOpen(workers)
        (s, s_min), rows, x = rounds(problem, algo, sched, args.rounds, backend)
        same = synth.model_hash(x) == synth.model_hash(serial_x) and [
            {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows
        ] == [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in serial_rows]
        measured[workers] = s_min
        print(
            f"ray {workers} actor(s): {s * 1e3:.1f} ms/round (least {s_min * 1e3:.1f}; serial/ray "
            f"{serial_s / s:.2f}x), "
            f"open {backend.open_s:.2f} s, history bit-identical to serial: {same}",
            flush=True,
        )
    ray.shutdown()
    (again, again_min), _, _ = rounds(problem, algo, sched, args.rounds, SerialBackend(1))
    print(
        f"serial again, after Ray: {again * 1e3:.1f} ms/round (least {again_min * 1e3:.1f})",
        flush=True,
    )

    print(
        f"start-up: ray.init {init_s:.2f} s, one actor {pieces['actor_start_s']:.2f} s; "
        f"no-op actor call o_call {pieces['o_call_s'] * 1e6:.0f} us (median "
        f"{pieces['o_call_median_s'] * 1e6:.0f}); server state S "
        f"{S_bytes} B; a result U {U_bytes} B, unpickled in r {r_s * 1e6:.0f} us; driver "
        f"a {a_s * 1e6:.0f} us per message; per-client compute median {np.median(t) * 1e3:.2f} "
        f"ms (max {t.max() * 1e3:.2f})"
    )
    costs = np.maximum(problem.num_samples.astype(np.float64), 1.0)
    local_beta = 1e12  # on one machine the object store moves bytes through shared memory
    for m in (1, 2):
        pred = float(np.median([predict(t[c], costs[c], K, m, p, local_beta) for c in sched[1:]]))
        got = measured[m] * 1e3
        print(f"model, this machine, M={m}: {pred * 1e3:.1f} ms/round; least measured {got:.1f}")
    k = min(args.cohort_model, problem.num_clients)
    beta = args.gbit * 1e9 / 8
    serial_k = float(t[:k].sum()) + k * a_s
    print(f"model: K={k} clients a round, network {args.gbit:g} Gbit/s; serial {serial_k:.3f} s")
    floor = k * (p["r_s"] + p["U_bytes"] / beta + a_s) + float(t[:k].max())
    for m in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        pred = predict(t, costs, k, m, p, beta)
        print(f"  M={m:>3}: {pred * 1e3:9.1f} ms/round, speed-up {serial_k / pred:6.1f}x")
    print(
        f"  saturation: K (r + U/beta + a) + max t_i = {floor * 1e3:.1f} ms "
        f"-> at most {serial_k / floor:.1f}x"
    )


if __name__ == "__main__":
    main()
