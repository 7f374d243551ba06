"""``phloem secagg ...``: benchmark a secure-aggregation round and explain its parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from phloem.cli.common import guarded
from phloem.core.errors import ConfigError
from phloem.secagg.aggregate import Protocol, SecAggSettings
from phloem.secagg.bench import BenchResult, run_bench
from phloem.secagg.driver import STAGE_NAMES

__all__ = ["app"]

app = typer.Typer(help="Secure aggregation (SecAgg, SecAgg+).", no_args_is_help=True)
console = Console()


def _settings(
    protocol: str,
    num_shares: int | None,
    threshold: int | None,
    modulus_bits: int,
    prg: str,
    consistency: bool,
    tolerate_dropout: float,
    tolerate_corrupt: float,
    sigma: float = 40.0,
    eta: float = 30.0,
) -> SecAggSettings:
    if protocol not in [p.value for p in Protocol]:
        raise ConfigError("--protocol", f"unknown {protocol!r}", [p.value for p in Protocol])
    return SecAggSettings(
        protocol=Protocol(protocol),
        num_shares=num_shares,
        threshold=threshold,
        dropout=tolerate_dropout,
        corrupt=tolerate_corrupt,
        sigma=sigma,
        eta=eta,
        modulus_bits=modulus_bits,
        prg=prg,  # type: ignore[arg-type]
        consistency_check=consistency,
    )


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


@app.command("bench")
def bench(
    clients: Annotated[int, typer.Option("--clients", "-n", help="Clients in the round.")] = 100,
    dim: Annotated[int, typer.Option(help="Entries per client vector.")] = 100_000,
    dropout: Annotated[float, typer.Option(help="Fraction of clients that drop out.")] = 0.0,
    stage: Annotated[str, typer.Option(help=f"Stage they drop at: {', '.join(STAGE_NAMES)}.")] = (
        "masked_input"
    ),
    protocol: Annotated[str, typer.Option(help="secagg (complete graph) or secagg+.")] = "secagg+",
    num_shares: Annotated[
        int | None, typer.Option(help="k, holders per client incl. itself (default: derived).")
    ] = None,
    threshold: Annotated[int | None, typer.Option(help="t (default: derived).")] = None,
    modulus_bits: Annotated[int, typer.Option(help="Ring Z_(2^b).")] = 32,
    prg: Annotated[str, typer.Option(help="aes-ctr or chacha20.")] = "aes-ctr",
    consistency: Annotated[bool, typer.Option(help="Bonawitz round 3 signatures.")] = False,
    tolerate_dropout: Annotated[float, typer.Option(help="Design dropout fraction.")] = 0.1,
    tolerate_corrupt: Annotated[float, typer.Option(help="Design corrupt fraction.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Graph and rounding seed.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
) -> None:
    """Run one round of the shared benchmark workload and report time, bytes and error."""
    settings = guarded(
        _settings,
        protocol,
        num_shares,
        threshold,
        modulus_bits,
        prg,
        consistency,
        tolerate_dropout,
        tolerate_corrupt,
    )
    r: BenchResult = guarded(
        run_bench, clients, dim, settings, dropout=dropout, stage=stage, seed=seed
    )
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
    protocol: Annotated[str, typer.Option(help="secagg or secagg+.")] = "secagg+",
    num_shares: Annotated[int | None, typer.Option(help="Check this k instead.")] = None,
    threshold: Annotated[int | None, typer.Option(help="Check this t instead.")] = None,
    mc_trials: Annotated[int, typer.Option(help="Monte Carlo connectivity trials.")] = 0,
) -> None:
    """Choose (or check) SecAgg+ graph parameters and explain the choice."""
    import numpy as np

    def explain() -> str:
        s = _settings(
            protocol, num_shares, threshold, 32, "aes-ctr", False, dropout, corrupt, sigma, eta
        )
        return s.parameters(clients).explain(mc_trials, np.random.default_rng(0))

    console.print(guarded(explain), markup=False, highlight=False)
