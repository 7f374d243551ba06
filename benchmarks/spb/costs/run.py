"""What a shallow SPB worker saves: backward FLOPs and activation bytes by depth (measured
with FlopCounterMode and saved_tensors_hooks), and bytes per rank for [L, L, L/2, L/2] against
full backprop (payload handed to collectives, booked exactly as the 4-process test checks).

    python benchmarks/spb/costs/run.py > benchmarks/spb/costs/results.md
"""

from __future__ import annotations

import torch

from phloem.spb.plans.base import fraction_depth, members
from phloem.spb.registries import SYNC_METHODS
from phloem.spb.report import profile_named
from phloem.spb.sync import Traffic, bucket_runs

MODELS_TO_RUN = [
    ("lenet", []),
    ("resnet20", ["model.width=16"]),
    ("vgg16", ["model.width=32"]),
    ("mlp", []),
]
BATCH = 32


def bytes_per_rank(depths: tuple[int, ...], numels: list[int], sync: str) -> list[int]:
    """Payload each rank hands to collectives in one step, as the sync method books it (the
    4-process tests check real runs book the same)."""
    method = SYNC_METHODS.get(sync)()
    groups = members(depths, len(numels))
    out = []
    for r in range(len(depths)):
        t = Traffic()
        method.book_step(t, r, len(depths), groups, numels)
        out.append(t.total_sent)
    return out


def ring_wire_bytes(depths: tuple[int, ...], param_bytes: list[int], sync: str) -> list[float]:
    """A model of the bytes each rank puts on the wire: ring all-reduce among m ranks sends
    2 (m - 1) / m of the bucket, ring reduce-scatter and all-gather (m - 1) / m each, and a
    broadcast over the world is flat (its source sends the payload to each of the other W - 1
    ranks: an upper bound for the source, a tree spreads it)."""
    world = len(depths)
    out = [0.0] * world
    for group, bs in bucket_runs(members(depths, len(param_bytes))):
        n = sum(param_bytes[b] for b in bs)
        if not group or not n:
            continue
        m = len(group)
        if sync == "zeros":
            for r in range(world):
                out[r] += 2 * (world - 1) / world * n
        elif sync == "subgroup":
            for r in group:
                out[r] += 2 * (m - 1) / m * n
            if m < world:
                out[min(group)] += (world - 1) * n
        else:  # reduce-scatter
            for r in group:
                out[r] += (m - 1) / m * n
                out[r] += (m - 1) / m * n if m == world else (world - 1) * n / m
    return out


def _fewer(new: float, old: float) -> str:
    change = 1 - new / old
    return f"{change:.1%} fewer" if change >= 0 else f"{-change:.1%} more"


def main() -> None:
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH} per worker\n"
    )
    for name, sets in MODELS_TO_RUN:
        p = profile_named(name, sets, batch_size=BATCH, repeats=3)
        L = len(p.blocks)
        half = fraction_depth(0.5, L)
        full = p.depths[-1]
        print(
            f"## {name} {' '.join(sets)}: {L} blocks, "
            f"{sum(b.param_bytes for b in p.blocks) / 1e6:.3f} MB of parameters\n"
        )
        print("| depth | backward FLOPs | saved activation bytes | step ms |")
        print("|---:|---:|---:|---:|")
        for c, ms in zip(p.depths, p.step_ms, strict=True):
            mark = " (half)" if c.depth == half else ""
            print(
                f"| {c.depth}{mark} | {c.backward_flops / 1e6:.1f} M "
                f"({_fewer(c.backward_flops, full.backward_flops)}) | "
                f"{c.saved_bytes / 1e6:.3f} MB ({_fewer(c.saved_bytes, full.saved_bytes)}) "
                f"| {ms:.1f} |"
            )
        pb = [b.param_bytes for b in p.blocks]
        numels = [b.params for b in p.blocks]
        print("\n| blocks (parameter bytes by block) |")
        print("|---|")
        print("| " + ", ".join(f"{b.name} {b.param_bytes / 1e3:.1f} kB" for b in p.blocks) + " |")
        print("\nBytes per rank and step, W = 4:\n")
        print(
            "| depths | sync | payload sent per rank (B) | mean vs full "
            "| ring-model wire bytes per rank | mean vs full |"
        )
        print("|---|---|---|---:|---|---:|")
        full_d = (L,) * 4
        base = bytes_per_rank(full_d, numels, "zeros")
        base_w = ring_wire_bytes(full_d, pb, "zeros")
        halves = sorted({L // 2, half})  # L/2 rounded down and up
        cases = [(full_d, "zeros")] + [
            ((L, L, h, h), sync) for h in halves for sync in ("zeros", "subgroup", "reduce-scatter")
        ]
        for depths, sync in cases:
            s, w = bytes_per_rank(depths, numels, sync), ring_wire_bytes(depths, pb, sync)
            print(
                f"| {list(depths)} | {sync} | {s} | {_fewer(sum(s), sum(base))} "
                f"(shallow rank {_fewer(s[-1], base[-1])}) | "
                f"{[round(x) for x in w]} | {_fewer(sum(w), sum(base_w))} "
                f"(shallow rank {_fewer(w[-1], base_w[-1])}) |"
            )
        print()


if __name__ == "__main__":
    main()
