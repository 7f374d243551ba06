"""Execution backends: where clients' local work runs.

- :class:`SerialBackend`: in the calling process.
- :class:`ProcessBackend`: ``workers`` long-lived processes on this machine. Each keeps its own
  copy of the problem (model, buffers, data: forked once) between clients and rounds, pfl-style;
  a round sends the server state once per worker and the clients' persistent states, and gets
  back messages and new states. Clients are spread over workers by expected cost, results come
  back in cohort order, and every client's randomness is addressed by (round, client), so the
  history is bit-identical to the serial backend's.

Both pin torch to ``threads`` intra-op threads while clients run: kernels may sum in a
different order with another thread count, and bit-identical results need the same order.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import pickle
import sys
import traceback
from abc import ABC, abstractmethod
from collections.abc import Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import numpy as np
import torch

from phloem.core.errors import PhloemError
from phloem.core.rng import SeedStreams
from phloem.fl.algorithms.base import Algorithm, ClientRng, Message
from phloem.fl.problem import Problem

__all__ = ["Backend", "ClientResult", "ProcessBackend", "SerialBackend", "run_client"]

ClientResult = tuple[Message[Any], Any]
Task = tuple[int, Any]


def run_client(
    problem: Problem,
    algorithm: Algorithm[Any, Any, Any],
    streams: SeedStreams,
    server: Any,
    round_: int,
    cid: int,
    state: Any,
) -> ClientResult:
    """One client's update, with its generators for this round."""
    rng = ClientRng(streams, round_, cid)
    algorithm = algorithm.at_round(round_)  # the round's step sizes (phloem.fl.schedules)
    return algorithm.client_update(server, state, problem.client(cid), rng)


class Backend(ABC):
    """Runs the cohort's client updates of a round."""

    @abstractmethod
    def open(
        self, problem: Problem, algorithm: Algorithm[Any, Any, Any], streams: SeedStreams
    ) -> None:
        """Prepare to run clients of ``problem`` (called once per run)."""

    @abstractmethod
    def run_round(self, server: Any, round_: int, tasks: Sequence[Task]) -> list[ClientResult]:
        """Run ``(client id, state)`` tasks; results in the order of ``tasks``."""

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release workers (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SerialBackend(Backend):
    """Clients run one after another in this process."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._ctx: tuple[Problem, Algorithm[Any, Any, Any], SeedStreams] | None = None

    def open(
        self, problem: Problem, algorithm: Algorithm[Any, Any, Any], streams: SeedStreams
    ) -> None:
        self._ctx = (problem, algorithm, streams)

    def run_round(self, server: Any, round_: int, tasks: Sequence[Task]) -> list[ClientResult]:
        if self._ctx is None:
            raise RuntimeError("SerialBackend.open() was not called")
        problem, algorithm, streams = self._ctx
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return [run_client(problem, algorithm, streams, server, round_, c, s) for c, s in tasks]
        finally:
            torch.set_num_threads(before)


# ----------------------------------------------------------------------------- processes


class _Pickler(pickle.Pickler):
    # Dense CPU tensors travel as numpy buffers: much cheaper than torch's own pickling.
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is torch.Tensor and obj.layout == torch.strided and not obj.requires_grad:
            return torch.from_numpy, (obj.detach().contiguous().numpy(),)
        return NotImplemented


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def _worker(
    conn: Connection,
    problem: Problem,
    algorithm: Algorithm[Any, Any, Any],
    streams: SeedStreams,
    threads: int,
) -> None:
    torch.set_num_threads(threads)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        if not data:
            return
        try:
            server, round_, tasks = pickle.loads(data)
            out = [run_client(problem, algorithm, streams, server, round_, c, s) for c, s in tasks]
            conn.send_bytes(_dumps(("ok", out)))
        except KeyboardInterrupt:
            return
        except BaseException as e:  # report everything, the parent decides
            conn.send_bytes(_dumps(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")))


def balance(costs: np.ndarray, bins: int) -> list[list[int]]:
    """Assign items to ``bins`` by longest-processing-time greedy; item order kept per bin."""
    loads = np.zeros(bins)
    assign: list[list[int]] = [[] for _ in range(bins)]
    for j in np.argsort(-costs, kind="stable"):
        b = int(np.argmin(loads))
        assign[b].append(int(j))
        loads[b] += costs[j]
    return [sorted(a) for a in assign]


class ProcessBackend(Backend):
    """Clients run in ``workers`` persistent processes on this machine.

    Parameters
    ----------
    workers
        Number of worker processes.
    threads
        Torch intra-op threads per worker.
    start_method
        ``"fork"`` (default on Linux: the problem is inherited, not copied through a pipe) or
        ``"spawn"``/``"forkserver"`` (the problem and algorithm are pickled to each worker).
    """

    def __init__(self, workers: int = 2, threads: int = 1, start_method: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"backend.workers must be >= 1, got {workers}")
        self.workers, self.threads = workers, threads
        self.start_method = start_method or ("fork" if sys.platform == "linux" else "spawn")
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        self._costs: np.ndarray | None = None

    def open(
        self, problem: Problem, algorithm: Algorithm[Any, Any, Any], streams: SeedStreams
    ) -> None:
        self.close()
        ctx = mp.get_context(self.start_method)
        self._costs = np.maximum(problem.num_samples.astype(np.float64), 1.0)
        for _ in range(self.workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(  # type: ignore[attr-defined]
                target=_worker,
                args=(child, problem, algorithm, streams, self.threads),
                daemon=True,
            )
            p.start()
            child.close()
            self._procs.append(p)
            self._conns.append(parent)

    def run_round(self, server: Any, round_: int, tasks: Sequence[Task]) -> list[ClientResult]:
        if not self._conns or self._costs is None:
            raise RuntimeError("ProcessBackend.open() was not called")
        ids = np.array([c for c, _ in tasks], dtype=np.int64)
        groups = balance(self._costs[ids] if len(ids) else np.zeros(0), len(self._conns))
        busy = []
        for conn, group in zip(self._conns, groups, strict=True):
            if group:
                conn.send_bytes(_dumps((server, round_, [tasks[j] for j in group])))
                busy.append((conn, group))
        results: list[ClientResult | None] = [None] * len(tasks)
        errors = []
        for conn, group in busy:
            try:
                status, payload = pickle.loads(conn.recv_bytes())
            except EOFError:
                errors.append("a worker process died (out of memory or killed)")
                continue
            if status != "ok":
                errors.append(str(payload))
                continue
            for j, res in zip(group, payload, strict=True):
                results[j] = res
        if errors:
            self.close()
            raise PhloemError("client update failed in a worker process:\n" + "\n".join(errors))
        return [r for r in results if r is not None]

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send_bytes(b"")
            conn.close()
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        self._procs, self._conns = [], []
