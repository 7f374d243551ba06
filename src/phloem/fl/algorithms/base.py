"""The algorithm contract: FL_PyTorch's decomposition made explicit and typed.

An algorithm is a frozen dataclass of hyper-parameters with four methods:

- ``init_server(x0, client_states, weights)`` builds the server state;
- ``init_client(x0, oracle, gen)`` (optional) builds a client's persistent state;
- ``client_update(server, state, oracle, rng)`` returns the client's message and new state;
- ``server_update(server, messages, cohort, gen)`` returns the next server state.

:func:`phloem.fl.simulate` owns everything else (sampling, bit accounting, metrics, callbacks,
checkpoints), so an algorithm module reads like the paper's pseudocode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import torch

from phloem.core.rng import SeedStreams, Stage
from phloem.fl.compressors.base import FLOAT_BITS, Compressor
from phloem.fl.problem import ClientOracle
from phloem.fl.server_opt import OptState, ServerOptimizer, ServerSGD

__all__ = [
    "Algorithm",
    "ClientRng",
    "Cohort",
    "Message",
    "ModelServer",
    "ServerState",
    "compress",
    "weighted_sum",
]


class ServerState(Protocol):
    """What every server state has: the current model ``x``."""

    @property
    def x(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class ModelServer:
    """The server state of methods that keep only the model and the optimiser's buffers."""

    x: torch.Tensor
    opt: OptState = field(default_factory=OptState)


class ClientRng:
    """A client's generators for one round: local computation and compression.

    Each is derived from the run's streams on first use (deriving one costs ~10 us, which
    matters when a round's clients take ~100 us), e.g. no compression generator is made for
    an algorithm without a compressor.
    """

    def __init__(self, streams: SeedStreams, round_: int, client: int) -> None:
        self._streams, self._round, self._client = streams, round_, client

    @cached_property
    def local(self) -> torch.Generator:
        """Stream ``(CLIENT, round, client)``: shuffles, minibatches."""
        return self._streams.torch(Stage.CLIENT, self._round, self._client)

    @cached_property
    def compression(self) -> torch.Generator:
        """Stream ``(COMPRESSION, round, client)``: the compressor's draws."""
        return self._streams.torch(Stage.COMPRESSION, self._round, self._client)


@dataclass(frozen=True)
class Message:
    """What one client sends up.

    Attributes
    ----------
    vectors
        Named vectors as the server reconstructs them (after compression).
    bits
        Uplink bits for this message.
    loss
        Training loss the client observed this round.
    samples
        Per-sample gradients the client computed.
    """

    vectors: dict[str, torch.Tensor]
    bits: int
    loss: float
    samples: int


@dataclass(frozen=True)
class Cohort:
    """The clients of a round and their weights in the global objective."""

    ids: np.ndarray
    weights: np.ndarray  # w_i of each member (not renormalised)
    num_clients: int

    @property
    def normalised(self) -> np.ndarray:
        """Weights renormalised to sum to one over the cohort."""
        total = float(self.weights.sum())
        return self.weights / total if total > 0 else self.weights


def weighted_sum(messages: Sequence[Message], key: str, weights: np.ndarray) -> torch.Tensor:
    """``sum_j weights[j] * messages[j].vectors[key]`` accumulated in cohort order."""
    acc = torch.zeros_like(messages[0].vectors[key])
    for m, w in zip(messages, weights, strict=True):
        acc.add_(m.vectors[key], alpha=float(w))
    return acc


def compress(
    compressor: Compressor | None, v: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, int]:
    """``(C(v), bits)``, or ``(v, 32 d)`` when no compressor is configured."""
    if compressor is None:
        return v, FLOAT_BITS * v.numel()
    out = compressor.compress(v, gen)
    return out.value, out.bits


S = TypeVar("S", bound=ServerState)
C = TypeVar("C")


@dataclass(frozen=True)
class Algorithm(ABC, Generic[S, C]):
    """Base class of every federated algorithm (see the module docstring)."""

    name: ClassVar[str]
    #: Uplink vectors compressed by ``compressor``; ``None`` sends them in full.
    compressor: Compressor | None = field(default=None, kw_only=True)
    #: How the server steps along the aggregated direction (its ``lr`` is the global step size).
    server_opt: ServerOptimizer = field(default_factory=ServerSGD, kw_only=True)

    @abstractmethod
    def init_server(self, x0: torch.Tensor, client_states: Sequence[C], weights: np.ndarray) -> S:
        """Server state at round 0, given every client's initial state and weight ``w_i``."""

    def init_client(self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator) -> C:
        """Persistent client state at round 0 (``None`` when the method keeps none)."""
        return None  # type: ignore[return-value]

    @property
    def stateful_clients(self) -> bool:
        """Whether clients keep state between rounds (default: ``init_client`` overridden)."""
        return type(self).init_client is not Algorithm.init_client

    @abstractmethod
    def client_update(
        self, server: S, state: C, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message, C]:
        """One client's work in a round."""

    @abstractmethod
    def server_update(
        self, server: S, messages: Sequence[Message], cohort: Cohort, gen: np.random.Generator
    ) -> S:
        """Aggregate the cohort's messages into the next server state."""

    def round_cohort(self, server: S, sampled: np.ndarray, num_clients: int) -> np.ndarray:
        """The clients that take part this round (default: the sampled cohort)."""
        return sampled

    def downlink_bits(self, server: S) -> int:
        """Bits the server sends to each participant (default: the model)."""
        return FLOAT_BITS * server.x.numel()

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters for the run record."""
        return {"name": self.name, "spec": repr(self)}
