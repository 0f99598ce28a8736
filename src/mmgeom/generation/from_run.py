"""``mmgeom generate RUN``: train a decoder on a trained run's image embeddings and decode the other views.

Writes into ``RUN/generation/``: ``results.json`` (metrics per condition), one PNG grid per decoder
(first row the real test images, then one row per condition) and the decoder weights; ``mmgeom report``
shows the grids and the table.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._io import atomic_write_text
from ..data import load_dataset
from ..evaluation import embed_views
from ..seeding import seed_everything
from ..train.checkpoint import save_module
from ..train.runload import load_run
from .base import ImageDecoder
from .classifier import train_feature_classifier
from .conv import ConvDecoder
from .diffusion import DiffusionDecoder
from .evaluate import GenerationScorer
from .fit import fit_decoder, mix_embeddings
from .grid import save_grid

GENERATION_DIR = "generation"
RESULTS_FILE = "results.json"

#: Image shapes of the bundled datasets' image views (others need ``image_shape``).
KNOWN_IMAGE_SHAPES: dict[tuple[str, str], tuple[int, int]] = {("mfeat", "pix"): (16, 15)}


@dataclass
class GenerationReport:
    """What :func:`generate_from_run` measured and wrote."""

    out_dir: Path
    image_view: str
    decoder: str
    metrics: dict[str, dict[str, float]]
    reference: dict[str, float]
    files: list[Path] = field(default_factory=list)


def _image_shape(dataset: str, view: str, dim: int, image_shape: Sequence[int] | None) -> tuple[int, int]:
    shape = tuple(image_shape) if image_shape is not None else KNOWN_IMAGE_SHAPES.get((dataset, view))
    if shape is None:
        raise ValueError(
            f"{view}: the image shape of view {view!r} of dataset {dataset!r} is not known; pass image_shape "
            "(--image-shape H,W)"
        )
    if len(shape) != 2 or math.prod(shape) != dim:
        raise ValueError(f"{view}: image_shape {shape} does not hold the view's {dim} values")
    return (int(shape[0]), int(shape[1]))


def _to_unit_range(x: Tensor, lo: float, hi: float) -> Tensor:
    return ((x - lo) / max(hi - lo, 1e-12)).clamp(0.0, 1.0)


def generate_from_run(
    run_dir: str | Path,
    image_view: str,
    *,
    decoder: str = "conv",
    steps: int | None = None,
    batch_size: int = 64,
    image_shape: Sequence[int] | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    sample_steps: int = 20,
    guidance: float = 2.0,
    classifier_steps: int = 1500,
    log: Callable[[str], None] | None = None,
) -> GenerationReport:
    """Train a decoder on the run's training-split ``image_view`` embeddings, decode every other view.

    The raw (unstandardised) image view is rescaled to ``[0, 1]`` with the training rows' min and max.
    Conditions on the test split: the image's own embedding (the self-reconstruction bound), each other
    view, and the mean of all other views. Scores (:class:`GenerationScorer`): classifier-space FID,
    precision/recall, class accuracy where the data has labels, pixel MSE to the paired real image.

    Args:
        run_dir: a run written by ``mmgeom train`` / ``mmgeom demo``.
        image_view: the view that is an image (e.g. ``"pix"`` of mfeat).
        decoder: ``"conv"`` or ``"diffusion"``.
        steps: decoder training updates (default 800 conv, 1500 diffusion).
        batch_size: rows per decoder update.
        image_shape: ``(H, W)`` of the image view when the dataset does not define it.
        checkpoint: which weights of the run (see :func:`mmgeom.train.load_run`).
        seed: seed of the decoder, its batches, the classifier and sampling.
        sample_steps: DDIM steps (diffusion).
        guidance: classifier-free guidance scale (diffusion).
        classifier_steps: training steps of the scoring classifier.
        log: progress messages.

    Raises:
        ValueError: unknown view, unknown decoder, or an image shape that does not fit.
    """
    say = log or (lambda _: None)
    if decoder not in ("conv", "diffusion"):
        raise ValueError(f"decoder: expected 'conv' or 'diffusion', got {decoder!r}")
    run = load_run(run_dir, checkpoint)
    views = list(run.data.train.view_names)
    if image_view not in views:
        raise ValueError(f"image_view: {image_view!r} is not a view of this run; available: {views}")
    if len(views) < 2:
        raise ValueError("generate: the run needs at least two views")
    dataset = run.config.data.dataset
    raw = load_dataset(dataset, views).views[image_view]
    shape = _image_shape(dataset, image_view, raw.shape[1], image_shape)
    split = run.data.split
    lo, hi = float(raw[split.train].min()), float(raw[split.train].max())
    images = {p: _to_unit_range(raw[split[p]], lo, hi).reshape(-1, 1, *shape) for p in ("train", "test")}
    labels = {p: run.data.part(p).labels for p in ("train", "test")}
    emb_train = embed_views(run.encoder, run.data.train)[image_view]
    emb_test = embed_views(run.encoder, run.data.test)
    others = [v for v in views if v != image_view]
    conditions = {f"self ({image_view})": emb_test[image_view], **{v: emb_test[v] for v in others}}
    if len(others) > 1:
        conditions[f"mix of the {len(others)}"] = mix_embeddings(*(emb_test[v] for v in others))

    seed_everything(seed)
    say(f"training the scoring classifier on {len(images['train'])} real images")
    clf = train_feature_classifier(images["train"], labels["train"], steps=classifier_steps, seed=seed)
    scorer = GenerationScorer(clf, images["test"])
    dim = emb_train.shape[1]
    dec: ImageDecoder = ConvDecoder(dim, shape) if decoder == "conv" else DiffusionDecoder(dim, shape)
    n_steps = steps if steps is not None else (800 if decoder == "conv" else 1500)
    say(f"training the {decoder} decoder ({n_steps} steps) on the {image_view} embeddings")
    tic = time.perf_counter()
    fit_decoder(
        dec,
        emb_train,
        images["train"],
        steps=n_steps,
        batch_size=batch_size,
        seed=seed,
        warmup_steps=min(100, n_steps // 10),
    )
    fit_seconds = time.perf_counter() - tic
    gen = torch.Generator().manual_seed(seed)
    metrics, decoded = {}, {}
    for name, cond in conditions.items():
        if isinstance(dec, DiffusionDecoder):
            decoded[name] = dec.sample(cond, generator=gen, steps=sample_steps, guidance=guidance)
        else:
            decoded[name] = dec.sample(cond)
        metrics[name] = scorer.score(decoded[name], labels=labels["test"], targets=images["test"])
        say(f"  {name:16s} FID {metrics[name]['fid']:8.2f}  accuracy {metrics[name]['accuracy']:.3f}")
    out = Path(run_dir) / GENERATION_DIR
    out.mkdir(exist_ok=True)
    cols = torch.cat([torch.nonzero(labels["test"] == c).flatten()[:1] for c in labels["test"].unique()])
    grid = save_grid(
        out / f"grid-{decoder}.png",
        torch.cat([images["test"][cols]] + [d[cols] for d in decoded.values()]),
        nrow=len(cols),
        scale=3,
    )
    weights = save_module(out / f"decoder-{decoder}.safetensors", dec)
    reference = {"test_accuracy": clf.accuracy(images["test"], labels["test"])}
    payload: dict[str, Any] = {
        "image_view": image_view,
        "decoder": decoder,
        "steps": n_steps,
        "seed": seed,
        "fit_seconds": fit_seconds,
        "rows": list(conditions),
        "metrics": metrics,
        "reference": reference,
        "grid": grid.name,
        "note": "FID/precision/recall in the feature space of a CNN trained on the run's "
        "real training images (not Inception-FID); row 1 of the grid: real test images",
    }
    results = out / RESULTS_FILE
    previous = json.loads(results.read_text()) if results.exists() else {}
    previous[decoder] = payload
    atomic_write_text(results, json.dumps(previous, indent=2))
    return GenerationReport(out, image_view, decoder, metrics, reference, [grid, weights, results])
