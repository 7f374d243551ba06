"""``simulate``: the one round loop of the federated simulator.

Per round, in order: draw the cohort from the sampling stream of that round; plan who drops
out; run the uploading clients' updates on the backend; aggregate their uplinks (plain or
secure, :mod:`phloem.fl.aggregation`); commit the clients' states and update the server only if
the aggregation produced an aggregate; account bits and oracle work; evaluate; record the row
(flushed to disk); call callbacks; checkpoint. A diverging (NaN/inf) or interrupted run saves its
history and a checkpoint of the last good round before it stops. The steps of a round are in
:mod:`phloem.fl.rounds`; the files a run keeps in :mod:`phloem.fl.record`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from phloem.core.callbacks import Callback, CallbackList
from phloem.core.errors import ConfigError, DivergenceError
from phloem.core.history import History, Row
from phloem.core.progress import progress_bar
from phloem.core.rng import SeedStreams
from phloem.core.rundir import RunDir
from phloem.fl.aggregation import Aggregation, PlainAggregation
from phloem.fl.algorithms.base import Algorithm
from phloem.fl.backends import Backend, SerialBackend
from phloem.fl.problem import Problem
from phloem.fl.record import TIMING_KEYS, Checkpoint, Recorder, RoundRecord, Totals
from phloem.fl.rounds import Rounds
from phloem.fl.sampling import ClientSampler

if TYPE_CHECKING:
    from phloem.fl.privacy import PrivacyLedger

__all__ = ["TIMING_KEYS", "Checkpoint", "SimulationResult", "simulate"]


@dataclass
class SimulationResult:
    """The outcome of :func:`simulate`."""

    history: History
    server: Any
    status: str  # finished | stopped (callback)
    run_dir: RunDir | None = None
    client_states: list[Any] = field(default_factory=list, repr=False)
    #: the privacy parameters (``None``: no privacy mechanism); ``epsilon`` is in the history
    privacy: dict[str, Any] | None = None

    @property
    def x(self) -> torch.Tensor:
        x: torch.Tensor = self.server.x
        return x


def simulate(
    problem: Problem,
    algorithm: Algorithm[Any, Any, Any],
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
    aggregator: Aggregation | None = None,
    divergence_factor: float = 1e6,
    privacy: PrivacyLedger | None = None,
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
        How the server receives the uplinks: plain or secure aggregation, with a dropout
        model (:mod:`phloem.fl.aggregation`, :mod:`phloem.fl.secure`); ``None`` is plain
        aggregation of every sampled client.
    divergence_factor
        The run has diverged when its training loss exceeds this factor times the largest of
        its first and best magnitudes (0: only a non-finite loss or model counts).
    privacy
        The ledger of a privacy mechanism (:mod:`phloem.fl.privacy`, whose
        :class:`~phloem.fl.privacy.PrivateAggregation` is the ``aggregator``): every round's
        row gets the ``epsilon`` spent so far; the run record gets the privacy parameters. A
        resumed run rebuilds it from the kept history.

    Raises
    ------
    DivergenceError
        The model or its training loss became NaN/inf, or the loss exploded past
        ``divergence_factor``; history and the last good checkpoint were saved first.
    KeyboardInterrupt
        Re-raised after saving history and a checkpoint of the last completed round.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if not (math.isfinite(divergence_factor) and divergence_factor >= 0):
        raise ValueError(f"divergence_factor must be >= 0, got {divergence_factor}")
    watch = _LossWatch(divergence_factor)
    # hyper-parameters left empty for the theory to set (ProxSkip's p); a no-op for most
    algorithm = algorithm.with_constants(problem.smoothness)
    streams = seed if isinstance(seed, SeedStreams) else SeedStreams(seed)
    loop = Rounds(
        problem,
        algorithm,
        sampler,
        streams,
        backend or SerialBackend(),
        aggregator or PlainAggregation(),
        eval_every,
        full_eval,
    )
    summary = {"algorithm": algorithm.describe(), "rounds": rounds, "seed": streams.seed}
    if privacy is not None:
        summary["privacy"] = privacy.describe()
    rec = Recorder(run_dir, checkpoint_every, summary)
    st = rec.resume() if resume else _begin(loop, rec)
    if st.round > rounds:
        raise ConfigError(
            "run.rounds",
            f"is {rounds}, but the resumed run's checkpoint is at round {st.round}; "
            f"give run.rounds >= {st.round} to continue it",
        )
    if privacy is not None and resume:
        privacy.restore(rec.history.rows)
    cbs = CallbackList(callbacks)
    cbs.on_run_start({"round": st.round, "rounds": rounds, "resumed": resume})
    status, good = "finished", st.snapshot()
    try:
        loop.backend.open(problem, algorithm, streams)
        with progress_bar(rounds - st.round, algorithm.name, enabled=progress) as bar:
            while st.round < rounds:
                good = st.snapshot()
                row = loop.play(st).row()
                if privacy is not None:
                    row.update(privacy.record(row))
                why = (
                    "the model has NaN/inf entries"
                    if not loop.finite(st.server)
                    else watch.check(row.get("train_loss") if row.get("clients") else None)
                )
                if why is not None:
                    raise DivergenceError(rec.diverged(row, good, why))
                row.update(loop.evaluate(st.server, st.round, st.round == rounds))
                rec.append(row, st)
                bar.advance(info=_brief(row))
                if cbs.on_round_end(row):
                    status = "stopped"
                    break
    except KeyboardInterrupt:
        # `good` is the last completed round unless the interrupt came between rounds.
        rec.interrupted(st, good)
        raise
    finally:
        loop.backend.close()
        cbs.on_run_end(rec.history.rows)
        rec.close()
    rec.save(st.snapshot(), status)
    described = privacy.describe() if privacy is not None else None
    return SimulationResult(rec.history, st.server, status, run_dir, st.client_states, described)


def _begin(loop: Rounds, rec: Recorder) -> Checkpoint:
    """Round 0's state, and its row (the initial model evaluated) as the history's first."""
    st = loop.initial()
    row = RoundRecord(0, 0, Totals(), num_clients=loop.problem.num_clients).row()
    row.update(loop.evaluate(st.server, 0, False))
    rec.begin(row)
    return st


def _brief(row: Row) -> str:
    parts = []
    for k in ("train_loss", "test_acc", "grad_norm", "dist_to_opt"):
        v = row.get(k)
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
    return " ".join(parts)


class _LossWatch:
    """Notices a training loss that is not finite, or that exploded past ``factor`` times the
    largest of the first nonzero and the best loss magnitudes seen (``factor`` 0: only
    non-finite)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.first: float | None = None
        self.best = math.inf

    def check(self, loss: object) -> str | None:
        """Why the run diverged at this ``loss`` (``None``: it did not)."""
        if not isinstance(loss, float):
            return None
        if not math.isfinite(loss):
            return f"the training loss is {loss}"
        if not self.first:
            # A first loss of exactly 0 (the quadratic's f(0) at x0 = 0) is no magnitude: the
            # next loss would "explode" past factor x 1e-12. The first nonzero one is the scale.
            self.first = loss
        self.best = min(self.best, loss)
        scale = max(abs(self.first), abs(self.best), 1e-12)
        if self.factor and loss > self.factor * scale:
            return (
                f"the training loss {loss:.3g} exploded past {self.factor:g} x {scale:.3g} "
                "(its first or best magnitude)"
            )
        return None
