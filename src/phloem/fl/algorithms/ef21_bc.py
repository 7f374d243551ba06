"""EF21-BC: EF21 with bidirectional compression.

Fatkhullin, Sokolov, Gorbunov, Li, Richtarik. "EF21 with Bells & Whistles: Practical Algorithmic
Extensions of Modern Error Feedback." 2021 (arXiv:2110.03294), Algorithm EF21-BC.

Uplink as EF21: client ``i`` keeps ``g~_i`` and sends ``c_i = C_w(grad f_i(x^{t+1}) - g~_i)``,
then ``g~_i += c_i``; the server keeps ``g~ = sum_i w_i g~_i`` exactly. Downlink with error
feedback too: the server and every client hold the same estimate ``g^t``; the server broadcasts
only

    b^{t+1} = C_M(g~^{t+1} - g^t),       g^{t+1} = g^t + b^{t+1},

and everyone steps ``x^{t+2} = x^{t+1} - gamma g^{t+1}`` locally, so the model itself never
travels after the start. ``C_w`` is ``[compressor]``, ``C_M`` is ``[downlink]`` (any contractive
compressor, e.g. ``topk``; ``none`` sends ``g~^{t+1} - g^t`` in full, which is EF21). Start:
``g~_i^0 = C_w(grad f_i(x^0))`` (not counted, as in EF21) and ``g^0 = g~^0`` sent in full, so the
first round's downlink is ``32 d`` bits a client and every later one the bits of ``b``.

Every client must receive every broadcast to keep ``x`` in step, so EF21-BC runs with full
participation, as in the paper (``[sampling] scheme = "full"``; the cohort is every client).

Theory step: with an uncompressed broadcast (``[downlink] name = "none"``, ``alpha_M = 1``)
EF21-BC is EF21, and ``server.lr_rule = "theory"`` gives EF21's step
``1 / (L + L_tilde sqrt(beta / theta))`` for ``C_w``'s ``alpha`` (Richtarik, Sokolov,
Fatkhullin, NeurIPS 2021, Theorem 1; :func:`phloem.fl.theory.ef21_step`). With a compressed
broadcast there is none: the paper's EF21-BC theorem bounds the step through constants that
couple ``alpha_w`` and ``alpha_M``, which are not reproduced in phloem (it says so, naming
``downlink.name``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.core.errors import ConfigError
from phloem.fl import theory
from phloem.fl.algorithms.base import (
    Aggregate,
    Algorithm,
    ClientRng,
    Message,
    compress,
    weighted_sum,
)
from phloem.fl.algorithms.ef21 import ErrorFeedback
from phloem.fl.compressors.base import FLOAT_BITS, Compressor
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["EF21BC", "EF21BCServer"]


@dataclass(frozen=True)
class EF21BCServer:
    """``x = x^{t+1}``, the broadcast estimate ``g = g^t``, the exact ``g~ = sum_i w_i g~_i``
    (``tracked``), and the bits of the broadcast that produced ``g`` (``down``)."""

    x: torch.Tensor
    g: torch.Tensor
    tracked: torch.Tensor
    down: int
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class EF21BC(Algorithm[EF21BCServer, torch.Tensor, ErrorFeedback]):
    """EF21-BC: error feedback on the uplink and on the server's broadcast."""

    name: ClassVar[str] = "ef21_bc"
    #: both ways need contractive compressors (``alpha > 0``; checked by ``phloem fl run``)
    contractive_only: ClassVar[bool] = True
    description: ClassVar[str] = "EF21, compressed up and down (Fatkhullin et al., 2021)"
    #: why the method picks its own cohort (``[sampling]`` must be ``full``)
    own_cohort: ClassVar[str] = "needs every client every round (each must hear every broadcast)"
    local: LocalSolver = field(default_factory=FullGradient)
    #: ``C_M``, the server's broadcast compressor (``[downlink]``); ``None`` sends it in full
    downlink: Compressor | None = None

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        gr = self.local.gradient(oracle, x0, gen)
        g, _ = compress(self.compressor, gr.grad, gen)
        return g

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> EF21BCServer:
        tracked = weighted_sum(client_states, weights)
        opt = OptState()
        x, opt = self.server_opt.step(x0, tracked, opt)
        return EF21BCServer(x, tracked.clone(), tracked, FLOAT_BITS * x0.numel(), opt)

    def round_cohort(
        self, server: EF21BCServer, sampled: np.ndarray, num_clients: int
    ) -> np.ndarray:
        return np.arange(num_clients, dtype=np.int64)

    def client_update(
        self, server: EF21BCServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[ErrorFeedback], torch.Tensor]:
        gr = self.local.gradient(oracle, server.x, rng.local)
        c, bits = compress(self.compressor, gr.grad - state, rng.compression)
        return Message(ErrorFeedback(c), bits, gr.loss, gr.samples), state + c

    def server_update(
        self, server: EF21BCServer, aggregate: Aggregate[ErrorFeedback], gen: np.random.Generator
    ) -> EF21BCServer:
        tracked = server.tracked + aggregate.total(lambda u: u.c)
        # the broadcast compressor's draws come from the round's server stream
        down_gen = torch.Generator().manual_seed(int(gen.integers(0, 2**62)))
        b, bits = compress(self.downlink, tracked - server.g, down_gen)
        g = server.g + b
        x, opt = self.server_opt.step(server.x, g, server.opt)
        return EF21BCServer(x, g, tracked, bits, opt)

    def downlink_bits(self, server: EF21BCServer) -> int:
        return server.down

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        """EF21's step when the broadcast is not compressed (then EF21-BC is EF21).

        Raises
        ------
        ConfigError
            On ``downlink.name`` when the broadcast is compressed (the EF21-BC theorem's
            constants are not reproduced here), or on ``compressor`` when ``C_w`` is not
            contractive.
        """
        if self.downlink is not None:
            raise ConfigError(
                "downlink.name",
                "ef21_bc's theory step is EF21's, for an uncompressed broadcast; the EF21-BC "
                "theorem's constants for a compressed one are not reproduced in phloem",
                ["none"],
            )
        return theory.ef21_step(smoothness, theory.contraction(self.compressor, dim, self.name))
