"""What a step-size schedule costs per round: the same FedAvg run with and without one.

Run: ``PYTHONPATH=src python benchmarks/fl/schedules/bench_schedule_overhead.py``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from phloem.data.synthetic import make_quadratic
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.local import FullGradient
from phloem.fl.problem import QuadraticProblem
from phloem.fl.sampling import FullParticipation
from phloem.fl.schedules import Constant, Exponential, LrSchedules
from phloem.fl.simulate import simulate

ROUNDS, CLIENTS, REPEATS = 200, 10, 7


def main() -> None:
    q = make_quadratic(CLIENTS, 20, 1.0, 0.2, np.random.default_rng(0), 1.0)
    problem = QuadraticProblem(q.A, q.b, q.weights)
    plain = FedAvg(local=FullGradient(0.1, 1))
    sched = LrSchedules(Exponential(gamma=0.999), Constant(), ROUNDS)
    scheduled = dataclasses.replace(plain, lr_schedules=sched)
    times: dict[str, list[float]] = {"plain": [], "scheduled": []}
    for _ in range(REPEATS):  # interleaved: the machine is shared and noisy
        for name, algo in (("plain", plain), ("scheduled", scheduled)):
            t0 = time.perf_counter()
            simulate(problem, algo, FullParticipation(), rounds=ROUNDS, eval_every=ROUNDS)
            times[name].append(time.perf_counter() - t0)
    a = plain.at_round(1)
    t0 = time.perf_counter()
    for k in range(1, 10001):
        a = scheduled.at_round(k)
    cold = (time.perf_counter() - t0) / 10000
    t0 = time.perf_counter()
    for _ in range(10000):
        a = scheduled.at_round(7)
    warm = (time.perf_counter() - t0) / 10000
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:>9}: median {med * 1e3:.1f} ms / run = {med / ROUNDS * 1e6:.0f} us / round")
    ratio = statistics.median(times["scheduled"]) / statistics.median(times["plain"])
    print(f"ratio scheduled / plain: {ratio:.3f}")
    print(f"at_round: {cold * 1e6:.1f} us for a new round, {warm * 1e6:.2f} us when cached")
    assert a.local.lr > 0


if __name__ == "__main__":
    main()
