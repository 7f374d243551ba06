"""The cluster: nodes of GPUs, and the free GPUs a policy places jobs on."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from phloem.core import checks
from phloem.core.errors import ConfigError

__all__ = ["ClusterSpec", "FreeGpus", "PlacementMode"]


class PlacementMode(enum.Enum):
    """Where a job's GPUs go: on as few nodes as possible, or one per node round-robin."""

    CONSOLIDATED = "consolidated"
    SPREAD = "spread"


@dataclass(frozen=True)
class ClusterSpec:
    """``[cluster]``: ``nodes`` x ``gpus_per_node`` GPUs of ``gpu_memory_gb`` each, one NIC of
    ``nic_gbps`` per node; ``placement``: ``consolidated`` (fewest nodes) or ``spread``.
    GPU ids run node by node: GPU ``g`` is on node ``g // gpus_per_node``."""

    nodes: int = 16
    gpus_per_node: int = 4
    gpu_memory_gb: float = 16.0
    nic_gbps: float = 50.0
    placement: str = "consolidated"

    def __post_init__(self) -> None:
        checks.integer("cluster.nodes", self.nodes, low=1, high=1 << 16)
        checks.integer("cluster.gpus_per_node", self.gpus_per_node, low=1, high=64)
        checks.real("cluster.gpu_memory_gb", self.gpu_memory_gb, low=0.0, low_open=True)
        checks.real("cluster.nic_gbps", self.nic_gbps, low=0.0, low_open=True)
        if self.placement not in [m.value for m in PlacementMode]:
            raise ConfigError(
                "cluster.placement", f"unknown {self.placement!r}", [m.value for m in PlacementMode]
            )

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def mode(self) -> PlacementMode:
        return PlacementMode(self.placement)

    def node_of(self, gpu: int) -> int:
        return gpu // self.gpus_per_node


class FreeGpus:
    """The free GPUs of a cluster, node by node; :meth:`take` places a job on them.

    Parameters
    ----------
    cluster
        The cluster.
    used
        GPUs already taken.
    """

    def __init__(self, cluster: ClusterSpec, used: Iterable[int] = ()) -> None:
        self.cluster = cluster
        k = cluster.gpus_per_node
        taken = set(used)
        self._free = [
            [g for g in range(n * k, (n + 1) * k) if g not in taken] for n in range(cluster.nodes)
        ]
        self.count = sum(len(f) for f in self._free)

    def take(self, n: int, mode: PlacementMode | None = None) -> tuple[int, ...] | None:
        """``n`` free GPUs (removed from the pool), or ``None`` when fewer are free.

        Consolidated: repeatedly the node with the most free GPUs (ties: the lowest id), as
        Pollux's Tiresias places; spread: one GPU per node in turn, most free nodes first.
        """
        if n > self.count:
            return None
        mode = self.cluster.mode if mode is None else mode
        out: list[int] = []
        if mode is PlacementMode.CONSOLIDATED:
            while len(out) < n:
                node = max(range(len(self._free)), key=lambda i: (len(self._free[i]), -i))
                want = min(n - len(out), len(self._free[node]))
                out += self._free[node][:want]
                del self._free[node][:want]
        else:
            order = sorted(range(len(self._free)), key=lambda i: (-len(self._free[i]), i))
            while len(out) < n:
                for node in order:
                    if self._free[node] and len(out) < n:
                        out.append(self._free[node].pop(0))
        self.count -= n
        return tuple(sorted(out))

    def release(self, gpus: Iterable[int]) -> None:
        """Put ``gpus`` back."""
        for g in gpus:
            self._free[self.cluster.node_of(g)].append(g)
            self.count += 1
        for f in self._free:
            f.sort()
