"""SPB's synchronisation over ``torch.distributed``: each block's gradient averaged over the
ranks that computed it, every rank receiving the result.

Blocks with the same member set (:func:`~phloem.spb.plans.base.members`) travel together in one
flat bucket. Two ways for the ranks outside a bucket's member set to receive its update, each a
registered :class:`SyncMethod`:

- ``zeros``: every rank all-reduces the bucket, non-members contributing zeros; divide by the
  member count. Simple, one collective, but non-members send as much as members.
- ``subgroup``: the members all-reduce within their own process group (a lone member skips
  it), then the lowest member broadcasts the mean to everyone. Non-members only receive.
- ``reduce-scatter``: the members reduce-scatter the bucket within their group (member ``i``
  ends with the mean of the ``i``-th of ``m`` equal chunks), then every member broadcasts its
  chunk to the others (an all-gather when everyone is a member). The broadcast load is spread
  over the members instead of resting on the lowest one.
- ``ddp``: torch's ``DistributedDataParallel`` for the full-backprop baseline.

Process groups are built once, in the same order on every rank (:class:`Groups`), for every
member set a depth plan can produce, as ``torch.distributed.new_group`` requires. Every
collective's payload is counted per rank (:class:`Traffic`), so the bytes a plan saves can be
checked against the bucket sizes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.distributed as dist

from phloem.core.registry import Configured
from phloem.spb.plans.base import members
from phloem.spb.registries import SYNC_METHODS

__all__ = [
    "Ddp",
    "Groups",
    "ReduceScatter",
    "SubgroupBroadcast",
    "SyncMethod",
    "Traffic",
    "ZerosAllReduce",
    "bucket_runs",
    "buckets",
    "member_sets",
]


@dataclass
class Traffic:
    """Bytes this rank handed to collectives: ``sent`` (all-reduce inputs and broadcasts it
    sourced) and ``received`` (broadcasts it received), by collective kind."""

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)

    def add(self, book: dict[str, int], kind: str, nbytes: int) -> None:
        book[kind] = book.get(kind, 0) + nbytes

    @property
    def total_sent(self) -> int:
        """Bytes sent, all kinds together."""
        return sum(self.sent.values())


class Groups:
    """Process groups for member sets, each built once, in the same order on every rank.

    A member set is "the ranks whose depth is at least d"; with a rotating plan any subset of
    that form can occur, so :meth:`build` is called by every rank with the same list (the
    sets of the depths it will use), and only creates the groups it has not built yet.
    """

    def __init__(self) -> None:
        self._groups: dict[tuple[int, ...], object] = {}

    def build(self, sets: Sequence[tuple[int, ...]]) -> None:
        """Create the groups for ``sets`` not built yet (every rank, same order)."""
        world = dist.get_world_size()
        for ranks in sets:
            if ranks and len(ranks) < world and ranks not in self._groups:
                self._groups[ranks] = dist.new_group(list(ranks))

    @property
    def sets(self) -> list[tuple[int, ...]]:
        """The member sets with a group of their own, in the order they were built."""
        return list(self._groups)

    def get(self, ranks: tuple[int, ...]) -> object:
        """The group of ``ranks`` (the default group when it is every rank)."""
        if len(ranks) == dist.get_world_size():
            return dist.group.WORLD
        if ranks not in self._groups:
            raise KeyError(
                f"no process group for ranks {ranks}: every rank must call Groups.build with "
                "the member sets of the depths it will use, in the same order, first"
            )
        return self._groups[ranks]


def member_sets(patterns: Iterable[tuple[int, ...]], num_blocks: int) -> list[tuple[int, ...]]:
    """The member sets that the depth ``patterns`` produce (one per step of a run), without
    the empty and the full one, in one fixed order (smallest first): what every rank passes
    to :meth:`Groups.build`. Enumerating the run's patterns builds exactly the groups it will
    use (a static plan needs one, a rotating plan ``W``), not all ``2^W`` subsets."""
    world = 0
    out: set[tuple[int, ...]] = set()
    for depths in set(patterns):
        world = len(depths)
        out.update(members(depths, num_blocks))
    return sorted((g for g in out if g and len(g) < world), key=lambda g: (len(g), g))


def buckets(
    depths: tuple[int, ...], num_blocks: int, dropped: frozenset[int] = frozenset()
) -> list[tuple[tuple[int, ...], list[int]]]:
    """Consecutive blocks with the same member set, as ``(members, block indices)``."""
    return bucket_runs(members(depths, num_blocks, dropped))


def bucket_runs(groups: Sequence[tuple[int, ...]]) -> list[tuple[tuple[int, ...], list[int]]]:
    """Runs of consecutive blocks with the same member set in ``groups`` (one per block)."""
    out: list[tuple[tuple[int, ...], list[int]]] = []
    for b, group in enumerate(groups):
        if out and out[-1][0] == group:
            out[-1][1].append(b)
        else:
            out.append((group, [b]))
    return out


class SyncMethod(Configured, ABC):
    """Averages each bucket over its members and gives every rank the result."""

    kind: ClassVar[str] = "sync method"
    #: whether the trainer hands the model to torch's ``DistributedDataParallel`` instead
    native_ddp: ClassVar[bool] = False

    @abstractmethod
    def reduce(self, flat: torch.Tensor, group: tuple[int, ...], groups: Groups) -> None:
        """Replace ``flat`` (this rank's bucket: its gradients, or zeros if it is not a
        member) in place with the members' mean, on every rank."""

    @abstractmethod
    def book(
        self,
        traffic: Traffic,
        rank: int,
        world: int,
        group: tuple[int, ...],
        numel: int,
        esize: int,
    ) -> None:
        """Add to ``traffic`` what ``rank`` hands to collectives when :meth:`reduce` runs on a
        bucket of ``numel`` entries of ``esize`` bytes with members ``group``
        (:meth:`synchronise` books every bucket it reduces; the virtual workers book a step
        without communicating)."""

    def book_step(
        self,
        traffic: Traffic,
        rank: int,
        world: int,
        groups: Sequence[tuple[int, ...]],
        numels: Sequence[int],
        esize: int = 4,
    ) -> None:
        """Book a whole step for ``rank``: ``groups`` and ``numels`` give each block's members
        and parameter count, bucketed as :meth:`synchronise` does."""
        for group, blocks in bucket_runs(groups):
            numel = sum(numels[b] for b in blocks)
            if group and numel:
                self.book(traffic, rank, world, group, numel, esize)

    def synchronise(
        self,
        params: Sequence[Sequence[torch.nn.Parameter]],
        grads: Sequence[Sequence[torch.Tensor] | None],
        depths: tuple[int, ...],
        groups: Groups,
        traffic: Traffic,
        dropped: frozenset[int] = frozenset(),
    ) -> None:
        """Set every parameter's ``.grad`` to the SPB mean (``None`` for blocks no rank
        reached, or every rank ``dropped``), the same on every rank."""
        for group, blocks in buckets(depths, len(params), dropped):
            if not group:
                for b in blocks:
                    for p in params[b]:
                        p.grad = None
                continue
            parts = []
            for b in blocks:
                gs = grads[b]
                for i, p in enumerate(params[b]):
                    parts.append((gs[i] if gs is not None else torch.zeros_like(p)).reshape(-1))
            if not parts:
                continue
            flat = torch.cat(parts)
            world = dist.get_world_size()
            self.book(traffic, dist.get_rank(), world, group, flat.numel(), flat.element_size())
            self.reduce(flat, group, groups)
            offset = 0
            for b in blocks:
                for p in params[b]:
                    n = p.numel()
                    p.grad = flat[offset : offset + n].view_as(p)  # a view of the bucket
                    offset += n


@SYNC_METHODS.register
class ZerosAllReduce(SyncMethod):
    """All ranks all-reduce each bucket (non-members add zeros), then divide by the members."""

    name: ClassVar[str] = "zeros"
    description: ClassVar[str] = "all-reduce over every rank, non-members contributing zeros"

    def book(
        self,
        traffic: Traffic,
        rank: int,
        world: int,
        group: tuple[int, ...],
        numel: int,
        esize: int,
    ) -> None:
        traffic.add(traffic.sent, "all_reduce", numel * esize)

    def reduce(self, flat: torch.Tensor, group: tuple[int, ...], groups: Groups) -> None:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= len(group)


@SYNC_METHODS.register
class SubgroupBroadcast(SyncMethod):
    """Members all-reduce in their own group; the lowest member broadcasts the mean."""

    name: ClassVar[str] = "subgroup"
    description: ClassVar[str] = "all-reduce within the members, then a broadcast to the rest"

    def book(
        self,
        traffic: Traffic,
        rank: int,
        world: int,
        group: tuple[int, ...],
        numel: int,
        esize: int,
    ) -> None:
        if rank in group and len(group) > 1:
            traffic.add(traffic.sent, "all_reduce", numel * esize)
        if len(group) < world:
            book = traffic.sent if rank == min(group) else traffic.received
            traffic.add(book, "broadcast", numel * esize)

    def reduce(self, flat: torch.Tensor, group: tuple[int, ...], groups: Groups) -> None:
        if dist.get_rank() in group and len(group) > 1:  # a lone member holds the mean
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=groups.get(group))
            flat /= len(group)
        if len(group) < dist.get_world_size():  # the others receive it from the lowest member
            dist.broadcast(flat, src=min(group))


@SYNC_METHODS.register
class ReduceScatter(SyncMethod):
    """Members reduce-scatter in their own group; each member broadcasts its chunk of the
    mean (an all-gather when every rank is a member)."""

    name: ClassVar[str] = "reduce-scatter"
    description: ClassVar[str] = "reduce-scatter within the members, each broadcasts its chunk"

    def book(
        self,
        traffic: Traffic,
        rank: int,
        world: int,
        group: tuple[int, ...],
        numel: int,
        esize: int,
    ) -> None:
        m = len(group)
        chunk = -(-numel // m) * esize  # the bucket zero-padded to m equal chunks
        if rank in group and m > 1:
            traffic.add(traffic.sent, "reduce_scatter", chunk * m)
        if m == world:
            if m > 1:
                traffic.add(traffic.sent, "all_gather", chunk)
            return
        for src in group:
            traffic.add(traffic.sent if rank == src else traffic.received, "broadcast", chunk)

    def reduce(self, flat: torch.Tensor, group: tuple[int, ...], groups: Groups) -> None:
        rank, world, m = dist.get_rank(), dist.get_world_size(), len(group)
        size = -(-flat.numel() // m)  # chunk length, the bucket zero-padded to m chunks
        padded = torch.zeros(size * m, dtype=flat.dtype, device=flat.device)
        padded[: flat.numel()] = flat
        if rank in group and m > 1:
            mine = torch.empty(size, dtype=flat.dtype, device=flat.device)
            dist.reduce_scatter_single(mine, padded, group=groups.get(group))
            padded[group.index(rank) * size : (group.index(rank) + 1) * size] = mine / m
        if m == world:  # everyone is a member: an all-gather of the chunks
            if m > 1:
                i = group.index(rank)
                out = torch.empty_like(padded)
                dist.all_gather_single(out, padded[i * size : (i + 1) * size].clone())
                padded = out
        else:
            for i, src in enumerate(group):
                chunk = padded[i * size : (i + 1) * size].clone()
                dist.broadcast(chunk, src=src)
                padded[i * size : (i + 1) * size] = chunk
        flat.copy_(padded[: flat.numel()])


@SYNC_METHODS.register
class Ddp(ZerosAllReduce):
    """Torch's ``DistributedDataParallel`` (full backprop only): the baseline a user would
    pick. The trainer wraps the model and lets DDP all-reduce its own buckets, overlapped with
    the backward pass; the same arithmetic as ``zeros`` at full depth, which is what
    :meth:`reduce` does where no DDP runs (virtual workers)."""

    name: ClassVar[str] = "ddp"
    description: ClassVar[str] = "baseline: torch DistributedDataParallel (plan 'full' only)"
    native_ddp: ClassVar[bool] = True
