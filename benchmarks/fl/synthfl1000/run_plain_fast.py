# ruff: noqa: E402  (the clock starts before the imports; X, Y, W are matrices)
"""SynthFL-1000: the leanest plain PyTorch loop we could write for the shared workload's maths.

The shared ``run_plain.py`` builds a fresh model and ``torch.optim.SGD`` for every client. This
driver does the same work -- same data, schedule, initial model, per-(round, client) shuffle,
1 epoch of minibatch SGD on the mean cross-entropy, weighted model average, evaluation every 10
rounds, one torch thread -- with as little around the arithmetic as we could manage:

- ``--mode manual`` (default, the fastest): raw weight tensors and hand-written gradients, no
  autograd: per step ``z = X W^T + b``, ``g = (softmax(z) - onehot(y)) / n``,
  ``W -= lr g^T X``, ``b -= lr sum(g)`` (and the ReLU layer's backward for ``BENCH_HIDDEN``).
- ``--mode lean``: ``manual`` with the two layouts of phloem's vectorised backend, which change
  no value: a column of ones on the data so the first bias is one more weight column (one
  ``addmm`` less per step), and the 10 classes padded to 16 with zero weights and a bias of
  ``-1e30`` (PyTorch's softmax is much slower on rows shorter than 16; padding classes get
  probability exactly 0 and zero gradient).
- ``--mode module``: one reused ``nn.Module`` (the workload's model) with autograd,
  ``p.grad = None`` and ``p -= lr * p.grad`` under ``no_grad`` (no optimiser object).

Both are sequential over clients and sum ``n_k x_k`` into one flat accumulator.
Prints ``RESULT plain_fast ...`` with the fields of ``run_plain.py``.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

BENCH_FL_DIR = Path(
    os.environ.get("BENCH_FL_DIR", Path(__file__).resolve().parents[4] / "shared" / "bench" / "fl")
)
sys.path.insert(0, str(BENCH_FL_DIR))
import workload as w

SEED_STRIDE = 100003
_GEN = torch.Generator()


def layers_of(model: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(W, b)`` of every Linear layer, detached copies (the manual mode's parameters)."""
    return [
        (m.weight.detach().clone(), m.bias.detach().clone())
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]


def manual_client(
    params: list[tuple[torch.Tensor, torch.Tensor]],
    X: torch.Tensor,
    Y: torch.Tensor,
    rnd: int,
    cid: int,
) -> None:
    """One epoch of minibatch SGD on ``params`` in place, gradients by hand."""
    g = torch.Generator().manual_seed(rnd * SEED_STRIDE + cid)
    n = len(X)
    for _ in range(w.LOCAL_EPOCHS):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, w.BATCH):
            idx = perm[i : i + w.BATCH]
            xb, yb = X[idx], Y[idx]
            acts = [xb]
            h = xb
            for j, (W, b) in enumerate(params):
                h = torch.addmm(b, h, W.t())
                if j < len(params) - 1:
                    h = torch.relu(h)
                    acts.append(h)
            dz = torch.softmax(h, 1)
            dz[torch.arange(len(yb)), yb] -= 1.0
            dz /= len(yb)
            for j in range(len(params) - 1, -1, -1):
                W, b = params[j]
                din = dz @ W if j > 0 else None
                W.addmm_(dz.t(), acts[j], alpha=-w.LR)
                b.add_(dz.sum(0), alpha=-w.LR)
                if din is not None:
                    dz = din.mul_(acts[j] > 0)


def lean_client(
    params: list[tuple[torch.Tensor, torch.Tensor | None]],
    X: torch.Tensor,
    onehot: torch.Tensor,
    rnd: int,
    cid: int,
) -> None:
    """``manual_client`` on ones-augmented inputs and 16-padded classes; ``onehot`` holds the
    labels' one-hot rows (16 wide)."""
    g = _GEN.manual_seed(rnd * SEED_STRIDE + cid)  # one reused generator, re-seeded
    n = len(X)
    last = len(params) - 1
    for _ in range(w.LOCAL_EPOCHS):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, w.BATCH):
            idx = perm[i : i + w.BATCH]
            xb = torch.index_select(X, 0, idx)
            acts = [xb]
            h = xb
            for j, (W, b) in enumerate(params):
                h = torch.mm(h, W.t()) if b is None else torch.addmm(b, h, W.t())
                if j < last:
                    h = torch.relu(h)
                    acts.append(h)
            dz = torch.softmax(h, 1).sub_(torch.index_select(onehot, 0, idx)).div_(len(idx))
            for j in range(last, -1, -1):
                W, b = params[j]
                din = dz @ W if j > 0 else None
                W.addmm_(dz.t(), acts[j], alpha=-w.LR)
                if b is not None:
                    b.add_(dz.sum(0), alpha=-w.LR)
                if din is not None:
                    dz = din.mul_(acts[j] > 0)


def lean_layout(
    params: list[tuple[torch.Tensor, torch.Tensor]],
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Fresh lean-layout copies of ``(W, b)``: first bias as a weight column, 16 classes."""
    out: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    for j, (W, b) in enumerate(params):
        if j == len(params) - 1 and W.shape[0] < 16:
            pad = 16 - W.shape[0]
            W = torch.cat([W, torch.zeros(pad, W.shape[1])])
            b = torch.cat([b, torch.full((pad,), -1e30)])
        if j == 0:
            out.append((torch.cat([W, b[:, None]], 1), None))
        else:
            out.append((W.clone(), b.clone()))
    return out


def lean_copy_in(
    lean: list[tuple[torch.Tensor, torch.Tensor | None]], gparams: list[torch.Tensor]
) -> None:
    """Load the global model's ``[W0, b0, W1, b1, ...]`` into the lean layout's real entries."""
    for j, (W, b) in enumerate(lean):
        gw, gb = gparams[2 * j], gparams[2 * j + 1]
        o, i = gw.shape
        W[:o, :i].copy_(gw)
        if b is None:
            W[:o, i].copy_(gb)
        else:
            b[:o].copy_(gb)


def lean_accumulate(
    lean: list[tuple[torch.Tensor, torch.Tensor | None]],
    acc: list[torch.Tensor],
    n: int,
) -> None:
    for j, (W, b) in enumerate(lean):
        aw, ab = acc[2 * j], acc[2 * j + 1]
        o, i = aw.shape
        aw.add_(W[:o, :i], alpha=n)
        ab.add_(W[:o, i] if b is None else b[:o], alpha=n)


def module_client(
    model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, rnd: int, cid: int
) -> None:
    """One epoch of minibatch SGD on the reused module, autograd, no optimiser object."""
    g = torch.Generator().manual_seed(rnd * SEED_STRIDE + cid)
    params = list(model.parameters())
    n = len(X)
    for _ in range(w.LOCAL_EPOCHS):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, w.BATCH):
            idx = perm[i : i + w.BATCH]
            for p in params:
                p.grad = None
            torch.nn.functional.cross_entropy(model(X[idx]), Y[idx]).backward()
            with torch.no_grad():
                for p in params:
                    p.sub_(p.grad, alpha=w.LR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["lean", "manual", "module"], default="lean")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = w.generate()
    order, bounds = w.client_slices(d)
    X = torch.from_numpy(np.ascontiguousarray(d["x"][order]))
    Y = torch.from_numpy(np.ascontiguousarray(d["y"][order]))
    glob = w.make_model(torch)  # the global model (evaluation); its parameters are the state
    gparams = [p.detach() for p in glob.parameters()]
    local = w.make_model(torch)  # module mode: the one reused client model
    lparams = [p.detach() for p in local.parameters()]
    manual = layers_of(local)
    mparams = [t for pair in manual for t in pair]  # same order as glob.parameters()
    work = mparams if args.mode == "manual" else lparams
    lean = lean_layout(manual)
    Xa = torch.cat([X, torch.ones(len(X), 1)], 1)
    onehot = torch.eye(16)[Y]
    acc_state = [torch.zeros_like(p) for p in gparams]
    rt: list[float] = []
    cpu: list[float] = []  # CPU seconds of the process per round (less sensitive to other tenants)
    acc = float("nan")
    for r in range(1, w.ROUNDS + 1):
        ts, cs = time.perf_counter(), time.process_time()
        tot = 0
        for a in acc_state:
            a.zero_()
        for cid in d["schedule"][r - 1]:
            lo, hi = int(bounds[cid]), int(bounds[cid + 1])
            n = hi - lo
            tot += n
            if args.mode == "lean":
                lean_copy_in(lean, gparams)
                lean_client(lean, Xa[lo:hi], onehot[lo:hi], r, int(cid))
                lean_accumulate(lean, acc_state, n)
                continue
            for p, gp in zip(work, gparams, strict=True):
                p.copy_(gp)
            if args.mode == "manual":
                manual_client(manual, X[lo:hi], Y[lo:hi], r, int(cid))
            else:
                module_client(local, X[lo:hi], Y[lo:hi], r, int(cid))
            for a, p in zip(acc_state, work, strict=True):
                a.add_(p, alpha=n)
        for gp, a in zip(gparams, acc_state, strict=True):
            torch.div(a, tot, out=gp)
        if r % w.EVAL_EVERY == 0 or r == w.ROUNDS:
            acc = w.accuracy(torch, glob, d)
            print(f"round {r} acc={acc:.4f}", flush=True)
        rt.append(time.perf_counter() - ts)
        cpu.append(time.process_time() - cs)
    total = time.perf_counter() - T_START
    print(
        f"RESULT plain_fast mode={args.mode} hidden={w.HIDDEN} rounds={w.ROUNDS} "
        f"first_round_end_s={total - sum(rt[1:]):.2f} "
        f"median_round_s={statistics.median(rt[1:]):.4f} "
        f"total_s={total:.2f} median_round_cpu_s={statistics.median(cpu[1:]):.4f} "
        f"final_acc={acc:.4f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
