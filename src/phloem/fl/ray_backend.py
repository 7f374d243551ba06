"""The Ray backend: clients run in persistent Ray actors, on this machine or on a cluster.

``[run] backend = "ray"`` starts ``workers`` actors (one CPU, ``threads`` torch threads each).
The clients are split over the actors once, by total sample count
(:func:`phloem.fl.backends.balance`), and each actor keeps for the whole run:

- the problem's shard of its own clients (:meth:`phloem.fl.problem.Problem.shard`: the model
  and those clients' rows only), or, for a problem that cannot be split, the whole problem,
  put in the object store once and shared by every actor;
- the algorithm and the run's seed streams;
- the persistent states of its clients (stateful methods such as SCAFFOLD or DIANA).

A round puts the server state in the object store once (each actor fetches it once), sends each
actor the ids of its clients in the cohort, and gets back their messages and new states in
cohort order. A client's state travels to its actor only when the actor's copy is not the one
the simulator holds (the first round, a resumed run, or a round whose aggregate was not
applied); the new states always come back, since the simulator commits and checkpoints them.
Every client's randomness is addressed by (round, client) through the same
:class:`~phloem.fl.algorithms.base.ClientRng` and torch runs the same kernels on one thread, so
the history is bit-identical to the serial backend's.

``[run] ray_address``: empty (the default) starts a local Ray instance with ``workers x
threads`` CPUs and stops it at the end of the run; ``"auto"`` joins the cluster started on
this machine by ``ray start --head``; ``"ray://host:10001"`` connects through the Ray client.
When this process is already connected to Ray (``ray.init`` was called), that session is used
and left running. ``ray`` is imported only when the backend opens (``pip install
'phloem[ray]'``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch

import phloem
from phloem.core.errors import ConfigError, PhloemError
from phloem.core.rng import SeedStreams
from phloem.fl.algorithms.base import Algorithm, ClientRng
from phloem.fl.backends import Backend, ClientResult, Task, balance
from phloem.fl.problem import Problem

__all__ = ["RayBackend"]

#: seconds to wait for a TCP connection to the cluster's address before giving up
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class _Held:
    """Sent in place of a client's state that its actor already holds."""


class _ClientHost:
    """The body of one actor: a shard of the clients, their states, and their updates.

    ``clients`` lists the global ids of the clients of ``problem`` (a shard: its client ``j`` is
    ``clients[j]``); ``None`` when ``problem`` is the whole problem.
    """

    def __init__(
        self,
        problem: Problem,
        clients: list[int] | None,
        algorithm: Algorithm[Any, Any, Any],
        streams: SeedStreams,
        threads: int,
    ) -> None:
        torch.set_num_threads(threads)
        self.problem, self.algorithm, self.streams = problem, algorithm, streams
        self.local = None if clients is None else {c: j for j, c in enumerate(clients)}
        self.states: dict[int, Any] = {}

    def ready(self) -> bool:
        return True

    def run(self, server: Any, round_: int, tasks: list[tuple[int, Any]]) -> list[ClientResult]:
        out: list[ClientResult] = []
        for cid, sent in tasks:
            state = self.states[cid] if isinstance(sent, _Held) else sent
            oracle = self.problem.client(cid if self.local is None else self.local[cid])
            rng = ClientRng(self.streams, round_, cid)
            msg, new = self.algorithm.client_update(server, state, oracle, rng)
            if self.algorithm.stateful_clients:
                self.states[cid] = new
            out.append((msg, new))
        return out


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "run.backend",
            "'ray' needs the ray package, which is not installed: pip install 'phloem[ray]'",
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Refuse, quickly and by name, an address nothing listens on (Ray itself retries for
    a minute or more before it gives up)."""
    if address == "auto":
        return
    url = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = url.hostname, url.port
    except ValueError as e:
        raise ConfigError("run.ray_address", f"{address!r} is not host:port ({e})") from None
    if not host or port is None:
        raise ConfigError(
            "run.ray_address",
            f"{address!r} names no host and port; use 'auto', 'host:6379' or 'ray://host:10001'",
        )
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(
            "run.ray_address", f"cannot reach a Ray cluster at {address!r}: {e}"
        ) from None


@contextlib.contextmanager
def _workers_import_this_phloem() -> Iterator[None]:
    """Put the folder this phloem was imported from first on the ``PYTHONPATH`` that a local
    Ray instance's workers inherit (a relative entry such as ``src`` would resolve against the
    workers' own current folder, and an installed copy could shadow this one)."""
    root = str(Path(phloem.__file__).resolve().parents[1])
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


class RayBackend(Backend):
    """Clients run in ``workers`` persistent Ray actors, each holding its share of them.

    Parameters
    ----------
    workers
        Number of actors (each asks Ray for ``threads`` CPUs).
    threads
        Torch intra-op threads per actor.
    address
        Ray cluster to join (``"auto"``, ``"host:port"``, ``"ray://host:10001"``); ``None`` or
        ``""`` starts a local instance for the run (unless this process is already connected).
    """

    def __init__(self, workers: int = 2, threads: int = 1, address: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"run.workers must be >= 1, got {workers}")
        if threads < 1:
            raise ValueError(f"run.threads must be >= 1, got {threads}")
        self.workers, self.threads, self.address = workers, threads, address or None
        self._ray: Any = None
        self._owns = False
        self._actors: list[Any] = []
        self._owner = np.zeros(0, dtype=np.int64)
        self._stateful = False
        # the state object each client's actor holds, as this process last saw it
        self._held: dict[int, Any] = {}

    # ------------------------------------------------------------------ connection

    def _connect(self) -> Any:
        ray = _import_ray()
        if self.address is not None:
            _check_reachable(self.address)
        if ray.is_initialized():
            return ray  # the caller's session: used, and left running
        quiet: dict[str, Any] = {"logging_level": logging.WARNING}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if self.address is not None:
                try:
                    ray.init(address=self.address, **quiet)
                except Exception as e:  # ConnectionError, RuntimeError, grpc errors...
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ConfigError(
                        "run.ray_address", f"cannot connect to Ray at {self.address!r}: {first}"
                    ) from None
            else:
                cpus = self.workers * self.threads
                try:
                    with _workers_import_this_phloem():
                        ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
                except Exception as e:
                    raise PhloemError(f"could not start a local Ray instance: {e}") from None
        self._owns = True
        return ray

    # ------------------------------------------------------------------ backend

    def open(
        self, problem: Problem, algorithm: Algorithm[Any, Any, Any], streams: SeedStreams
    ) -> None:
        self.close()
        ray = self._ray = self._connect()
        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        if cpus < self.workers * self.threads:
            self.close()
            raise ConfigError(
                "run.workers",
                f"{self.workers} workers x {self.threads} threads need "
                f"{self.workers * self.threads} CPUs; the Ray cluster has {cpus:g}",
            )
        costs = np.maximum(problem.num_samples.astype(np.float64), 1.0)
        groups = [g for g in balance(costs, self.workers) if g]
        self._owner = np.zeros(problem.num_clients, dtype=np.int64)
        shards = [problem.shard(g) for g in groups]
        whole = None if all(s is not None for s in shards) else ray.put(problem)
        algo_ref, streams_ref = ray.put(algorithm), ray.put(streams)
        host = ray.remote(_ClientHost).options(num_cpus=self.threads, scheduling_strategy="SPREAD")
        for a, (group, shard) in enumerate(zip(groups, shards, strict=True)):
            self._owner[group] = a
            ref, ids = (whole, None) if shard is None else (ray.put(shard), group)
            self._actors.append(host.remote(ref, ids, algo_ref, streams_ref, self.threads))
        self._stateful = algorithm.stateful_clients
        self._held = {}
        self._gather([actor.ready.remote() for actor in self._actors])

    def run_round(self, server: Any, round_: int, tasks: Sequence[Task]) -> list[ClientResult]:
        if not self._actors:
            raise RuntimeError("RayBackend.open() was not called")
        ray = self._ray
        per_actor: dict[int, list[int]] = {}
        for j, (cid, _) in enumerate(tasks):
            per_actor.setdefault(int(self._owner[cid]), []).append(j)
        server_ref = ray.put(server)
        futures = []
        for a, js in per_actor.items():
            sent = [(tasks[j][0], self._outgoing(*tasks[j])) for j in js]
            futures.append(self._actors[a].run.remote(server_ref, round_, sent))
        results: list[ClientResult | None] = [None] * len(tasks)
        for js, out in zip(per_actor.values(), self._gather(futures), strict=True):
            for j, res in zip(js, out, strict=True):
                results[j] = res
                if self._stateful:
                    self._held[tasks[j][0]] = res[1]
        return [r for r in results if r is not None]

    def _outgoing(self, cid: int, state: Any) -> Any:
        """The state to send, or :class:`_Held` when the actor holds this very one."""
        if self._stateful and cid in self._held and self._held[cid] is state:
            return _Held()
        return state

    def _gather(self, futures: list[Any]) -> list[Any]:
        ray = self._ray
        try:
            out: list[Any] = ray.get(futures)
        except ray.exceptions.RayError as e:
            self.close()
            raise PhloemError(
                f"a Ray actor failed (starting, or in a client update):\n{e}"
            ) from None
        return out

    def close(self) -> None:
        ray, actors = self._ray, self._actors
        self._actors, self._held, self._ray = [], {}, None
        if ray is None:
            return
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if self._owns:
            self._owns = False
            ray.shutdown()
