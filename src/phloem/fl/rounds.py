"""The named steps of one simulator round (:func:`phloem.fl.simulate` calls them in order).

``play`` is the round: draw the cohort from the round's sampling stream; plan who drops out;
run the uploading clients on the backend; aggregate their uplinks; commit the clients' states and
update the server only if the aggregation produced an aggregate; ``account`` builds the round's
typed record (bits, oracle work, loss, time).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from phloem.core.history import Row
from phloem.core.rng import SeedStreams, Stage
from phloem.fl.aggregation import Aggregation, RoundOutcome
from phloem.fl.algorithms.base import Algorithm, Cohort
from phloem.fl.backends import Backend, ClientResult
from phloem.fl.problem import Problem
from phloem.fl.record import Checkpoint, RoundRecord, Totals
from phloem.fl.sampling import ClientSampler

__all__ = ["Rounds"]


@dataclass(frozen=True)
class Rounds:
    """The parts of one run; each method is one named step of a round."""

    problem: Problem
    algorithm: Algorithm[Any, Any, Any]
    sampler: ClientSampler
    streams: SeedStreams
    backend: Backend
    aggregation: Aggregation
    eval_every: int
    full_eval: bool

    def initial(self) -> Checkpoint:
        """Round 0: the initial model, client states and server state."""
        p, a = self.problem, self.algorithm
        x0 = p.initial_point(self.streams.torch(Stage.MODEL_INIT))
        states: list[Any] = [None] * p.num_clients
        if a.stateful_clients:
            states = [
                a.init_client(x0, p.client(i), self.streams.torch(Stage.CLIENT_INIT, i))
                for i in range(p.num_clients)
            ]
        return Checkpoint(0, a.init_server(x0, states, p.weights), states, Totals())

    def cohort(self, server: Any, round_: int) -> tuple[Any, Cohort]:
        """The server state as broadcast this round and the round's clients, from the sampling
        stream of that round (and its sub-stream 1 for :meth:`Algorithm.begin_round`)."""
        n, a = self.problem.num_clients, self.algorithm
        sampled = self.sampler.cohort(round_, n, self.streams.numpy(Stage.SAMPLING, round_))
        if type(a).begin_round is not Algorithm.begin_round:
            server = a.begin_round(
                server, sampled, n, self.streams.numpy(Stage.SAMPLING, round_, 1)
            )
        ids = np.asarray(a.round_cohort(server, sampled, n), dtype=np.int64)
        return server, Cohort(ids, self.problem.weights[ids], n)

    def train(
        self, server: Any, round_: int, cohort: Cohort, states: list[Any]
    ) -> list[ClientResult]:
        """The cohort's client updates (messages and new states, not yet committed)."""
        if not len(cohort.ids):
            return []
        return self.backend.run_round(server, round_, [(int(i), states[i]) for i in cohort.ids])

    def play(self, st: Checkpoint) -> RoundRecord:
        """One round: advances ``st`` in place and returns the round's record."""
        t0 = time.perf_counter()
        r = st.round + 1
        st.server, cohort = self.cohort(st.server, r)
        results: list[ClientResult] = []
        outcome: RoundOutcome[Any] = RoundOutcome(None, 0.0)
        gen = self.streams.numpy(Stage.AGGREGATION, r)
        if len(cohort.ids):
            plan = self.aggregation.plan(cohort, gen)
            cohort = plan.uploading
            results = self.train(st.server, r, cohort, st.client_states)
            outcome = self.aggregation.aggregate(plan, [m for m, _ in results], r, gen)
        if not results:
            outcome = self.aggregation.nothing_uploaded(st.server, outcome, gen)
        down = float(self.algorithm.downlink_bits(st.server) * len(cohort.ids))
        if outcome.aggregate is not None:
            for i, (_, state) in zip(cohort.ids, results, strict=True):
                st.client_states[i] = state
            gen = self.streams.numpy(Stage.SERVER, r)
            algo = self.algorithm.at_round(r)  # the round's step sizes (phloem.fl.schedules)
            st.server = algo.server_update(st.server, outcome.aggregate, gen)
        return self.account(st, cohort, results, outcome, down, t0)

    def account(
        self,
        st: Checkpoint,
        cohort: Cohort,
        results: Sequence[ClientResult],
        outcome: RoundOutcome[Any],
        down: float,
        t0: float,
    ) -> RoundRecord:
        """Bits, oracle work, loss and time of the round just played; advances ``st``."""
        messages = [m for m, _ in results]
        samples = float(sum(m.samples for m in messages))
        w = cohort.normalised
        loss = float(sum(float(wi) * m.loss for wi, m in zip(w, messages, strict=True)))
        t, dt = st.totals, time.perf_counter() - t0
        t = Totals(t.up + outcome.up_bits, t.down + down, t.samples + samples, t.wall + dt)
        st.round, st.totals = st.round + 1, t
        return RoundRecord(
            st.round,
            len(cohort.ids),
            t,
            up_bits=outcome.up_bits,
            down_bits=down,
            oracle_samples=samples,
            train_loss=loss if messages else math.nan,
            aggregation=outcome.stats,
            round_s=dt,
            num_clients=self.problem.num_clients,
        )

    def evaluate(self, server: Any, round_: int, last: bool) -> Row:
        """Test metrics (and the full objective when asked) every ``eval_every`` rounds."""
        if not (round_ % self.eval_every == 0 or last):
            return {}
        t0 = time.perf_counter()
        row: Row = dict(self.problem.evaluate(server.x, full=self.full_eval))
        row["eval_s"] = time.perf_counter() - t0
        return row

    def finite(self, server: Any) -> bool:
        return bool(torch.isfinite(server.x).all())
