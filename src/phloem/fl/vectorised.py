"""Vectorised clients: a round's whole cohort trained at once with batched matrix products.

:class:`VectorisedBackend` (``[run] backend = "vectorised"``) runs the local training of every
client of a round together, for the FedAvg family on small dense models, where the serial
backend spends most of its time in the per-call overhead of PyTorch on tiny minibatches.

What is vectorised
------------------
- *Algorithms*: :class:`~phloem.fl.algorithms.fedavg.FedAvg` and subclasses that keep its
  ``client_update`` (train with the local solver on ``local_objective(oracle, x)``, then compress
  ``x_i - x``) and whose local objective is the client's own oracle or a
  :class:`~phloem.fl.problem.ProximalOracle` of it (FedAvg, FedAdam/FedYogi through the server
  optimiser, FedProx).
- *Local solvers*: :class:`~phloem.fl.local.MinibatchSGD` and
  :class:`~phloem.fl.local.FullGradient`.
- *Models*: a :class:`~phloem.fl.problem.ModelProblem` whose module is an ``nn.Sequential`` of an
  optional ``Flatten``, then ``Linear`` layers with ``ReLU`` between them (``linear``,
  ``logistic``, ``binary_logistic``, ``mlp``), with any of its three losses and ``l2``.

Anything else runs client by client exactly as :class:`~phloem.fl.backends.SerialBackend` does,
after a one-line :class:`UserWarning` naming ``run.backend`` and the supported combinations.

The maths, per client ``k`` (the same as the serial path)
----------------------------------------------------------
Client ``k`` draws its minibatches from its own generator ``rng.local`` exactly as
:class:`~phloem.fl.local.MinibatchSGD` does (one ``randperm`` per epoch started), so it visits
the same rows in the same order. Its parameters are row ``k`` of a ``(K, d)`` tensor laid out
like the flat vector ``x``; each layer is a ``(K, out, in)`` view of it. Step ``t`` gathers the
rows of every client with more than ``t`` steps (clients are sorted by step count, so those are
a prefix and every update is in place on a view), pads each minibatch to the largest one with
rows of weight zero, and computes, with ``c_k`` the real rows of the minibatch,

    z = X W^T + b (per layer, ReLU between),   g_z = dloss/dz * mask / c_k,
    W <- W - lr (g_z^T X + l2 W + mu (W - x)),  b <- b - lr (sum_rows g_z + ...),

the gradient of ``f_k`` on that minibatch (``+ mu/2 ||w - x||^2`` for FedProx). A padded row
contributes an exact zero. Only the order of floating-point sums differs from PyTorch's
autograd on one client (batched kernels), so histories equal the serial backend's to rounding:
about ``1e-6`` relative after a few rounds in float32 and ``1e-12`` in float64 (the tests hold it
to ``2e-4`` and ``1e-9``); chaotic workloads amplify it over many rounds as any reordering would.
Compression then runs per client, from the client's own ``rng.compression``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from phloem.core.rng import SeedStreams
from phloem.fl.algorithms.base import Algorithm, ClientRng, Message, compress
from phloem.fl.algorithms.fedavg import FedAvg, ModelDelta
from phloem.fl.backends import Backend, ClientResult, SerialBackend, Task
from phloem.fl.compressors.base import FLOAT_BITS
from phloem.fl.local import FullGradient, MinibatchSGD
from phloem.fl.problem import ModelProblem, Problem, ProximalOracle
from phloem.fl.problem import Task as LossTask

__all__ = ["SUPPORTED", "VectorisedBackend", "vectorisable"]

#: The combinations the backend vectorises (shown in its fallback note and the docs).
SUPPORTED = (
    "algorithm fedavg-family (fedavg, fedprox: client_update = local solver then compressed "
    "delta) x local.solver sgd|full x model linear|logistic|binary_logistic|mlp"
)


@dataclass(frozen=True)
class _Layer:
    w: slice  # this layer's weight in the flat vector (row-major, out x in)
    b: slice | None  # its bias, if any
    out: int
    inp: int


def _layers(module: nn.Module) -> list[_Layer] | str:
    """The dense layers of ``Flatten? (Linear ReLU)* Linear``, or why the module is not one."""
    if isinstance(module, nn.Linear):
        mods: list[nn.Module] = [module]
    elif isinstance(module, nn.Sequential):
        mods = list(module)
    else:
        return f"model {type(module).__name__} is not an nn.Sequential or nn.Linear"
    if mods and isinstance(mods[0], nn.Flatten):
        mods = mods[1:]
    layers: list[_Layer] = []
    offset = 0
    for j, m in enumerate(mods):
        want_linear = j % 2 == 0
        if want_linear and isinstance(m, nn.Linear):
            n = m.in_features * m.out_features
            w = slice(offset, offset + n)
            offset += n
            b = None
            if m.bias is not None:
                b = slice(offset, offset + m.out_features)
                offset += m.out_features
            layers.append(_Layer(w, b, m.out_features, m.in_features))
        elif not (not want_linear and isinstance(m, nn.ReLU)):
            return f"layer {type(m).__name__} (only Linear with ReLU between is vectorised)"
    if not layers or len(mods) % 2 == 0:
        return "the model must end with a Linear layer"
    return layers


def vectorisable(problem: Problem, algorithm: Algorithm[Any, Any, Any]) -> str | None:
    """``None`` when :class:`VectorisedBackend` can train ``algorithm``'s clients on
    ``problem`` at once, else the reason it cannot (one short clause)."""
    if not isinstance(algorithm, FedAvg) or type(algorithm).client_update is not (
        FedAvg.client_update
    ):
        name = getattr(algorithm, "name", type(algorithm).__name__)
        return f"algorithm {name} is not FedAvg-family"
    if algorithm.stateful_clients:
        return f"algorithm {algorithm.name} keeps client state"
    if type(algorithm.local) not in (MinibatchSGD, FullGradient):
        return f"local solver {type(algorithm.local).__name__} is not sgd or full"
    if not isinstance(problem, ModelProblem):
        return f"problem {type(problem).__name__} is not a model problem"
    layers = _layers(problem.net.module)
    return layers if isinstance(layers, str) else None


class VectorisedBackend(Backend):
    """A round's cohort trained at once with batched matrix products (see the module docstring).

    Parameters
    ----------
    threads
        Torch intra-op threads while clients run (as for the serial backend).
    """

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"run.threads must be >= 1, got {threads}")
        self.threads = threads
        #: why the last :meth:`open` fell back to serial clients (``None``: vectorised)
        self.fallback_reason: str | None = None
        self._serial = SerialBackend(threads)
        self._ctx: tuple[_Net, FedAvg, SeedStreams] | None = None

    def open(
        self, problem: Problem, algorithm: Algorithm[Any, Any, Any], streams: SeedStreams
    ) -> None:
        self._ctx = None
        self.fallback_reason = vectorisable(problem, algorithm)
        self._serial.open(problem, algorithm, streams)
        if self.fallback_reason is not None:
            warnings.warn(
                f"run.backend = 'vectorised': {self.fallback_reason}; its clients run one by one "
                f"as on the serial backend (vectorised: {SUPPORTED})",
                UserWarning,
                stacklevel=2,
            )
            return
        assert isinstance(problem, ModelProblem) and isinstance(algorithm, FedAvg)
        self._ctx = (_Net(problem), algorithm, streams)

    def run_round(self, server: Any, round_: int, tasks: Sequence[Task]) -> list[ClientResult]:
        if self._ctx is None:
            return self._serial.run_round(server, round_, tasks)
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                return self._round(server, round_, tasks)
        finally:
            torch.set_num_threads(before)

    def _round(self, server: Any, round_: int, tasks: Sequence[Task]) -> list[ClientResult]:
        assert self._ctx is not None
        net, algo, streams = self._ctx
        x0: torch.Tensor = server.x
        ids = [int(c) for c, _ in tasks]
        if not ids:
            return []
        rngs = [ClientRng(streams, round_, c) for c in ids]
        plan = _plan(net.problem, net.sizes, algo, ids, rngs)
        mu = _prox_mu(algo, net.problem, [ids[j] for j in plan.order], x0)
        params, loss_sum = net.train(plan, x0, mu, algo.local.lr)
        deltas = params.sub_(x0)
        losses = loss_sum.tolist()
        steps, samples = plan.steps, plan.samples
        results: list[ClientResult | None] = [None] * len(ids)
        for pos, j in enumerate(plan.order):
            delta, bits = deltas[pos], FLOAT_BITS * deltas.shape[1]
            if algo.compressor is not None:
                delta, bits = compress(algo.compressor, delta, rngs[j].compression)
            msg = Message(ModelDelta(delta), bits, losses[pos] / max(steps[pos], 1), samples[pos])
            results[j] = (msg, None)
        return [r for r in results if r is not None]


def _prox_mu(algo: FedAvg, problem: ModelProblem, cids: list[int], x: torch.Tensor) -> list[float]:
    """``mu`` of each client's local objective: 0 for its own oracle, FedProx's ``mu`` for a
    proximal one centred at the server model."""
    if type(algo).local_objective is FedAvg.local_objective:
        return [0.0] * len(cids)
    mu = []
    for cid in cids:
        oracle = problem.client(cid)
        obj = algo.local_objective(oracle, x)
        if obj is oracle:
            mu.append(0.0)
        elif isinstance(obj, ProximalOracle) and obj.inner is oracle and obj.center is x:
            mu.append(float(obj.mu))
        else:
            raise TypeError(
                f"run.backend = 'vectorised' cannot train {algo.name}'s local objective "
                f"{type(obj).__name__}; use run.backend = 'serial'"
            )
    return mu


@dataclass(frozen=True)
class _Plan:
    """Every client's minibatches for the round, clients sorted by step count (descending).

    Step ``t`` trains the ``active[t]`` first clients (those with more than ``t`` steps) on
    ``B`` rows each. The real and padding rows of all steps are stored back to back ("compact"
    order: step, then client, then row), so that a step's rows are one slice.
    """

    order: list[int]  # position in the sorted cohort -> index in the task list
    steps: list[int]  # steps of each sorted client
    active: list[int]  # active[t]: clients training at step t (a prefix of the sorted ones)
    batch: int  # B: rows of a padded minibatch
    rows: torch.Tensor  # (R,) global row indices (padding: one of the client's rows)
    scale: torch.Tensor  # (R,) 1 / c_k on a step's c_k real rows, 0 on padding
    client: torch.Tensor  # (R,) sorted position of the client a row belongs to
    samples: list[int]  # per-sample gradients each sorted client computed


def _plan(
    problem: ModelProblem, sizes: list[int], algo: FedAvg, ids: list[int], rngs: list[ClientRng]
) -> _Plan:
    """The rows each client visits, drawn from its own generator exactly as its solver does."""
    local = algo.local
    n = [sizes[c] for c in ids]
    steps = [local.num_steps(nk) for nk in n]
    order = sorted(range(len(ids)), key=lambda j: -steps[j])  # stable: ties keep cohort order
    K, T = len(ids), steps[order[0]]
    sgd = isinstance(local, MinibatchSGD)
    bs = local.batch_size if isinstance(local, MinibatchSGD) else max(n)
    B = min(bs, max(n))
    per_epoch = [-(-nk // bs) for nk in n]  # batches per pass (1 for the full gradient)
    # Client k's epoch e fills slots [e * span_k, e * span_k + n_k) of its row of T * B slots
    # (an epoch's batches, each padded to B slots); the rest point at its first row.
    perms, owners, starts, lengths = [], [], [], []
    for pos, j in enumerate(order):
        nk, span = n[j], per_epoch[j] * B
        for e in range(-(-steps[j] // per_epoch[j])):  # MinibatchSGD: one randperm per epoch
            perms.append(torch.randperm(nk, generator=rngs[j].local) if sgd else torch.arange(nk))
            owners.append(pos)
            starts.append(e * span)
            lengths.append(nk)
    length = torch.tensor(lengths)
    within = torch.arange(int(length.sum())) - torch.repeat_interleave(
        torch.cumsum(length, 0) - length, length
    )
    slot = torch.repeat_interleave(torch.tensor(starts), length) + within
    keep = slot < T * B  # not past the client's last step
    dest = torch.repeat_interleave(torch.tensor(owners) * (T * B), length) + slot
    rel = torch.zeros(K * T * B, dtype=torch.long)
    rel[dest[keep]] = torch.cat(perms)[keep]
    rel = rel.view(K, T * B)
    n_s = torch.tensor([n[j] for j in order])
    steps_s = torch.tensor([steps[j] for j in order])
    ek = torch.tensor([per_epoch[j] for j in order]).view(K, 1, 1)
    t = torch.arange(T).view(1, T, 1)
    first = (t % ek) * bs  # the first row of the step's batch within its epoch
    count = torch.clamp(n_s.view(K, 1, 1) - first, max=bs)
    real = (torch.arange(B).view(1, 1, B) < count) & (t < steps_s.view(K, 1, 1))
    scale = torch.where(real, 1.0 / count.to(problem.dtype), 0.0).to(problem.dtype)
    base = torch.tensor([int(problem._bounds[ids[j]]) for j in order]).view(K, 1)
    training = (t < steps_s.view(K, 1, 1)).view(K, T).T  # (T, K): client k trains at step t

    def compact(v: torch.Tensor) -> torch.Tensor:  # (K, T, B) -> (R,) in step-major order
        return v.transpose(0, 1)[training].reshape(-1)

    client = torch.arange(K).view(K, 1, 1).expand(K, T, B)
    return _Plan(
        order,
        steps_s.tolist(),
        training.sum(1).tolist(),
        B,
        compact((rel + base).view(K, T, B)),
        compact(scale),
        compact(client),
        real.sum((1, 2)).tolist(),
    )


def _first(b: torch.Tensor | None) -> torch.Tensor | None:
    return None if b is None else b[None]


#: inputs of a whole round are gathered at once when they take at most this many bytes
_GATHER_BYTES = 64 << 20

#: logit of a padding class: exp(PAD_LOGIT - max) is exactly 0 in float32 and float64
_PAD_LOGIT = -1e30


class _Net:
    """The dense layers of a model problem, laid out for a cohort.

    Layer ``l`` of client ``k`` is ``W[l][k]``, ``(out, in)``, and ``b[l][k]``. Two layouts make
    the kernels faster and change no value: when the first layer has a bias, the data carry a
    column of ones and the bias is the weight matrix's last column (one product instead of a
    product and a sum); and fewer than 16 classes are padded to 16 with zero weights and a
    bias of ``-1e30`` (PyTorch's softmax is ~20x slower on rows shorter than 16; the padding
    classes get probability 0 and exactly zero gradient).
    """

    def __init__(self, problem: ModelProblem) -> None:
        layers = _layers(problem.net.module)
        assert not isinstance(layers, str)
        self.problem, self.layers = problem, layers
        self.sizes = [int(v) for v in problem.num_samples]
        x = problem._x.reshape(len(problem._x), -1)
        ones_bytes = x.shape[0] * (x.shape[1] + 1) * x.element_size()
        self.aug = layers[0].b is not None and ones_bytes <= 1 << 29
        self.x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1) if self.aug else x
        last = layers[-1]
        classes = problem.task is LossTask.CLASSIFICATION
        self.pad = 16 - last.out if classes and last.out < 16 and last.b is not None else 0
        y = problem._y
        if classes:
            self.onehot = torch.eye(last.out + self.pad, dtype=problem.dtype)
        self.y = y

    def shapes(self, li: int) -> tuple[int, int]:
        ly = self.layers[li]
        out = ly.out + (self.pad if li == len(self.layers) - 1 else 0)
        return out, ly.inp + (1 if li == 0 and self.aug else 0)

    def unpack(self, x0: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """The server model in this layout: weights ``(out', in')`` and separate biases."""
        ws: list[torch.Tensor] = []
        bs: list[torch.Tensor | None] = []
        for li, ly in enumerate(self.layers):
            out, inp = self.shapes(li)
            w = torch.zeros(out, inp, dtype=x0.dtype)
            w[: ly.out, : ly.inp] = x0[ly.w].view(ly.out, ly.inp)
            b: torch.Tensor | None = None
            if ly.b is not None:
                bias = torch.full((out,), _PAD_LOGIT, dtype=x0.dtype)
                bias[: ly.out] = x0[ly.b]
                if li == 0 and self.aug:
                    w[:, ly.inp] = bias
                else:
                    b = bias
            ws.append(w)
            bs.append(b)
        return ws, bs

    def real(self, li: int, w: torch.Tensor, b: torch.Tensor | None) -> list[torch.Tensor]:
        """Views of the real (not padding) parameters of layer ``li`` in a cohort's tensors."""
        ly = self.layers[li]
        width = ly.inp + (1 if li == 0 and self.aug else 0)
        out = [w[:, : ly.out, :width]]
        if b is not None:
            out.append(b[:, : ly.out])
        return out

    def pack(self, ws: list[torch.Tensor], bs: list[torch.Tensor | None], dim: int) -> torch.Tensor:
        """``(K, d)``: every client's parameters as flat vectors."""
        K = ws[0].shape[0]
        P = torch.empty(K, dim, dtype=ws[0].dtype)
        for li, ly in enumerate(self.layers):
            w, b = ws[li], bs[li]
            P[:, ly.w].view(K, ly.out, ly.inp).copy_(w[:, : ly.out, : ly.inp])
            if ly.b is not None:
                P[:, ly.b].copy_(w[:, : ly.out, ly.inp] if b is None else b[:, : ly.out])
        return P

    def train(
        self, plan: _Plan, x0: torch.Tensor, mu: list[float], lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every client's end point ``(K, d)`` and its sum of minibatch losses ``(K,)``."""
        problem, nl = self.problem, len(self.layers)
        K, B = len(plan.order), plan.batch
        dtype, task, l2 = x0.dtype, problem.task, problem.l2
        w0, b0 = self.unpack(x0)
        ws = [w.expand(K, *w.shape).clone() for w in w0]
        bs = [None if b is None else b.expand(K, *b.shape).clone() for b in b0]
        prox = any(m > 0 for m in mu)
        reg_on = l2 > 0 or prox
        loss_sum = torch.zeros(K, dtype=dtype)
        if reg_on:
            mu_t = torch.tensor(mu, dtype=dtype)
            reals = [self.real(li, ws[li], bs[li]) for li in range(nl)]
            centres = [self.real(li, w0[li][None], _first(b0[li])) for li in range(nl)]
        # per-row data of the whole round, in compact order, cut into one view per step
        act = plan.active
        steps3 = (len(plan.rows) // B, B, -1)  # compact rows as (client-steps, B, .)

        def per_step(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return torch.split(v.reshape(steps3), act)  # step t: (active[t], B, .)

        y = self.y[plan.rows]
        s = plan.scale.unsqueeze(-1)  # (R, 1)
        scales = per_step(s)
        classes = task is LossTask.CLASSIFICATION
        if classes:
            target = self.onehot[y].mul_(s)  # (R, C'): 1 / c_k at the label
            coef = per_step(-target)
        else:
            target = y.reshape(-1, 1)
            ys = per_step(target)
            # dloss/dz: -y s sigmoid(-y z) (logistic), s (z - y) (squared)
            coef = per_step(-target * s if task is LossTask.BINARY else s)
        z_all = torch.empty(len(plan.rows), self.shapes(nl - 1)[0], dtype=dtype)
        zs = per_step(z_all)
        gathered = len(plan.rows) * self.x.shape[1] * self.x.element_size() <= _GATHER_BYTES
        if gathered:  # every step's inputs in one gather
            xs = per_step(torch.index_select(self.x, 0, plan.rows))
        else:
            idx = torch.split(plan.rows, [a * B for a in act])
        for t, a in enumerate(act):
            h = xs[t] if gathered else torch.index_select(self.x, 0, idx[t]).view(a, B, -1)
            acts = [h]
            for li in range(nl):
                wt = ws[li][:a].transpose(1, 2)
                b = bs[li]
                out = zs[t] if li == nl - 1 else None
                if b is None:
                    h = torch.bmm(h, wt, out=out)
                else:
                    h = torch.baddbmm(b[:a].unsqueeze(1), h, wt, out=out)
                if li < nl - 1:
                    h = torch.relu(h)
                    acts.append(h)
            if classes:  # cross-entropy: (softmax - onehot) / c_k
                g = torch.addcmul(coef[t], torch.softmax(h, -1), scales[t])
            elif task is LossTask.BINARY:
                g = torch.sigmoid(h.mul(ys[t]).neg_()).mul_(coef[t])
            else:
                g = (h - ys[t]).mul_(coef[t])
            if reg_on:  # l2 w + mu (w - x): at the point before the step, every layer
                regs = []
                for li in range(nl):
                    for p, ctr in zip(reals[li], centres[li], strict=True):
                        pa = p[:a]
                        m = mu_t[:a].view(-1, *[1] * (pa.dim() - 1))
                        regs.append((pa, pa * l2 + m * (pa - ctr)))
                if l2 > 0:
                    loss_sum[:a] += 0.5 * l2 * sum((pa * pa).flatten(1).sum(1) for pa, _ in regs)
            for li in range(nl - 1, -1, -1):  # backward, each layer updated after use
                wa = ws[li][:a]
                g_in = torch.bmm(g, wa) if li > 0 else None
                wa.baddbmm_(g.transpose(1, 2), acts[li], alpha=-lr)
                b = bs[li]
                if b is not None:
                    b[:a].add_(g.sum(1), alpha=-lr)
                if g_in is not None:
                    g = g_in.mul_(acts[li] > 0)
            if reg_on:
                for pa, r in regs:
                    pa.add_(r, alpha=-lr)
        # the minibatch losses, at the logits each step saw, summed per client
        if classes:
            per_row = -(torch.log_softmax(z_all, -1) * target).sum(1)
        elif task is LossTask.BINARY:
            per_row = nn.functional.softplus(-(z_all * target)).squeeze(1) * plan.scale
        else:
            per_row = 0.5 * (z_all - target).square_().squeeze(1) * plan.scale
        loss_sum.index_add_(0, plan.client, per_row)
        return self.pack(ws, bs, problem.dim), loss_sum
