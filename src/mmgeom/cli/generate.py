"""``mmgeom generate RUN``: decode images from a trained run's embeddings and score them."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .guard import guard


class DecoderKind(str, enum.Enum):
    """``--decoder`` choices of ``mmgeom generate``."""

    conv = "conv"
    diffusion = "diffusion"


def generate_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (mmgeom train/demo).")],
    image_view: Annotated[
        str, typer.Option("--image-view", metavar="VIEW", help="The view that is an image (mfeat: pix).")
    ] = "pix",
    decoder: Annotated[DecoderKind, typer.Option("--decoder", help="conv (fast) or diffusion.")] = (
        DecoderKind.conv
    ),
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Decoder training steps (default 800 conv, 1500 diffusion)."),
    ] = None,
    image_shape: Annotated[
        str | None,
        typer.Option("--image-shape", metavar="H,W", help="Image shape when the dataset has none."),
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", metavar="WHICH", help="final, best, latest or a path.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of decoder, classifier and sampling.")] = 0,
    classifier_steps: Annotated[
        int, typer.Option("--classifier-steps", min=1, help="Training steps of the scoring classifier.")
    ] = 1500,
) -> None:
    """Decode images from every other view's embeddings of a trained run (UnCLIP-style, no prior).

    Trains a decoder on the run's image-view embeddings (training split), decodes the test split from the
    image's own embedding, each other view and their mix, scores the images (classifier-space FID,
    precision/recall, accuracy, pixel MSE) and writes RUN/generation/ (results.json, PNG grid, weights),
    which `mmgeom report RUN` shows.
    """
    from ..generation.from_run import generate_from_run
    from ..report.tables import generation_table

    shape = guard(lambda: [int(x) for x in image_shape.split(",")]) if image_shape else None
    report = guard(
        lambda: generate_from_run(
            run_dir,
            image_view,
            decoder=decoder.value,
            steps=steps,
            image_shape=shape,
            checkpoint=checkpoint,
            seed=seed,
            classifier_steps=classifier_steps,
            log=lambda m: typer.echo(m, err=True),
        )
    )
    Console().print(generation_table(report.decoder, report.image_view, report.metrics))
    typer.echo(
        f"classifier accuracy on real test images: {report.reference['test_accuracy']:.3f} "
        "(FID is measured in that classifier's features, not Inception)"
    )
    typer.echo(f"written: {report.out_dir}")
