"""``mmgeom study NAME``: run a reproduction study and say where its results file is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .guard import guard


def study_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Study name (see docs/studies.md).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Results folder (default runs/study-<name>-<time>)."),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, metavar="N", help="Seeds per setting (default: study's).")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A tiny version of the study (smoke test).")] = False,
) -> None:
    """Run a reproduction study on the bundled real data; writes a markdown results file and plots."""
    from ..studies import run_study  # imported on use: keeps the start of every other command light

    folder = out if out is not None else Path("runs") / f"study-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = guard(lambda: run_study(name, out=folder, seeds=seeds, quick=quick))
    typer.echo(f"results: {path}")
