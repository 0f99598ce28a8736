"""``mmgeom compare RUN [RUN ...]``: one HTML page comparing runs (or a study folder's runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .guard import guard


def _parse_select(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--select")
        out[key.strip()] = value.strip()
    return out


def compare_command(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN [RUN ...]", help="Run directories (metrics.jsonl) or study folders."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="HTML file to write.")] = Path(
        "compare.html"
    ),
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select", metavar="KEY=VALUE", help="Keep a study's run records with this value (repeatable)."
        ),
    ] = None,
) -> None:
    """Compare runs on one self-contained page: curves, first -> last table, config differences."""
    from ..report import write_compare

    filters = _parse_select(select or [])
    path = guard(lambda: write_compare(runs, out, filters))
    typer.echo(f"compare: {path}")
