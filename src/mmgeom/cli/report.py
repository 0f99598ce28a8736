"""``mmgeom report RUN_DIR``: write a run's HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .guard import guard


def report_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (metrics.jsonl).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="HTML file (default RUN_DIR/report.html)."),
    ] = None,
    inline: Annotated[
        bool,
        typer.Option(
            "--inline/--linked", help="Embed the PNG plots in the page (default) or save them next to it."
        ),
    ] = True,
) -> None:
    """Write a self-contained HTML report: loss curves, retrieval, classification, geometry, config."""
    from ..report import write_report

    path = guard(lambda: write_report(run_dir, out, inline=inline))
    typer.echo(f"report: {path}")
