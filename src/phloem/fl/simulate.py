"""``simulate``: the one round loop of the federated simulator.

Per round, in order: draw the cohort from the sampling stream of that round; run the clients'
updates on the backend; aggregate on the server; account bits and oracle work; evaluate;
record the row (flushed to disk); call callbacks; checkpoint. A diverging (NaN/inf) or
interrupted run saves its history and a checkpoint of the last good round before it stops.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from phloem.core.callbacks import Callback, CallbackList
from phloem.core.errors import DivergenceError, PhloemError
from phloem.core.history import History, Row
from phloem.core.progress import progress_bar
from phloem.core.rng import SeedStreams, Stage
from phloem.core.rundir import RunDir
from phloem.fl.algorithms.base import Algorithm, Cohort, Message
from phloem.fl.backends import Backend, SerialBackend
from phloem.fl.problem import Problem
from phloem.fl.sampling import ClientSampler

if TYPE_CHECKING:
    from phloem.fl.secure import Aggregator

__all__ = ["TIMING_KEYS", "Checkpoint", "SimulationResult", "simulate"]

#: History columns that measure time and so differ between otherwise identical runs.
TIMING_KEYS = frozenset({"round_s", "eval_s", "wall_s", "secagg_s"})


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly after round ``round``."""

    round: int
    server: Any
    client_states: list[Any]
    totals: dict[str, float]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(self, tmp)
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> Checkpoint:
        if not path.is_file():
            raise FileNotFoundError(
                f"no checkpoint at {path}; was the run started with checkpointing on?"
            )
        ck = torch.load(path, weights_only=False)
        if not isinstance(ck, Checkpoint):
            raise PhloemError(f"{path} is not a phloem checkpoint")
        return ck


@dataclass
class SimulationResult:
    """The outcome of :func:`simulate`."""

    history: History
    server: Any
    status: str  # finished | stopped (callback)
    run_dir: RunDir | None = None
    client_states: list[Any] = field(default_factory=list, repr=False)

    @property
    def x(self) -> torch.Tensor:
        x: torch.Tensor = self.server.x
        return x


class _Loop:
    """State of one simulation; each method is one named step of a round."""

    def __init__(
        self,
        problem: Problem,
        algorithm: Algorithm[Any, Any],
        sampler: ClientSampler,
        streams: SeedStreams,
        backend: Backend,
        eval_every: int,
        full_eval: bool,
        aggregator: Aggregator | None = None,
    ) -> None:
        self.problem, self.algorithm, self.sampler = problem, algorithm, sampler
        self.aggregator = aggregator
        self.streams, self.backend = streams, backend
        self.eval_every, self.full_eval = eval_every, full_eval
        self.totals = {"up": 0.0, "down": 0.0, "samples": 0.0, "wall": 0.0}

    def initial(self) -> Checkpoint:
        p, a = self.problem, self.algorithm
        x0 = p.initial_point(self.streams.torch(Stage.MODEL_INIT))
        states: list[Any] = [None] * p.num_clients
        if a.stateful_clients:
            states = [
                a.init_client(x0, p.client(i), self.streams.torch(Stage.CLIENT_INIT, i))
                for i in range(p.num_clients)
            ]
        server = a.init_server(x0, states, p.weights)
        return Checkpoint(0, server, states, dict(self.totals))

    def cohort(self, server: Any, round_: int) -> Cohort:
        n = self.problem.num_clients
        sampled = self.sampler.cohort(round_, n, self.streams.numpy(Stage.SAMPLING, round_))
        ids = np.asarray(self.algorithm.round_cohort(server, sampled, n), dtype=np.int64)
        return Cohort(ids, self.problem.weights[ids], n)

    def clients(self, server: Any, round_: int, cohort: Cohort, states: list[Any]) -> list[Message]:
        tasks = [(int(i), states[i]) for i in cohort.ids]
        results = self.backend.run_round(server, round_, tasks)
        for i, (_, new_state) in zip(cohort.ids, results, strict=True):
            states[i] = new_state
        return [m for m, _ in results]

    def account(self, server: Any, cohort: Cohort, messages: Sequence[Message]) -> Row:
        up = float(sum(m.bits for m in messages))
        down = float(self.algorithm.downlink_bits(server) * len(cohort.ids))
        samples = float(sum(m.samples for m in messages))
        self.totals["up"] += up
        self.totals["down"] += down
        self.totals["samples"] += samples
        w = cohort.normalised
        loss = float(sum(float(wi) * m.loss for wi, m in zip(w, messages, strict=True)))
        n = self.problem.num_clients
        return {
            "clients": len(cohort.ids),
            "train_loss": loss if messages else math.nan,
            "up_bits": up,
            "down_bits": down,
            "cum_up_bits": self.totals["up"],
            "cum_down_bits": self.totals["down"],
            "cum_bits": self.totals["up"] + self.totals["down"],
            "bits_per_client": self.totals["up"] / n,
            "oracle_samples": samples,
            "cum_oracle_samples": self.totals["samples"],
        }

    def round(self, server: Any, states: list[Any], round_: int) -> tuple[Any, Row]:
        """One round: cohort, client updates, accounting, server update; returns its row."""
        t0 = time.perf_counter()
        cohort = self.cohort(server, round_)
        if self.aggregator is not None and len(cohort.ids):
            row, server = self.aggregated_round(server, states, round_, cohort)
        elif len(cohort.ids):
            messages = self.clients(server, round_, cohort, states)
            row = self.account(server, cohort, messages)
            gen = self.streams.numpy(Stage.SERVER, round_)
            server = self.algorithm.server_update(server, messages, cohort, gen)
        else:  # an empty Poisson cohort: nothing moves
            row = self.account(server, cohort, [])
        dt = time.perf_counter() - t0
        self.totals["wall"] += dt
        return server, {"round": round_, **row, "round_s": dt, "wall_s": self.totals["wall"]}

    def aggregated_round(
        self, server: Any, states: list[Any], round_: int, sampled: Cohort
    ) -> tuple[Row, Any]:
        """A round through :class:`~phloem.fl.secure.Aggregator`: dropouts, secure sum."""
        assert self.aggregator is not None
        agg_gen = self.streams.numpy(Stage.AGGREGATION, round_)
        plan = self.aggregator.plan(sampled, agg_gen)
        cohort = plan.uploading
        before = [states[i] for i in cohort.ids]
        messages = self.clients(server, round_, cohort, states) if len(cohort.ids) else []
        row = self.account(server, cohort, messages)
        agg_messages, agg_cohort, extra = self.aggregator.aggregate(plan, messages, round_, agg_gen)
        row.update(extra)
        if "secagg_up_bytes" in extra:  # the protocol's real upload replaces the float bits
            up = 8.0 * float(extra["secagg_up_bytes"]) * float(extra["secagg_included"])
            old = row["up_bits"]
            assert isinstance(old, float)
            self.totals["up"] += up - old
            row["up_bits"] = up
            row["cum_up_bits"] = self.totals["up"]
            row["cum_bits"] = self.totals["up"] + self.totals["down"]
            row["bits_per_client"] = self.totals["up"] / self.problem.num_clients
        if agg_messages is None:  # aborted: the round changes nothing
            for i, st in zip(cohort.ids, before, strict=True):
                states[i] = st
            return row, server
        gen = self.streams.numpy(Stage.SERVER, round_)
        return row, self.algorithm.server_update(server, agg_messages, agg_cohort, gen)

    def snapshot(self, round_: int, server: Any, states: list[Any]) -> Checkpoint:
        return Checkpoint(round_, server, list(states), dict(self.totals))

    def evaluate(self, server: Any, round_: int, last: bool) -> Row:
        if not (round_ % self.eval_every == 0 or last):
            return {}
        t0 = time.perf_counter()
        row: Row = dict(self.problem.evaluate(server.x, full=self.full_eval))
        row["eval_s"] = time.perf_counter() - t0
        return row


def _finite(server: Any) -> bool:
    return bool(torch.isfinite(server.x).all())


def simulate(
    problem: Problem,
    algorithm: Algorithm[Any, Any],
    sampler: ClientSampler,
    *,
    rounds: int,
    seed: int | SeedStreams = 0,
    backend: Backend | None = None,
    eval_every: int = 1,
    full_eval: bool = False,
    callbacks: Sequence[Callback] = (),
    run_dir: RunDir | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = False,
    aggregator: Aggregator | None = None,
) -> SimulationResult:
    """Run ``algorithm`` on ``problem`` for ``rounds`` rounds.

    Parameters
    ----------
    problem, algorithm, sampler
        What to optimise, how, and which clients take part each round.
    rounds
        Total number of rounds (when resuming: the total, not the number still to run).
    seed
        Run seed, or :class:`~phloem.core.rng.SeedStreams` to control stream derivation.
    backend
        Where client updates run (default: serial, one torch thread).
    eval_every
        Evaluate every this many rounds (and at round 0 and the last round).
    full_eval
        Also compute the full objective and gradient norm (a pass over all training data).
    callbacks
        Hooks; any of them may stop the run early.
    run_dir
        Where the history (flushed every round), summary and checkpoints go.
    checkpoint_every
        Save a checkpoint every this many rounds (0: only on interruption or divergence).
    resume
        Continue from ``run_dir``'s checkpoint; the continued history equals an uninterrupted one.
    progress
        Show a progress bar.
    aggregator
        Dropout model and plain or secure aggregation (:mod:`phloem.fl.secure`); ``None``
        is plain aggregation of every sampled client.

    Raises
    ------
    DivergenceError
        The model became NaN/inf; history and the last good checkpoint were saved first.
    KeyboardInterrupt
        Re-raised after saving history and a checkpoint of the last completed round.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    streams = seed if isinstance(seed, SeedStreams) else SeedStreams(seed)
    backend = backend or SerialBackend()
    loop = _Loop(problem, algorithm, sampler, streams, backend, eval_every, full_eval, aggregator)
    cbs = CallbackList(callbacks)

    history, ck = _start(loop, run_dir, resume)
    loop.totals = dict(ck.totals)
    server, states = ck.server, ck.client_states
    status, round_ = "finished", ck.round
    summary: dict[str, Any] = {
        "algorithm": algorithm.describe(),
        "rounds": rounds,
        "seed": streams.seed,
    }

    def save(at: Checkpoint, how: str, message: str = "") -> None:
        if run_dir is not None:
            at.save(run_dir.checkpoint_path)
            run_dir.write_summary(
                {
                    **summary,
                    "status": how,
                    "round": at.round,
                    "message": message,
                    "final": history.last(),
                }
            )

    cbs.on_run_start({"round": round_, "rounds": rounds, "resumed": resume})
    good = ck
    try:
        backend.open(problem, algorithm, streams)
        with progress_bar(rounds - round_, algorithm.name, enabled=progress) as bar:
            while round_ < rounds:
                good = loop.snapshot(round_, server, states)
                round_ += 1
                server, row = loop.round(server, states, round_)
                if not _finite(server):
                    history.append({**row, "diverged": 1})
                    msg = (
                        f"diverged at round {round_}: the model has NaN/inf entries. History and "
                        f"the round-{good.round} checkpoint were saved; lower the learning rate "
                        "(local.lr or server.lr) and rerun."
                    )
                    save(good, "diverged", msg)
                    raise DivergenceError(msg)
                row.update(loop.evaluate(server, round_, round_ == rounds))
                history.append(row)
                bar.advance(info=_brief(row))
                if checkpoint_every and round_ % checkpoint_every == 0 and run_dir is not None:
                    loop.snapshot(round_, server, states).save(run_dir.checkpoint_path)
                if cbs.on_round_end(row):
                    status = "stopped"
                    break
    except KeyboardInterrupt:
        # `good` is the last completed round unless the interrupt came between rounds.
        done = len(history) and history.last().get("round") == round_
        last = loop.snapshot(round_, server, states) if done else good
        save(last, "interrupted", f"interrupted after round {last.round}; resume with --resume")
        raise
    finally:
        backend.close()
        cbs.on_run_end(history.rows)
        history.close()
    save(loop.snapshot(round_, server, states), status)
    return SimulationResult(history, server, status, run_dir, states)


def _start(loop: _Loop, run_dir: RunDir | None, resume: bool) -> tuple[History, Checkpoint]:
    if resume:
        if run_dir is None:
            raise ValueError("resume=True needs the run_dir to resume from")
        ck = Checkpoint.load(run_dir.checkpoint_path)
        kept = [
            r
            for r in run_dir.history().rows
            if isinstance(r.get("round"), int) and int(r["round"] or 0) <= ck.round
        ]
        return History(run_dir.history_path, kept), ck
    ck = loop.initial()
    history = History(run_dir.history_path if run_dir is not None else None)
    row: Row = {
        "round": 0,
        "clients": 0,
        "up_bits": 0.0,
        "down_bits": 0.0,
        "cum_up_bits": 0.0,
        "cum_down_bits": 0.0,
        "cum_bits": 0.0,
        "bits_per_client": 0.0,
        "oracle_samples": 0.0,
        "cum_oracle_samples": 0.0,
        "round_s": 0.0,
        "wall_s": 0.0,
    }
    row.update(loop.evaluate(ck.server, 0, False))
    history.append(row)
    return history, ck


def _brief(row: Row) -> str:
    parts = []
    for k in ("train_loss", "test_acc", "grad_norm", "dist_to_opt"):
        v = row.get(k)
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
    return " ".join(parts)
