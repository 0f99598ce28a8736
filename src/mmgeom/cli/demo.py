"""``mmgeom demo``: three losses side by side on the bundled digits (or one loss with ``--loss``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..studies.demo import DEMO_FILE, DemoSettings, LossSpec, run_comparison
from ..studies.demo.experiment import demo_folder, loss_config
from .guard import guard, is_rank_zero
from .options import PROGRESS_HELP, SCORE_HELP, SET_OPTION, Score
from .train import train_and_report


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def comparison_table(rows: Sequence[Mapping[str, Any]], title: str, meaning: bool = True) -> Table:
    """One column per run; the best value of each row (by its ``better`` direction) in bold with a ``*``."""
    labels = list(rows[0]["values"]) if rows else []
    table = Table(title=title, title_justify="left")
    table.add_column("", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right")
    if meaning:
        table.add_column("meaning")
    for row in rows:
        values = row["values"]
        known = {k: v for k, v in values.items() if v is not None}
        best = None
        if known and row.get("better"):
            best = (max if row["better"] == "higher" else min)(known, key=lambda k: known[k])
        cells = [f"[bold]{_fmt(values[k])}*[/bold]" if k == best else _fmt(values[k]) for k in labels]
        extra = [row.get("meaning", "")] if meaning else []
        table.add_row(row["metric"], *cells, *extra)
    return table


def print_comparison(console: Console, summary: Mapping[str, Any], out: Path) -> None:
    """The retrieval/geometry table, the reading, the classification table and where the runs are."""
    n = len(summary["views"])
    title = (
        f"{summary['steps']} steps each, seed {summary['seed']}, {n} views, test split "
        f"(400 digits; chance hit@1 = 0.0025); * = best of the row"
    )
    console.print(comparison_table(summary["table"], title, meaning=False))
    higher = ", ".join(r["metric"] for r in summary["table"] if r["better"] == "higher")
    lower = ", ".join(r["metric"] for r in summary["table"] if r["better"] == "lower")
    console.print(f"higher is better: {higher}; lower: {lower}", highlight=False, markup=False)
    console.print(summary["reading"], highlight=False, markup=False)
    cls = summary.get("classification")
    if cls:
        console.print(
            comparison_table(
                cls["table"],
                f"Fusion classifier on {' + '.join(cls['views'])} ({cls['epochs']} epochs; DAGR "
                f"{cls['dagr'] or 'library defaults'}), test accuracy",
                meaning=False,
            )
        )
    console.print(f"runs and {DEMO_FILE}: {out}", highlight=False, markup=False)
    if summary.get("compare"):
        console.print(f"comparison page: {summary['compare']}", highlight=False, markup=False)
    else:
        runs = " ".join(str(out / f) for f in summary["runs"])
        console.print(
            f"comparison page: pip install 'mmgeom[plot]', then mmgeom compare {runs}",
            highlight=False,
            markup=False,
        )


def demo_command(
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", min=1, metavar="N", help="Training steps of each run (default: the config's)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Demo folder (default runs/demo-<time>)."),
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option("--loss", metavar="NAME", help="Train this one loss instead (before/after tables)."),
    ] = None,
    classify: Annotated[
        bool, typer.Option("--classify/--no-classify", help="Also the fusion classifier with/without DAGR.")
    ] = True,
    overrides: Annotated[list[str] | None, SET_OPTION] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help=PROGRESS_HELP)] = True,
    score: Annotated[Score, typer.Option("--score", help=SCORE_HELP + " (with --loss)")] = Score.cosine,
) -> None:
    """InfoNCE, UniAlign and align+uniform side by side on six real views; DAGR on a fusion classifier."""
    settings = DemoSettings(steps=steps, overrides=tuple(overrides or ()), classify=classify)
    console = Console(quiet=not is_rank_zero())
    if loss is not None:
        base = guard(lambda: loss_config(settings, None))
        kwargs = dict(base.loss.kwargs) if loss == base.loss.name else {}
        cfg = guard(lambda: loss_config(settings, LossSpec(loss, loss, loss, kwargs), eval_before=True))
        views = cfg.data.view_names()
        console.print(
            f"mmgeom demo: {len(views)} views of UCI Multiple Features ({', '.join(views)}), "
            f"loss {cfg.loss.name} {cfg.loss.kwargs}, {cfg.model.head} heads -> {cfg.model.out_dim}-d, "
            f"{cfg.train.steps} steps of batch {cfg.train.batch_size}",
            highlight=False,
            markup=False,
        )
        train_and_report(cfg, out, progress, score=score.value)
        return
    if score is not Score.cosine:
        raise ValueError("--score: scores the single-loss demo only; add --loss NAME")
    folder = guard(lambda: demo_folder(out))
    console.print(
        "mmgeom demo: the same heads on the six views of UCI Multiple Features, trained with "
        + ", ".join(s.label for s in settings.losses)
        + " (same seed, data order and steps)"
        + ("; then a fusion classifier with and without DAGR" if classify else ""),
        highlight=False,
        markup=False,
    )
    summary = guard(
        lambda: run_comparison(
            folder, settings, progress=progress, log=lambda s: console.print(s, highlight=False, markup=False)
        )
    )
    print_comparison(console, summary, folder)
