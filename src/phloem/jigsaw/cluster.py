"""The cluster: nodes of GPUs, and the free GPUs a policy places jobs on."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

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
    ``nic_gbps`` per node (shared by the jobs crossing it); ``placement``: ``consolidated``
    (fewest nodes) or ``spread``.
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
        self._free = np.ones(cluster.num_gpus, dtype=bool)
        taken = np.fromiter(used, dtype=np.int64)
        self._free[taken] = False
        self._per_node = self._free.reshape(cluster.nodes, cluster.gpus_per_node).sum(axis=1)
        self.count = int(self._per_node.sum())

    def take(self, n: int, mode: PlacementMode | None = None) -> tuple[int, ...] | None:
        """``n`` free GPUs (removed from the pool), or ``None`` when fewer are free.

        Consolidated: repeatedly the node with the most free GPUs (ties: the lowest id), as
        Pollux's Tiresias places; spread: one GPU per node in turn, most free nodes first.
        """
        if n > self.count:
            return None
        mode = self.cluster.mode if mode is None else mode
        k = self.cluster.gpus_per_node
        out: list[int] = []
        if mode is PlacementMode.CONSOLIDATED:
            while len(out) < n:
                node = int(np.argmax(self._per_node))
                want = min(n - len(out), int(self._per_node[node]))
                ids = np.flatnonzero(self._free[node * k : (node + 1) * k])[:want] + node * k
                out += ids.tolist()
                self._free[ids] = False
                self._per_node[node] -= want
        else:
            order = sorted(range(self.cluster.nodes), key=lambda i: (-self._per_node[i], i))
            while len(out) < n:
                for node in order:
                    if self._per_node[node] and len(out) < n:
                        g = int(np.flatnonzero(self._free[node * k : (node + 1) * k])[0]) + node * k
                        out.append(g)
                        self._free[g] = False
                        self._per_node[node] -= 1
        self.count -= n
        return tuple(sorted(out))

    def release(self, gpus: Iterable[int]) -> None:
        """Put ``gpus`` back."""
        for g in gpus:
            if not self._free[g]:
                self._free[g] = True
                self._per_node[self.cluster.node_of(g)] += 1
                self.count += 1
