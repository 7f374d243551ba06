"""What a shallow SPB worker saves: backward FLOPs and activation bytes by depth (measured
with FlopCounterMode and saved_tensors_hooks), and bytes per rank for [L, L, L/2, L/2] against
full backprop (payload handed to collectives, booked exactly as the 4-process test checks).

    python benchmarks/spb/costs/run.py > benchmarks/spb/costs/results.md
"""

from __future__ import annotations

import torch

from phloem.spb.plans.base import fraction_depth, members
from phloem.spb.report import profile_named
from phloem.spb.sync import bucket_runs

MODELS_TO_RUN = [
    ("lenet", []),
    ("resnet20", ["model.width=16"]),
    ("vgg16", ["model.width=32"]),
    ("mlp", []),
]
BATCH = 32


def bytes_per_rank(depths: tuple[int, ...], param_bytes: list[int], sync: str) -> list[int]:
    """Payload each rank hands to collectives in one step (sent), as the trainer books it."""
    world = len(depths)
    groups = members(depths, len(param_bytes))
    sent = [0] * world
    for group, bs in bucket_runs(groups):
        n = sum(param_bytes[b] for b in bs)
        if not group or not n:
            continue
        for r in range(world):
            if sync == "zeros":
                sent[r] += n
                continue
            if r in group and len(group) > 1:
                sent[r] += n
            if len(group) < world and r == min(group):
                sent[r] += n
    return sent


def ring_wire_bytes(depths: tuple[int, ...], param_bytes: list[int], sync: str) -> list[float]:
    """Bytes each rank puts on the wire under ring all-reduce (2 (m - 1) / m of the bucket
    among m ranks) and a flat broadcast (the source sends the bucket to each other rank)."""
    world = len(depths)
    out = [0.0] * world
    for group, bs in bucket_runs(members(depths, len(param_bytes))):
        n = sum(param_bytes[b] for b in bs)
        if not group or not n:
            continue
        if sync == "zeros":
            for r in range(world):
                out[r] += 2 * (world - 1) / world * n
            continue
        m = len(group)
        for r in group:
            out[r] += 2 * (m - 1) / m * n if m > 1 else 0.0
        if m < world:
            out[min(group)] += (world - m) * n
    return out


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
                f"({1 - c.backward_flops / full.backward_flops:.0%} fewer) | "
                f"{c.saved_bytes / 1e6:.3f} MB ({1 - c.saved_bytes / full.saved_bytes:.0%} fewer) "
                f"| {ms:.1f} |"
            )
        pb = [b.param_bytes for b in p.blocks]
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
        base = bytes_per_rank(full_d, pb, "zeros")
        base_w = ring_wire_bytes(full_d, pb, "zeros")
        for depths, sync in [
            (full_d, "zeros"),
            ((L, L, half, half), "zeros"),
            ((L, L, half, half), "subgroup"),
        ]:
            s, w = bytes_per_rank(depths, pb, sync), ring_wire_bytes(depths, pb, sync)
            print(
                f"| {list(depths)} | {sync} | {s} | {1 - sum(s) / sum(base):+.1%} fewer | "
                f"{[round(x) for x in w]} | {1 - sum(w) / sum(base_w):+.1%} fewer |"
            )
        print()


if __name__ == "__main__":
    main()
