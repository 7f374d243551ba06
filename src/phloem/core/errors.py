"""Errors meant for people: each names the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class PhloemError(Exception):
    """Base class of every error phloem raises on purpose."""


class ConfigError(PhloemError, ValueError):
    """A configuration value is missing, of the wrong type, or not one of the allowed values.

    Parameters
    ----------
    field
        Dotted path of the offending field, e.g. ``"algorithm.name"``.
    problem
        What is wrong, in words.
    allowed
        The allowed values, when the choice is closed.
    """

    def __init__(self, field: str, problem: str, allowed: Iterable[object] | None = None) -> None:
        self.field = field
        self.problem = problem
        self.allowed = tuple(allowed) if allowed is not None else None
        msg = f"config field '{field}': {problem}"
        if self.allowed is not None:
            msg += "; allowed: " + ", ".join(repr(a) for a in self.allowed)
        super().__init__(msg)

    def with_field(self, field: str) -> ConfigError:
        """The same error for another field name (a library parameter as the user spelt it:
        a section path, or a command-line option)."""
        return ConfigError(field, self.problem, self.allowed)


class DataNotFoundError(PhloemError, FileNotFoundError):
    """A data file is missing; the message says where it was looked for and how to provide it."""

    def __init__(self, what: str, looked_in: Iterable[Path], how_to_fix: str) -> None:
        self.what = what
        self.looked_in = tuple(looked_in)
        places = ", ".join(str(p) for p in self.looked_in) or "(nowhere: no data folder set)"
        super().__init__(f"{what} not found. Looked in: {places}. {how_to_fix}")


class RunNotFoundError(PhloemError, FileNotFoundError):
    """A path given as a run folder (or its checkpoint) is not one; the message names it."""


class DivergenceError(PhloemError, ArithmeticError):
    """The optimisation produced NaN or inf; history and a checkpoint were saved first."""


class SecAggAbort(PhloemError, RuntimeError):  # noqa: N818 (an abort, not an error)
    """A secure-aggregation round stopped cleanly; ``stage`` and ``reason`` say where and why.

    Nothing about any client's input was revealed: the server aborts before it asks for, or
    combines, the shares that would unmask an incomplete set.
    """

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"secure aggregation aborted at stage '{stage}': {reason}")


class ProtocolError(PhloemError, ValueError):
    """A protocol message was refused: wrong round, wrong stage, bad address, or tampered."""
