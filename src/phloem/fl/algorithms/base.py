"""The algorithm contract: FL_PyTorch's decomposition made explicit and typed.

An algorithm is a frozen dataclass of hyper-parameters, registered by name (``[algorithm] name``
in a config, with its own ``Params``), with four methods:

- ``init_server(x0, client_states, weights)`` builds the server state;
- ``init_client(x0, oracle, gen)`` (optional) builds a client's persistent state;
- ``client_update(server, state, oracle, rng)`` returns the client's :class:`Message`, whose
  ``uplink`` is the algorithm's own frozen dataclass of named tensors (an :class:`Uplink`), and
  its new state;
- ``server_update(server, aggregate, gen)`` returns the next server state from the cohort's
  :class:`Aggregate`: the weighted mean or weighted total of any uplink field, whether the
  uplinks arrived one by one or only as a securely aggregated sum.

and, optionally, ``begin_round`` and ``round_cohort`` (the state broadcast and the clients of a
round, given the sampled ones: MARINA's synchronisation rounds, COFIG's second cohort) and,
where a convergence theorem gives one, ``theory_step(smoothness, dim)``: the largest step size
it allows. :func:`phloem.fl.simulate` owns everything else (sampling, bit accounting,
metrics, callbacks, checkpoints), so an algorithm module reads like the paper's pseudocode.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import numpy as np
import torch

from phloem.core.errors import ConfigError
from phloem.core.registry import NoParams, as_mapping
from phloem.core.rng import SeedStreams, Stage
from phloem.fl.compressors.base import FLOAT_BITS, Compressor
from phloem.fl.problem import ClientOracle
from phloem.fl.schedules import LrSchedules
from phloem.fl.server_opt import OptState, ServerOptimizer, ServerSGD
from phloem.fl.theory import Smoothness

__all__ = [
    "Aggregate",
    "Algorithm",
    "ClientRng",
    "Cohort",
    "Message",
    "ModelServer",
    "ServerState",
    "Uplink",
    "WeightedAggregate",
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

    @property
    def client(self) -> int:
        """The client's id (for methods whose broadcast addresses clients apart, e.g. PP-MARINA's
        multiplicities)."""
        return self._client

    @cached_property
    def local(self) -> torch.Generator:
        """Stream ``(CLIENT, round, client)``: shuffles, minibatches."""
        return self._streams.torch(Stage.CLIENT, self._round, self._client)

    @cached_property
    def compression(self) -> torch.Generator:
        """Stream ``(COMPRESSION, round, client)``: the compressor's draws."""
        return self._streams.torch(Stage.COMPRESSION, self._round, self._client)


@dataclass(frozen=True)
class Uplink:
    """Base of an algorithm's uplink: a frozen dataclass whose fields are all tensors.

    Secure aggregation sums uplinks as one vector: :meth:`flatten` concatenates the fields in
    declaration order and :meth:`unflatten` cuts such a vector back into fields.
    """

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` of every field, in declaration order."""
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]

    def flatten(self) -> torch.Tensor:
        """Every field, flattened and concatenated in declaration order."""
        return torch.cat([t.reshape(-1) for _, t in self.tensors()])

    def unflatten(self, flat: np.ndarray) -> Self:
        """An uplink of this one's type, fields, shapes and dtypes, with values from ``flat``."""
        values: dict[str, torch.Tensor] = {}
        offset = 0
        for name, ref in self.tensors():
            part = flat[offset : offset + ref.numel()]
            values[name] = torch.from_numpy(part.copy()).to(ref.dtype).reshape(ref.shape)
            offset += ref.numel()
        if offset != flat.size:
            raise ValueError(f"{type(self).__name__} holds {offset} entries, got {flat.size}")
        return type(self)(**values)


U = TypeVar("U", bound=Uplink)


@dataclass(frozen=True)
class Message(Generic[U]):
    """What one client sends up.

    Attributes
    ----------
    uplink
        The algorithm's named tensors as the server reconstructs them (after compression).
    bits
        Uplink bits for this message.
    loss
        Training loss the client observed this round.
    samples
        Per-sample gradients the client computed.
    """

    uplink: U
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

    def subset(self, keep: np.ndarray) -> Cohort:
        """The members where the boolean mask ``keep`` is true."""
        return Cohort(self.ids[keep], self.weights[keep], self.num_clients)


def weighted_sum(tensors: Sequence[torch.Tensor], weights: np.ndarray) -> torch.Tensor:
    """``sum_j weights[j] * tensors[j]`` accumulated in order."""
    acc = torch.zeros_like(tensors[0])
    for t, w in zip(tensors, weights, strict=True):
        acc.add_(t, alpha=float(w))
    return acc


class Aggregate(ABC, Generic[U]):
    """What the server learns from a round's cohort: weighted sums of its uplinks' fields.

    With weights ``w_j`` (the clients' weights in the objective) and ``W = sum_j w_j``:
    :meth:`mean` is ``sum_j (w_j / W) u_j`` and :meth:`total` is ``sum_j w_j u_j``, for the
    uplink field that ``field`` selects (e.g. ``lambda u: u.delta``).
    """

    @abstractmethod
    def mean(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        """The weighted mean of a field over the cohort."""

    @abstractmethod
    def total(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        """The weighted total of a field over the cohort."""


@dataclass(frozen=True)
class WeightedAggregate(Aggregate[U]):
    """The cohort's uplinks one by one (plain aggregation): both sums taken exactly."""

    uplinks: Sequence[U]
    cohort: Cohort

    def mean(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        return weighted_sum([field(u) for u in self.uplinks], self.cohort.normalised)

    def total(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        return weighted_sum([field(u) for u in self.uplinks], self.cohort.weights)


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
class Algorithm(ABC, Generic[S, C, U]):
    """Base class of every federated algorithm (see the module docstring).

    A subclass declares ``name``, a one-line ``description`` (paper and year) and ``Params``
    (its own hyper-parameters, :class:`~phloem.core.registry.NoParams` when it has none), and
    registers with ``@ALGORITHMS.register``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    #: Uplink vectors compressed by ``compressor``; ``None`` sends them in full.
    compressor: Compressor | None = field(default=None, kw_only=True)
    #: How the server steps along the aggregated direction (its ``lr`` is the global step size).
    server_opt: ServerOptimizer = field(default_factory=ServerSGD, kw_only=True)
    #: Whether :meth:`theory_step` bounds the clients' step (``[local] lr``, local methods)
    #: rather than the server's (``[server] lr``); ``lr_rule = "theory"`` sets that one.
    theory_bounds_local_step: ClassVar[bool] = False
    #: Round-by-round multipliers of ``local.lr`` and ``server_opt.lr`` (``None``: as configured).
    lr_schedules: LrSchedules | None = field(default=None, kw_only=True)

    @classmethod
    def from_params(
        cls,
        params: Any,
        *,
        local: Any,
        compressor: Compressor | None,
        server_opt: ServerOptimizer,
    ) -> Self:
        """The algorithm with its config parameters and its parts."""
        return cls(  # type: ignore[call-arg]
            local=local, compressor=compressor, server_opt=server_opt, **as_mapping(params)
        )

    def at_round(self, k: int) -> Self:
        """This algorithm with round ``k``'s step sizes from :attr:`lr_schedules` (itself when
        there are none); the round loop and the backends call the client and server updates of
        round ``k`` on it, so no algorithm needs to know about schedules."""
        s = self.lr_schedules
        if s is None or s.is_constant:
            return self
        # every client of a round asks: build the round's copy once (per process)
        memo: dict[str, Any] = getattr(self, "__dict__", {})
        cached: tuple[int, Self] | None = memo.get("_at_round")
        if cached is not None and cached[0] == k:
            return cached[1]
        algo = s.at_round(self, k, lr_schedules=None)
        if hasattr(self, "__dict__"):
            object.__setattr__(self, "_at_round", (k, algo))
        return algo

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
    ) -> tuple[Message[U], C]:
        """One client's work in a round."""

    @abstractmethod
    def server_update(self, server: S, aggregate: Aggregate[U], gen: np.random.Generator) -> S:
        """The next server state from the cohort's aggregate."""

    def begin_round(
        self, server: S, sampled: np.ndarray, num_clients: int, gen: np.random.Generator
    ) -> S:
        """The server state broadcast this round, knowing the sampled clients (default: as is).

        For methods whose broadcast tells clients their part in the round (COFIG's second,
        independent cohort); ``gen`` is the round's own stream, independent of the sampler's.
        """
        return server

    def round_cohort(self, server: S, sampled: np.ndarray, num_clients: int) -> np.ndarray:
        """The clients that take part this round (default: the sampled cohort)."""
        return sampled

    def downlink_bits(self, server: S) -> int:
        """Bits the server sends to each participant (default: the model)."""
        return FLOAT_BITS * server.x.numel()

    def theory_step(self, smoothness: Smoothness, dim: int) -> float | None:
        """The largest step size the method's convergence theorem allows (``None``: none here).

        Raises
        ------
        ConfigError
            When the configured compressor does not meet the theorem's assumptions.
        """
        return None

    def with_constants(self, smoothness: Callable[[], Smoothness | None]) -> Self:
        """This algorithm with the hyper-parameters left empty that the theory sets from the
        problem's constants (``smoothness()``, called only when needed) filled in (default:
        itself; ProxSkip's ``p``)."""
        return self

    def with_theory_step(self, step: float) -> Self:
        """This algorithm with ``step`` (from :meth:`theory_step`) as its step size.

        The server SGD's ``lr`` (the global step of gradient-type methods), or the local
        solver's ``lr`` where the theorem bounds the clients' step
        (:attr:`theory_bounds_local_step`: FedAvg, SCAFFOLD, ProxSkip), at the configured
        server step.

        Raises
        ------
        ConfigError
            When the server optimiser is not SGD.
        """
        if not isinstance(self.server_opt, ServerSGD):
            raise ConfigError("server.lr_rule", "'theory' applies to the sgd server optimiser")
        if self.theory_bounds_local_step:
            local = dataclasses.replace(self.local, lr=step)  # type: ignore[attr-defined]
            return dataclasses.replace(self, local=local)  # type: ignore[call-arg]
        return dataclasses.replace(self, server_opt=dataclasses.replace(self.server_opt, lr=step))

    @classmethod
    def has_theory_step(cls) -> bool:
        """Whether :meth:`theory_step` is implemented."""
        return cls.theory_step is not Algorithm.theory_step

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters for the run record."""
        return {"name": self.name, "spec": repr(self)}
