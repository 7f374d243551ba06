"""What a run keeps: the typed row of each round, the history, the summary and checkpoints.

:class:`RoundRecord` is the one place a round's row is built (its columns, in their order).
:class:`Recorder` owns the run folder's files: the history (flushed every row), ``summary.json``
and ``checkpoint.pt``, including the last good checkpoint a diverged or interrupted run saves
before it stops, and the history and checkpoint a resumed run starts from.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from phloem.core.errors import PhloemError, RunNotFoundError
from phloem.core.history import History, Row
from phloem.core.rundir import RunDir
from phloem.fl.aggregation import AggregationStats

__all__ = ["TIMING_KEYS", "Checkpoint", "Recorder", "RoundRecord", "Totals"]

#: History columns that measure time and so differ between otherwise identical runs.
TIMING_KEYS = frozenset({"round_s", "eval_s", "wall_s", "secagg_s"})


@dataclass(frozen=True)
class Totals:
    """Running totals of a run: uplink and downlink bits, per-sample gradients, seconds."""

    up: float = 0.0
    down: float = 0.0
    samples: float = 0.0
    wall: float = 0.0


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly after round ``round``.

    While a run goes on, the live state (the loop advances it in place); :meth:`snapshot`
    freezes a copy.
    """

    round: int
    server: Any
    client_states: list[Any]
    totals: Totals

    def snapshot(self) -> Checkpoint:
        return Checkpoint(self.round, self.server, list(self.client_states), self.totals)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(self, tmp)
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> Checkpoint:
        """The checkpoint at ``path``, read without running code from the file.

        It is unpickled with torch's ``weights_only`` loader, which builds only tensors, plain
        values and the classes listed by :func:`_checkpoint_classes` (a checkpoint, the server
        states of the registered algorithms), so a forged ``checkpoint.pt`` cannot execute
        code on ``--resume``.

        Raises
        ------
        RunNotFoundError
            No checkpoint at ``path``.
        PhloemError
            The file is damaged, or holds objects a phloem checkpoint does not.
        """
        if not path.is_file():
            raise RunNotFoundError(
                f"no checkpoint at {path}: the run was killed before it could save one "
                "(a run saves one when it stops, and every run.checkpoint_every rounds)"
            )
        try:
            with torch.serialization.safe_globals(_checkpoint_classes()):
                ck = torch.load(path, weights_only=True)
        except Exception as e:  # damaged zip, truncated pickle, a class not allowed
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if len(first) > 100:  # torch's own explanations run to several sentences
                first = first[:100].rsplit(" ", 1)[0] + " ..."
            raise PhloemError(
                f"{path} is damaged or not a phloem checkpoint ({first}); the history is "
                "intact, but the run cannot resume from this file"
            ) from None
        if not isinstance(ck, Checkpoint):
            raise PhloemError(f"{path} is not a phloem checkpoint")
        if isinstance(ck.totals, dict):  # written before Totals existed: {"up": ..., ...}
            ck.totals = Totals(**ck.totals)
        return ck


def _checkpoint_classes() -> list[Any]:
    """What a checkpoint may hold besides tensors and plain values: the checkpoint classes
    and the dataclasses of every registered algorithm's module (its server state)."""
    import phloem.fl.server_opt
    from phloem.fl.registries import ALGORITHMS

    modules = {sys.modules[ALGORITHMS.get(n).__module__] for n in ALGORITHMS.names()}
    allowed: set[Any] = {Checkpoint, Totals, phloem.fl.server_opt.OptState}
    for module in modules:
        allowed |= {
            v for v in vars(module).values() if isinstance(v, type) and dataclasses.is_dataclass(v)
        }
    # checkpoints written before the class moved from phloem.fl.simulate
    return [*allowed, (Checkpoint, "phloem.fl.simulate.Checkpoint")]


@dataclass(frozen=True)
class RoundRecord:
    """One round's row (before evaluation): who took part, what it cost, how long it took.

    ``train_loss`` is ``None`` for round 0 (no client ran); ``aggregation`` adds the
    aggregation's columns when the round had an aggregation with dropouts or a protocol.
    """

    round: int
    clients: int
    totals: Totals
    up_bits: float = 0.0
    down_bits: float = 0.0
    oracle_samples: float = 0.0
    train_loss: float | None = None
    aggregation: AggregationStats | None = None
    round_s: float = 0.0
    num_clients: int = 1

    def row(self) -> Row:
        """The history row: these columns, in this order (evaluation columns follow)."""
        t = self.totals
        row: Row = {"round": self.round, "clients": self.clients}
        if self.train_loss is not None:
            row["train_loss"] = self.train_loss
        row.update(
            {
                "up_bits": self.up_bits,
                "down_bits": self.down_bits,
                "cum_up_bits": t.up,
                "cum_down_bits": t.down,
                "cum_bits": t.up + t.down,
                "bits_per_client": t.up / self.num_clients,
                "oracle_samples": self.oracle_samples,
                "cum_oracle_samples": t.samples,
            }
        )
        if self.aggregation is not None:
            row.update(self.aggregation.row())
        row.update({"round_s": self.round_s, "wall_s": t.wall})
        return row


def _kept_rows(run_dir: RunDir, last_round: int) -> list[Row]:
    return [
        r
        for r in run_dir.history().rows
        if isinstance(r.get("round"), int) and int(r["round"] or 0) <= last_round
    ]


class Recorder:
    """The history, summary and checkpoints of one run (in memory only without a run folder).

    Parameters
    ----------
    run_dir
        Where the files go, or ``None``.
    checkpoint_every
        Save a checkpoint every this many rounds (0: only when the run stops).
    summary
        What ``summary.json`` always says (algorithm, rounds, seed).
    """

    def __init__(self, run_dir: RunDir | None, checkpoint_every: int, summary: dict[str, Any]):
        self.run_dir, self.checkpoint_every, self._summary = run_dir, checkpoint_every, summary
        self.history = History(None)

    def resume(self) -> Checkpoint:
        """The checkpoint to continue from; the history is cut back to its round."""
        if self.run_dir is None:
            raise ValueError("resume=True needs the run_dir to resume from")
        ck = Checkpoint.load(self.run_dir.checkpoint_path)
        self.history = History(self.run_dir.history_path, _kept_rows(self.run_dir, ck.round))
        return ck

    def begin(self, first_row: Row) -> None:
        """A fresh history whose first row is round 0's."""
        self.history = History(self.run_dir.history_path if self.run_dir is not None else None)
        self.history.append(first_row)

    def append(self, row: Row, state: Checkpoint) -> None:
        """Record a completed round's row, and checkpoint when one is due."""
        self.history.append(row)
        due = self.checkpoint_every and state.round % self.checkpoint_every == 0
        if due and self.run_dir is not None:
            state.snapshot().save(self.run_dir.checkpoint_path)

    def diverged(
        self, row: Row, good: Checkpoint, why: str = "the model has NaN/inf entries"
    ) -> str:
        """Record the diverged round and save the last good checkpoint; the message to raise."""
        self.history.append({**row, "diverged": 1})
        msg = (
            f"diverged at round {row['round']}: {why}. History and "
            f"the round-{good.round} checkpoint were saved; lower the learning rate "
            "(local.lr or server.lr) and rerun."
        )
        self.save(good, "diverged", msg)
        return msg

    def interrupted(self, state: Checkpoint, good: Checkpoint) -> None:
        """Save the last completed round (``state`` if its row is in, else ``good``)."""
        done = len(self.history) and self.history.last().get("round") == state.round
        last = state.snapshot() if done else good
        self.save(
            last, "interrupted", f"interrupted after round {last.round}; resume with --resume"
        )

    def save(self, at: Checkpoint, status: str, message: str = "") -> None:
        """Write ``at`` as the checkpoint and the summary with ``status``."""
        if self.run_dir is None:
            return
        at.save(self.run_dir.checkpoint_path)
        self.run_dir.write_summary(
            {
                **self._summary,
                "status": status,
                "round": at.round,
                "message": message,
                "final": self.history.last(),
            }
        )

    def close(self) -> None:
        self.history.close()
