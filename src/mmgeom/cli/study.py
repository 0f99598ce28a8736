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
    store: Annotated[
        Path | None,
        typer.Option("--store", metavar="PATH", help="Run on this feature store (unialign, l2dir)."),
    ] = None,
    anchor: Annotated[
        str | None, typer.Option("--anchor", metavar="MOD", help="Anchor / query modality (with --store).")
    ] = None,
    modalities: Annotated[
        str | None,
        typer.Option("--modalities", metavar="A,B,C", help="Modalities to use, in order (with --store)."),
    ] = None,
    relevance: Annotated[
        str,
        typer.Option("--relevance", metavar="KIND", help="l2dir on a store: instance or label."),
    ] = "instance",
    max_rows: Annotated[
        int | None,
        typer.Option("--max-rows", min=1, metavar="N", help="At most N rows per split (seeded sample)."),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            metavar="F",
            help="Training rows held out as validation if the store has no val.",
        ),
    ] = None,
) -> None:
    """Run a reproduction study on the bundled real data, or with --store on your feature store."""
    # imported on use: keeps the start of every other command light
    folder = out if out is not None else Path("runs") / f"study-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if store is None:
        given = [
            o
            for o, v in (
                ("--anchor", anchor),
                ("--modalities", modalities),
                ("--max-rows", max_rows),
                ("--val-fraction", val_fraction),
            )
            if v is not None
        ]
        if relevance != "instance":
            given.append("--relevance")
        if given:
            guard(lambda: _needs_store(given))
        from ..studies import run_study

        path = guard(lambda: run_study(name, out=folder, seeds=seeds, quick=quick))
    else:
        from ..studies.store_runs import run_store_study

        mods = [m.strip() for m in modalities.split(",")] if modalities is not None else None
        path = guard(
            lambda: run_store_study(
                name,
                store=store,
                out=folder,
                anchor=anchor,
                modalities=mods,
                relevance=relevance,
                seeds=seeds,
                quick=quick,
                val_fraction=val_fraction,
                max_rows=max_rows,
            )
        )
    typer.echo(f"results: {path}")


def _needs_store(options: list[str]) -> None:
    raise ValueError(f"{', '.join(options)}: only with --store PATH (the bundled studies fix their data)")
