"""``mmgeom train`` and ``mmgeom config show|validate``: load a config, train it, print the report."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..distributed import shutdown_distributed
from ..evaluation.scoring import magnitude_rescored_event
from ..report.tables import diagnostics_table, pairs_table
from ..train import ExperimentConfig, Trainer, TrainResult
from ..train.presets import load_preset_or_file
from .guard import guard
from .launch import join_distributed, resolve_resume_dir
from .options import CONFIG_ARG, PROGRESS_HELP, SCORE_HELP, SET_OPTION, Score


def magnitude_scored(trainer: Trainer, result: TrainResult, cfg: ExperimentConfig) -> TrainResult:
    """``result`` with its final retrieval re-scored by L2Dir magnitude scoring ``<ẑ_q, ‖h_d‖ ẑ_d>``.

    The untrained (step 0) evaluation is dropped: it was scored by cosine. See
    :func:`mmgeom.evaluation.scoring.magnitude_rescored_event`.
    """
    data = trainer.data.part(cfg.eval.split)
    event = magnitude_rescored_event(
        result.final_eval,
        getattr(trainer.encoder, "module", trainer.encoder),  # unwrap DDP
        data,
        trainer.device,
        pairs=cfg.eval.resolve_pairs(data.view_names),
        directions=cfg.eval.directions,
        ks=cfg.eval.ks,
        step=result.steps,
    )
    return dataclasses.replace(result, evals=[event])


def print_report(console: Console, result: TrainResult, cfg: ExperimentConfig, wall: float) -> None:
    """The retrieval and diagnostics tables, the loss and where the run's files are."""
    console.print(pairs_table(result, cfg))
    diag = diagnostics_table(result)
    if diag is not None:
        console.print(diag)
    if result.history:
        first, last = result.history[0]["loss"], result.history[-1]["loss"]
        console.print(
            f"loss ({cfg.loss.name}): {first:.4f} (first {cfg.train.log_every} steps) -> {last:.4f} "
            f"(last {cfg.train.log_every})"
        )
    console.print(f"{result.steps} steps in {wall:.1f} s; run directory: {result.run_dir}", highlight=False)
    console.print(
        "  config.yaml, metrics.jsonl" + (f", {result.weights.name}" if result.weights else ""),
        highlight=False,
    )


def train_and_report(
    cfg: ExperimentConfig, out: Path | None, progress: bool, resume: bool = False, score: str = "cosine"
) -> None:
    """Join torchrun if launched by it, train, and print the report on rank 0."""
    console = Console()
    start = time.perf_counter()
    info = guard(lambda: join_distributed(cfg))
    try:
        trainer = guard(lambda: Trainer(cfg, out, progress=progress, resume=resume))
        result = guard(trainer.fit)
        if info.is_main:
            if score == "magnitude":
                result = magnitude_scored(trainer, result, cfg)
                console.print(
                    "score: magnitude — <q/|q|, |h_d| · h_d/|h_d|>: the query normalised, each gallery "
                    "item keeps the L2 norm of its raw embedding (L2Dir scoring)",
                    highlight=False,
                    markup=False,
                )
            print_report(console, result, cfg, time.perf_counter() - start)
    finally:
        shutdown_distributed()


def train_command(
    config: Annotated[str, CONFIG_ARG],
    overrides: Annotated[list[str] | None, SET_OPTION] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Run directory (default runs/<name>-<time>)."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help=PROGRESS_HELP)] = True,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="[RUN_DIR]",
            help="Continue the run in RUN_DIR from its newest good checkpoint (bit-identical to an "
            "uninterrupted run); without RUN_DIR: --out, run.out_dir, or the newest runs/<name>-*.",
        ),
    ] = None,
    score: Annotated[Score, typer.Option("--score", help=SCORE_HELP)] = Score.cosine,
) -> None:
    """Train from a YAML config; writes config.yaml, metrics.jsonl and model.safetensors to the run dir.

    Several processes: torchrun --nproc-per-node N -m mmgeom train CONFIG (DDP; gloo on CPU, nccl on GPU).
    """
    cfg = guard(lambda: load_preset_or_file(config, overrides or []))
    if resume is not None:
        out = guard(lambda: resolve_resume_dir(resume, out, cfg))
    train_and_report(cfg, out, progress, resume=resume is not None, score=score.value)


def config_show_command(
    config: Annotated[str, CONFIG_ARG],
    overrides: Annotated[list[str] | None, SET_OPTION] = None,
) -> None:
    """Print the resolved config as YAML: every key, defaults filled in, overrides applied."""
    cfg = guard(lambda: load_preset_or_file(config, overrides or []))
    typer.echo(cfg.to_yaml(), nl=False)


def config_validate_command(
    config: Annotated[str, CONFIG_ARG],
    overrides: Annotated[list[str] | None, SET_OPTION] = None,
) -> None:
    """Check a config; exit 0 when valid, else 2 with each offending key path."""
    guard(lambda: load_preset_or_file(config, overrides or []))
    typer.echo(f"{config}: valid")
