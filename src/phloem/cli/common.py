"""What every ``phloem`` command shares: turning phloem's errors and interrupts into one line.

No area's code lives here, so that importing it (every command does) costs no torch.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from phloem.core.errors import (
    ConfigError,
    DataNotFoundError,
    DivergenceError,
    PhloemError,
    RunNotFoundError,
)

__all__ = ["err", "guarded"]

R = TypeVar("R")

#: standard error, for messages that must not mix with a command's output (JSON lines)
err = Console(stderr=True)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def guarded(
    fn: Callable[..., R],
    *args: Any,
    interrupted: str = "stopped; nothing was saved.",
    **kwargs: Any,
) -> R:
    """Call ``fn``, turning phloem's errors into one clear line and an exit code.

    Parameters
    ----------
    fn, args, kwargs
        The command's work.
    interrupted
        What to tell the user after Ctrl-C (or SIGTERM, treated alike so that a killed job
        still runs its clean-up): what was kept and how to go on, in the command's terms.

    Exit codes: 2 for a bad config or option, missing data or a missing run folder, 3 for a
    diverged run, 1 for any other error phloem raises on purpose, 130 after an interrupt.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if main_thread else None
    try:
        return fn(*args, **kwargs)
    except ConfigError as e:
        err.print(f"[red]config error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    except DataNotFoundError as e:
        err.print(f"[red]missing data:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    except RunNotFoundError as e:
        err.print(f"[red]not a run:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    except DivergenceError as e:
        err.print(f"[red]diverged:[/red] {escape(str(e))}")
        raise typer.Exit(3) from None
    except PhloemError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted:[/yellow] {escape(interrupted)}")
        raise typer.Exit(130) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
