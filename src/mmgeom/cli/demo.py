"""``mmgeom demo``: the packaged demo config, announced in one line, then trained like ``mmgeom train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..train import demo_config
from .guard import guard, is_rank_zero
from .options import PROGRESS_HELP, SCORE_HELP, SET_OPTION, Score
from .train import train_and_report


def demo_command(
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, metavar="N", help="Training steps (default: the config's)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Run directory (default runs/demo-<time>)."),
    ] = None,
    overrides: Annotated[list[str] | None, SET_OPTION] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help=PROGRESS_HELP)] = True,
    score: Annotated[Score, typer.Option("--score", help=SCORE_HELP)] = Score.cosine,
) -> None:
    """Align the six real views of UCI Multiple Features with InfoNCE; retrieval before vs after."""
    cfg = guard(lambda: demo_config(steps, overrides or []))
    console = Console(quiet=not is_rank_zero())
    views = cfg.data.view_names()
    console.print(
        f"mmgeom demo: {len(views)} views of UCI Multiple Features ({', '.join(views)}), "
        f"loss {cfg.loss.name} {cfg.loss.kwargs}, {cfg.model.head} heads -> {cfg.model.out_dim}-d, "
        f"{cfg.train.steps} steps of batch {cfg.train.batch_size}",
        highlight=False,
        markup=False,
    )
    train_and_report(cfg, out, progress, score=score.value)
