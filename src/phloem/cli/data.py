"""``phloem data ...``: which data sets a data folder serves, and whether its files are intact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from phloem.data.catalog import CATALOG, verify_folder
from phloem.data.paths import ENV_DIR, data_dir

__all__ = ["app"]

app = typer.Typer(help="Data sets: what is available, and integrity checks.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_cmd(
    folder: Annotated[Path | None, typer.Option(help=f"Data folder (default: ${ENV_DIR}).")] = None,
    verify: Annotated[
        bool, typer.Option(help="Check sizes and SHA-256 against MANIFEST.json.")
    ] = False,
) -> None:
    """List the built-in data sets and whether their files are in the data folder."""
    root = folder or data_dir()
    t = Table(title=f"data folder: {root if root else f'(unset: set {ENV_DIR})'}")
    for column in ("data set", "status", "files / note"):
        t.add_column(column)
    for ds in CATALOG:
        if not ds.files:
            t.add_row(ds.name, "[green]available[/green]", ds.note)
            continue
        missing = [f for f in ds.files if root is None or not (root / f).is_file()]
        status = "[green]found[/green]" if not missing else "[red]missing[/red]"
        detail = ", ".join(missing or ds.files) + (f" ({ds.note})" if ds.note else "")
        t.add_row(ds.name, status, detail)
    console.print(t)
    if not verify:
        return
    if root is None:
        console.print(f"[red]error:[/red] no data folder: pass --folder or set {ENV_DIR}")
        raise typer.Exit(2)
    try:
        checks = verify_folder(root)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    bad = [c for c in checks if c.status != "ok"]
    for c in bad:
        console.print(f"[red]{c.status}[/red] {c.file} {c.detail}")
    console.print(f"verified {len(checks)} files: {len(checks) - len(bad)} ok, {len(bad)} not")
    if bad:
        raise typer.Exit(1)
