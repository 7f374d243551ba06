"""Structured partial backpropagation by hand, with the public API only.

Four virtual workers train a small CNN given as a list of blocks; two of them backpropagate
through the last half of the blocks only. The example checks SPB's rule (at full depth it is
plain data-parallel SGD) and prints what a half-depth worker saves.

    python examples/spb_partial_backprop.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from phloem.spb.accounting import measure_step
from phloem.spb.virtual import spb_gradients


def blocks() -> list[nn.Module]:
    torch.manual_seed(0)
    return [
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU()),
        nn.Linear(64, 10),
    ]


def main() -> dict[str, float]:
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    shards = [(x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]) for i in range(4)]

    # at full depth, SPB's synchronised gradient is the full batch's gradient
    net = blocks()
    spb_gradients(net, shards, [4, 4, 4, 4], F.cross_entropy)
    spb = [p.grad.clone() for b in net for p in b.parameters() if p.grad is not None]
    ref = blocks()
    h = x
    for b in ref:
        h = b(h)
    F.cross_entropy(h, y).backward()
    diff = max(
        float((a - p.grad).abs().max())
        for a, p in zip(spb, [p for b in ref for p in b.parameters()], strict=True)
        if p.grad is not None
    )

    # two workers at half depth: the first two blocks average over the two full workers only
    report = spb_gradients(net, shards, [4, 4, 2, 2], F.cross_entropy)
    full = measure_step(net, x[:16], y[:16], 4, F.cross_entropy)
    half = measure_step(net, x[:16], y[:16], 2, F.cross_entropy)
    out = {
        "max gradient difference at full depth": diff,
        "half-depth backward FLOPs share": half.backward_flops / full.backward_flops,
        "half-depth saved bytes share": half.saved_bytes / full.saved_bytes,
    }
    print("members of each block:", report.members)
    for k, v in out.items():
        print(f"{k}: {v:.3g}")
    return out


if __name__ == "__main__":
    main()
