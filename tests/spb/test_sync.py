"""Tests for :mod:`phloem.spb.sync` on real ``torch.distributed`` (gloo, 4 processes on this
machine): every rank ends with the virtual-worker gradients, and each rank's traffic matches
the bucket sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from phloem.spb.plans.base import members
from phloem.spb.registries import SYNC_METHODS
from phloem.spb.sync import Groups, Traffic, buckets, member_sets
from phloem.spb.virtual import block_params, local_gradients, spb_gradients

WORLD = 4
DEPTHS = (4, 3, 2, 2)
#: the depth patterns of DEPTHS rotated one rank a step, as a rotating plan makes them
ROTATING = [tuple(DEPTHS[(r + s) % WORLD] for r in range(WORLD)) for s in range(8)]


def model() -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList(
        [
            nn.Sequential(nn.Linear(6, 8), nn.Tanh()),
            nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
            nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
            nn.Linear(8, 3),
        ]
    )


def shards() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(WORLD):
        out.append((torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)))
    return out


def worker(rank: int, method: str, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        blocks = model()
        x, y = shards()[rank]
        _, grads = local_gradients(blocks, x, y, DEPTHS[rank], F.cross_entropy)
        try:  # a group asked for before it was built: a clear error, not a hang
            Groups().get((0, 1))
            unbuilt = "no error"
        except KeyError as e:
            unbuilt = str(e)
        groups = Groups()
        groups.build(member_sets(ROTATING, len(blocks)))  # what the trainer builds
        groups.build([g for g, _ in buckets(DEPTHS, len(blocks))])  # nothing new
        traffic = Traffic()
        sync = SYNC_METHODS.get(method)()
        sync.synchronise(block_params(blocks), grads, DEPTHS, groups, traffic)
        torch.save([p.grad for p in blocks.parameters()], f"{out}/grads-{rank}.pt")
        Path(f"{out}/traffic-{rank}.json").write_text(
            json.dumps(
                {
                    "sent": traffic.sent,
                    "received": traffic.received,
                    "unbuilt": unbuilt,
                    "sets": groups.sets,
                }
            )
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["zeros", "subgroup", "reduce-scatter"])
def test_every_rank_gets_the_virtual_workers_gradients(method: str, tmp_path: Path) -> None:
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(worker, args=(method, init, str(tmp_path)), nprocs=WORLD, join=True)
    blocks = model()
    spb_gradients(blocks, shards(), DEPTHS, F.cross_entropy)
    want = [p.grad for p in blocks.parameters()]
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"grads-{rank}.pt", weights_only=True)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
    # traffic against the bucket sizes (float32: 4 bytes per entry)
    params = block_params(blocks)
    sizes = [
        (group, 4 * sum(p.numel() for b in bs for p in params[b]))
        for group, bs in buckets(DEPTHS, len(blocks))
    ]
    assert [g for g, _ in sizes] == [(0,), (0, 1), (0, 1, 2, 3)]
    for rank in range(WORLD):
        t = json.loads((tmp_path / f"traffic-{rank}.json").read_text())
        assert "Groups.build" in t["unbuilt"]
        if method == "zeros":
            assert t["sent"] == {"all_reduce": sum(n for _, n in sizes)} and not t["received"]
        elif method == "reduce-scatter":
            # members hand the zero-padded bucket to the reduce-scatter; each member then
            # sources one chunk (an all-gather when everyone is a member), the rest receive
            def chunk(g: tuple[int, ...], n: int) -> int:
                return -(-(n // 4) // len(g)) * 4

            scattered = sum(chunk(g, n) * len(g) for g, n in sizes if rank in g and len(g) > 1)
            assert t["sent"].get("reduce_scatter", 0) == scattered
            gathered = sum(chunk(g, n) for g, n in sizes if len(g) == WORLD)
            assert t["sent"].get("all_gather", 0) == gathered
            sourced = sum(chunk(g, n) for g, n in sizes if len(g) < WORLD and rank in g)
            assert t["sent"].get("broadcast", 0) == sourced
            received = sum(chunk(g, n) * (len(g) - (rank in g)) for g, n in sizes if len(g) < WORLD)
            assert t["received"].get("broadcast", 0) == received
        else:
            # members all-reduce, except a lone member; everyone takes part in a full one
            reduced = sum(n for g, n in sizes if rank in g and len(g) > 1)
            assert t["sent"].get("all_reduce", 0) == reduced
            got_bcast = sum(n for g, n in sizes if len(g) < WORLD and rank != min(g))
            assert t["received"].get("broadcast", 0) == got_bcast
            sourced = sum(n for g, n in sizes if len(g) < WORLD and rank == min(g))
            assert t["sent"].get("broadcast", 0) == sourced
    assert members(DEPTHS, 4)[0] == (0,)
    # the nested groups: the same sets in the same order on every rank, each built once
    sets = [json.loads((tmp_path / f"traffic-{r}.json").read_text())["sets"] for r in range(WORLD)]
    assert all(s == sets[0] for s in sets)
    assert [tuple(s) for s in sets[0]] == member_sets(ROTATING, 4)
    # exactly the (cyclic) member sets the rotated patterns produce, nothing more
    want = {g for d in ROTATING for g in members(d, 4) if 0 < len(g) < WORLD}
    assert {tuple(s) for s in sets[0]} == want
