"""``phloem secagg ...``: benchmark a secure-aggregation round and explain its parameters.

Each command builds a :class:`~phloem.secagg.settings.SecAggSettings` from its options, calls
one library function (:func:`phloem.secagg.bench.run_bench`, or the settings' parameter choice
and its explanation) and prints the typed result. The library validates every value; its
errors name its own fields, which :func:`_as_flags` renames to the options the user typed.
The protocol machinery is imported when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.table import Table

from phloem.cli.common import guarded
from phloem.core.errors import ConfigError
from phloem.secagg.settings import PrgKind, Protocol, SecAggSettings
from phloem.secagg.stages import PROTOCOL_STAGES, Stage

if TYPE_CHECKING:
    from phloem.secagg.bench import BenchResult

__all__ = ["app"]

app = typer.Typer(help="Secure aggregation (SecAgg, SecAgg+).", no_args_is_help=True)
console = Console()

R = TypeVar("R")

#: library field -> option, shared by both commands
_COMMON_FLAGS = {
    "protocol": "--protocol",
    "num_shares": "--num-shares",
    "threshold": "--threshold",
    "clients": "--clients",
    "n": "--clients",
}
#: ``bench``: the drop rate of the run is ``--dropout``, the design tolerances are separate
_BENCH_FLAGS = {
    **_COMMON_FLAGS,
    "dropout": "--dropout",
    "dim": "--dim",
    "stage": "--stage",
    "tolerate_dropout": "--tolerate-dropout",
    "tolerate_corrupt": "--tolerate-corrupt",
    "modulus_bits": "--modulus-bits",
    "prg": "--prg",
}
#: ``params``: ``--dropout`` and ``--corrupt`` are the design tolerances
_PARAMS_FLAGS = {
    **_COMMON_FLAGS,
    "tolerate_dropout": "--dropout",
    "tolerate_corrupt": "--corrupt",
    "sigma": "--sigma",
    "eta": "--eta",
    "trials": "--mc-trials",
}


def _as_flags(flags: Mapping[str, str], fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Call ``fn``; a :class:`ConfigError` it raises names the option instead of the field."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise exc.with_field(flags.get(exc.field, exc.field)) from None


def _table(r: BenchResult) -> Table:
    t = Table(
        title=f"{'ok' if r.ok else 'FAILED'}: n={r.clients} dim={r.dim} "
        f"k={r.num_shares} t={r.threshold} dropped={r.dropped} at {r.stage}"
    )
    for c in ("stage", "answered", "client mean s", "client max s", "server s", "up B", "down B"):
        t.add_column(c, justify="right")
    for name, s in r.stages.items():
        t.add_row(
            name,
            str(s["answered"]),
            f"{s['client_mean_s']:.4f}",
            f"{s['client_max_s']:.4f}",
            f"{s['server_s']:.4f}",
            f"{s['up_mean_bytes']:,}",
            f"{s['down_mean_bytes']:,}",
        )
    return t


def _print_bench(r: BenchResult) -> None:
    console.print(_table(r))
    console.print(
        f"round {r.wall_s:.3f} s in process (all clients in turn); one client {r.client_s:.4f} s; "
        f"server {r.server_s:.4f} s; upload {r.up_bytes / 1024:.1f} KiB, download "
        f"{r.down_bytes / 1024:.1f} KiB per client; peak RSS {r.peak_rss_mb:.0f} MB"
    )
    if r.ok:
        console.print(
            f"weighted mean: max error {r.max_abs_error:.3g} against the exact mean of the "
            f"included clients (bound {r.error_bound:.3g})"
        )
    else:
        console.print(f"[yellow]{r.abort}[/yellow]")


_STAGES = ", ".join(PROTOCOL_STAGES)
_PRGS = " or ".join(PrgKind)


@app.command("bench")
def bench(
    clients: Annotated[int, typer.Option("--clients", "-n", help="Clients in the round.")] = 100,
    dim: Annotated[int, typer.Option(help="Entries per client vector.")] = 100_000,
    dropout: Annotated[float, typer.Option(help="Fraction of clients that drop out.")] = 0.0,
    stage: Annotated[str, typer.Option(help=f"Stage they drop at: {_STAGES}.")] = (
        Stage.MASKED_INPUT.value
    ),
    protocol: Annotated[str, typer.Option(help="secagg (complete graph) or secagg+.")] = (
        Protocol.SECAGG_PLUS.value
    ),
    num_shares: Annotated[
        int | None, typer.Option(help="k, holders per client incl. itself (default: derived).")
    ] = None,
    threshold: Annotated[int | None, typer.Option(help="t (default: derived).")] = None,
    modulus_bits: Annotated[int, typer.Option(help="Ring Z_(2^b).")] = 32,
    prg: Annotated[str, typer.Option(help=f"{_PRGS}.")] = PrgKind.AES_CTR.value,
    consistency: Annotated[bool, typer.Option(help="Bonawitz round 3 signatures.")] = False,
    tolerate_dropout: Annotated[float, typer.Option(help="Design dropout fraction.")] = 0.1,
    tolerate_corrupt: Annotated[float, typer.Option(help="Design corrupt fraction.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Graph and rounding seed.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
) -> None:
    """Run one round of the shared benchmark workload and report time, bytes and error."""
    from phloem.secagg.bench import run_bench

    settings = guarded(
        _as_flags,
        _BENCH_FLAGS,
        SecAggSettings,
        protocol=cast(Protocol, protocol),  # str -> enum, validated by the settings
        num_shares=num_shares,
        threshold=threshold,
        tolerate_dropout=tolerate_dropout,
        tolerate_corrupt=tolerate_corrupt,
        modulus_bits=modulus_bits,
        prg=cast(PrgKind, prg),
        consistency_check=consistency,
    )
    r = guarded(
        _as_flags,
        _BENCH_FLAGS,
        run_bench,
        clients,
        dim,
        settings,
        dropout=dropout,
        stage=stage,
        seed=seed,
    )
    _print_bench(r)
    if json_out is not None:
        json_out.write_text(json.dumps(r.as_dict(), indent=1))
    if not r.ok:
        raise typer.Exit(4)


@app.command("params")
def params(
    clients: Annotated[int, typer.Option("--clients", "-n", help="Clients in the round.")] = 100,
    dropout: Annotated[float, typer.Option(help="Fraction that may drop out.")] = 0.1,
    corrupt: Annotated[float, typer.Option(help="Fraction the adversary controls.")] = 0.1,
    sigma: Annotated[float, typer.Option(help="Security target, bits.")] = 40.0,
    eta: Annotated[float, typer.Option(help="Correctness target, bits.")] = 30.0,
    protocol: Annotated[str, typer.Option(help="secagg or secagg+.")] = Protocol.SECAGG_PLUS.value,
    num_shares: Annotated[int | None, typer.Option(help="Check this k instead.")] = None,
    threshold: Annotated[int | None, typer.Option(help="Check this t instead.")] = None,
    mc_trials: Annotated[int, typer.Option(help="Monte Carlo connectivity trials.")] = 0,
) -> None:
    """Choose (or check) SecAgg+ graph parameters and explain the choice."""
    settings = guarded(
        _as_flags,
        _PARAMS_FLAGS,
        SecAggSettings,
        protocol=cast(Protocol, protocol),  # str -> enum, validated by the settings
        num_shares=num_shares,
        threshold=threshold,
        tolerate_dropout=dropout,
        tolerate_corrupt=corrupt,
        sigma=sigma,
        eta=eta,
    )
    text = guarded(_as_flags, _PARAMS_FLAGS, settings.explain, clients, mc_trials)
    console.print(text, markup=False, highlight=False)
