"""FedNova: normalised averaging of local updates.

Wang, Liu, Liang, Joshi, Poor. "Tackling the Objective Inconsistency Problem in Heterogeneous
Federated Optimization." NeurIPS 2020 (FedNova, Sec. 4, with vanilla local SGD).

Client ``i`` runs ``a_i`` local steps from the server model ``x`` to ``y_i`` and sends the
normalised update ``d_i = (x - y_i) / a_i`` and ``a_i``. With ``p_i`` the cohort's normalised
weights, the server forms ``tau_eff = sum_i p_i a_i`` and steps along
``tau_eff sum_i p_i d_i`` with its server optimiser (``server.lr = 1``: the paper's update
``x <- x - tau_eff sum_i p_i d_i``). Both sums are weighted means of uplink fields, so the method
works under secure aggregation.

Why: FedAvg with different numbers of local steps averages ``y_i - x ~ -eta a_i grad f_i``, so
it converges to a stationary point of ``sum_i p_i a_i f_i``, not of ``f = sum_i p_i f_i``
(objective inconsistency), however small the local step. FedNova's fixed point solves
``sum_i p_i d_i(x) = 0``, whose gap to ``x*`` is ``O(eta)`` (the drift of local gradient
descent) and vanishes as ``eta -> 0``.

Local steps: ``local_steps = "uniform:LO:HI"`` draws ``a_i`` once per client, uniformly from the
integers ``LO..HI`` (so the local solver must take a ``steps`` key: ``full`` or ``sgd``);
empty uses the solver's own count for the client's data (``sgd`` with ``epochs``: proportional
to the client's size, FedNova's main example). ``normalize = false`` sends ``y_i - x`` with
``a_i = 1``: FedAvg with the same heterogeneous steps, the inconsistent baseline.

No theory step size (``server.lr_rule = "theory"`` says so): the paper's non-convex theorem
takes a learning rate that shrinks with the horizon (of order ``sqrt(m / (tau_bar T))`` for
``m`` clients a round, mean local steps ``tau_bar`` and ``T`` rounds) under stochastic gradients,
with a smallness condition on ``eta L`` whose constant is not reproduced here; it gives no
constant step to set from ``L`` alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.fl.algorithms.base import (
    Aggregate,
    Algorithm,
    ClientRng,
    Message,
    ModelServer,
    Uplink,
    compress,
)
from phloem.fl.compressors.base import FLOAT_BITS
from phloem.fl.local import LocalSolver, MinibatchSGD
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS

__all__ = ["FedNova", "FedNovaParams", "NormalizedUpdate", "parse_steps"]

_UNIFORM = re.compile(r"^uniform:(\d+):(\d+)$")


def parse_steps(spec: str) -> tuple[int, int]:
    """``(LO, HI)`` of ``"uniform:LO:HI"`` with ``1 <= LO <= HI``.

    Raises
    ------
    ValueError
        Naming ``algorithm.local_steps`` and the expected form.
    """
    m = _UNIFORM.match(spec.strip())
    if m is None or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(
            f"algorithm.local_steps must be 'uniform:LO:HI' with integers 1 <= LO <= HI, "
            f"got {spec!r}"
        )
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class FedNovaParams:
    """``local_steps``: ``"uniform:LO:HI"`` draws each client's number of local steps once
    (empty: the local solver's own count); ``normalize``: false gives FedAvg with the same
    steps."""

    local_steps: str | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.local_steps is not None:
            parse_steps(self.local_steps)


@dataclass(frozen=True)
class NormalizedUpdate(Uplink):
    """``d = (x - y_i) / a_i`` (compressed) and ``a = [a_i]``, the client's local steps."""

    d: torch.Tensor
    a: torch.Tensor


@ALGORITHMS.register
@dataclass(frozen=True)
class FedNova(Algorithm[ModelServer, int, NormalizedUpdate]):
    """FedNova; the client state is its number of local steps ``a_i``, fixed at the start."""

    name: ClassVar[str] = "fednova"
    description: ClassVar[str] = "normalised averaging of local updates (Wang et al., NeurIPS 2020)"
    Params: ClassVar[type[FedNovaParams]] = FedNovaParams
    local: LocalSolver = field(default_factory=MinibatchSGD)
    local_steps: str | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        FedNovaParams(self.local_steps, self.normalize)
        if self.local_steps is not None and not (
            dataclasses.is_dataclass(self.local)
            and "steps" in {f.name for f in dataclasses.fields(self.local)}
        ):
            raise ValueError(
                f"algorithm.local_steps needs a local solver with a steps key (full, sgd), "
                f"not {self.local.name}"
            )

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[int], weights: np.ndarray
    ) -> ModelServer:
        return ModelServer(x0)

    def init_client(self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator) -> int:
        if self.local_steps is None:
            return self.local.num_steps(oracle.num_samples)
        lo, hi = parse_steps(self.local_steps)
        return int(torch.randint(lo, hi + 1, (), generator=gen))

    def solver(self, steps: int) -> LocalSolver:
        """The local solver taking ``steps`` steps."""
        if self.local_steps is None:
            return self.local
        return dataclasses.replace(self.local, steps=steps)  # type: ignore[type-var]

    def client_update(
        self, server: ModelServer, state: int, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[NormalizedUpdate], int]:
        res = self.solver(state).run(oracle, server.x, rng.local)
        a = float(res.steps) if self.normalize else 1.0
        d, bits = compress(self.compressor, (server.x - res.x) / a, rng.compression)
        uplink = NormalizedUpdate(d, torch.full((1,), a, dtype=server.x.dtype))
        return Message(uplink, bits + FLOAT_BITS, res.loss, res.samples), state

    def server_update(
        self, server: ModelServer, aggregate: Aggregate[NormalizedUpdate], gen: np.random.Generator
    ) -> ModelServer:
        tau_eff = aggregate.mean(lambda u: u.a)
        direction = tau_eff * aggregate.mean(lambda u: u.d)
        x, opt = self.server_opt.step(server.x, direction, server.opt)
        return ModelServer(x, opt)
