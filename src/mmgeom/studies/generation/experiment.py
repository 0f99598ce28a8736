"""The generation study's runs: train a space, a decoder on its image embeddings, score generations."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ... import functional as F
from ..._validation import validation
from ...data import DataUnavailableError
from ...data.fashion_mnist import fashion_mnist_available
from ...generation import (
    ConvDecoder,
    DiffusionDecoder,
    GenerationScorer,
    ImageDecoder,
    fit_decoder,
    mix_embeddings,
    save_grid,
    train_feature_classifier,
)
from ...models import MultiViewEncoder
from ...seeding import seed_everything
from ...train.lean import train_loop
from ..results_io import write_json
from ..runner import study_command
from ..tables import aggregate
from .data import Task, _log, load_digits, load_fashion
from .report import render
from .settings import FULL, MIX, OTHER_VIEWS, QUICK, SPACES, Settings, grid_name


def train_space(task: Task, space: str, seed: int, settings: Settings) -> dict[str, Tensor]:
    """Train one space (an MLP head per modality) with loss ``space``; return the test embeddings, and the
    training embeddings of the image modality under the key ``"train/<image>"``."""
    torch.manual_seed(seed)
    dims = {m: x.shape[1] for m, x in task.train.items()}
    hidden = settings.hidden if task.name == "digits" else settings.fashion_hidden
    encoder = MultiViewEncoder.from_dims(dims, "mlp", settings.out_dim, hidden=hidden, layer_norm=True)
    loss_fn = SPACES[space](task.image, settings.temperature)
    gen = torch.Generator().manual_seed(20_000 + seed)
    steps = settings.space_steps if task.name == "digits" else settings.fashion_space_steps

    def loss_at(idx: Tensor) -> Tensor:
        out = loss_fn(encoder(task.train_batch(idx, gen)))
        total: Tensor = out.total
        return total

    encoder.train()
    with validation(False):  # our own encoder's outputs: skip the per-step value checks
        train_loop(
            list(encoder.parameters()) + list(loss_fn.parameters()),
            loss_at,
            num_rows=len(task.train_labels),
            steps=steps,
            batch_size=min(settings.space_batch, len(task.train_labels)),
            lr=settings.space_lr,
            weight_decay=settings.weight_decay,
            warmup_steps=settings.warmup_steps,
            grad_clip=1.0,
            seed=seed,
        )
    encoder.eval()
    with torch.no_grad():
        test = {m: encoder.heads[m](x) for m, x in task.test.items()}
        test[f"train/{task.image}"] = encoder.heads[task.image](task.train[task.image])
    return test


def alignment_with_image(
    task: Task, conds: Mapping[str, Tensor], emb: Mapping[str, Tensor]
) -> dict[str, float]:
    """Mean cosine between each condition and the embedding of the image it should decode to."""
    img = F.normalize(emb[task.image])
    return {name: float((F.normalize(c) * img).sum(1).mean()) for name, c in conds.items()}


def conditions_of(task: Task, emb: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Condition name -> ``(N_test, D)`` embeddings (digits add the mix of the five other views)."""
    out = {name: emb[mod][rows] for name, (mod, rows) in task.conditions.items()}
    if task.name == "digits":
        out[MIX] = mix_embeddings(*(emb[v] for v in OTHER_VIEWS))
    return out


def make_decoder(kind: str, image_shape: tuple[int, int], settings: Settings) -> ImageDecoder:
    """``"conv"`` or ``"diffusion"`` with the study's sizes."""
    if kind == "conv":
        return ConvDecoder(settings.out_dim, image_shape, channels=settings.conv_channels)
    return DiffusionDecoder(
        settings.out_dim,
        image_shape,
        channels=settings.diffusion_channels,
        timesteps=settings.diffusion_timesteps,
    )


def decode(decoder: ImageDecoder, cond: Tensor, seed: int, settings: Settings) -> Tensor:
    """Images from conditions: the conv decoder is deterministic; diffusion uses DDIM with guidance."""
    gen = torch.Generator().manual_seed(30_000 + seed)
    if isinstance(decoder, DiffusionDecoder):
        return decoder.sample(cond, generator=gen, steps=settings.sample_steps, guidance=settings.guidance)
    return decoder.sample(cond, generator=gen)


def decoders(task: Task, seed: int, settings: Settings) -> list[str]:
    """The decoder kinds trained for ``seed`` of ``task``.

    The diffusion decoder costs several times the conv decoder on a CPU (slower training, and
    ``2 * sample_steps`` network passes per image), so it runs on the first ``diffusion_seeds`` seeds
    only (and on Fashion-MNIST only with ``fashion_diffusion``): the full study stays well under an hour
    on 2 cores.
    """
    diffusion = settings.diffusion and seed < settings.diffusion_seeds
    if task.name == "fashion":
        diffusion = diffusion and settings.fashion_diffusion
    return ["conv", "diffusion"] if diffusion else ["conv"]


def run_space(
    task: Task,
    space: str,
    seed: int,
    settings: Settings,
    scorer: GenerationScorer,
    grids: Path | None,
) -> list[dict[str, Any]]:
    """Train the space and both decoders for one seed; score every condition. One record per
    (decoder, condition)."""
    seed_everything(seed)
    tic = time.perf_counter()
    emb = train_space(task, space, seed, settings)
    conds = conditions_of(task, emb)
    align = alignment_with_image(task, conds, emb)
    records = []
    for kind in decoders(task, seed, settings):
        seed_everything(seed)
        dec = make_decoder(kind, task.image_shape, settings)
        steps, bs, lr = (
            (settings.conv_steps, settings.conv_batch, settings.conv_lr)
            if kind == "conv"
            else (settings.diffusion_steps, settings.diffusion_batch, settings.diffusion_lr)
        )
        t0 = time.perf_counter()
        fit_decoder(
            dec,
            emb[f"train/{task.image}"],
            task.train_images,
            steps=steps,
            batch_size=bs,
            lr=lr,
            warmup_steps=min(100, steps // 10),
            seed=seed,
        )
        fit_seconds = time.perf_counter() - t0
        images = {}
        for name, cond in conds.items():
            images[name] = decode(dec, cond, seed, settings)
            targets = task.test_images if task.paired else None
            metrics = scorer.score(images[name], labels=task.test_labels, targets=targets)
            records.append(
                {
                    "task": task.name,
                    "space": space,
                    "seed": seed,
                    "decoder": kind,
                    "condition": name,
                    "alignment": align[name],
                    "fit_seconds": fit_seconds,
                    **metrics,
                }
            )
        if grids is not None and seed == 0:
            save_condition_grid(task, images, grids / grid_name(task.name, space, kind), settings)
    _log(f"  {task.name:7s} {space:42s} seed={seed} ({time.perf_counter() - tic:.0f} s)")
    return records


def grid_columns(labels: Tensor, n: int) -> Tensor:
    """The first test row of each class, then the next ones, ``n`` rows in all (one column each)."""
    firsts = [int(torch.nonzero(labels == c).flatten()[0]) for c in torch.unique(labels).tolist()]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return torch.tensor((firsts + rest)[:n])


def save_condition_grid(task: Task, images: Mapping[str, Tensor], path: Path, settings: Settings) -> None:
    """One row per condition (the real images first), one column per chosen test example."""
    cols = grid_columns(task.test_labels, settings.grid_columns)
    rows = [task.test_images[cols]] + [im[cols] for im in images.values()]
    save_grid(path, torch.cat(rows), nrow=len(cols), scale=3)


def reference_scores(task: Task, scorer: GenerationScorer) -> dict[str, float]:
    """What real images score: the training images against the test images (the floor of FID), and the
    classifier's accuracy on real test images (the ceiling of accuracy)."""
    n = min(len(task.train_images), len(task.test_images))
    # a seeded random subset of the size of the test set: the rows of a split are stored class by class
    rows = torch.randperm(len(task.train_images), generator=torch.Generator().manual_seed(0))[:n]
    ref = scorer.score(task.train_images[rows], labels=task.train_labels[rows])
    ref["test_accuracy"] = float(
        (scorer.classifier.predict(task.test_images) == task.test_labels).double().mean()
    )
    mean_image = task.train_images.mean(0, keepdim=True).expand_as(task.test_images)
    if task.paired:
        ref["mean_image_pixel_mse"] = float(torch.mean((mean_image - task.test_images) ** 2))
    return ref


def run_task(task: Task, settings: Settings, out: Path) -> dict[str, Any]:
    """Every space x seed of one task, with its classifier and reference scores."""
    seed_everything(0)
    tic = time.perf_counter()
    clf = train_feature_classifier(
        task.train_images, task.train_labels, steps=settings.classifier_steps, seed=0
    )
    scorer = GenerationScorer(clf, task.test_images)
    ref = reference_scores(task, scorer)
    _log(
        f"{task.name}: classifier test accuracy {ref['test_accuracy']:.3f} "
        f"({time.perf_counter() - tic:.0f} s)"
    )
    records = []
    for space in SPACES:
        for seed in range(settings.seeds):
            records += run_space(task, space, seed, settings, scorer, out)
    return {
        "note": task.note,
        "paired": task.paired,
        "reference": ref,
        "runs": records,
        "summary": summarize(records),
    }


METRICS = ("fid", "precision", "recall", "accuracy", "pixel_mse", "alignment")


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds for every (space, decoder, condition)."""
    groups: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for r in records:
        key = (r["space"], r["decoder"], r["condition"])
        groups.setdefault(key, []).append({m: r[m] for m in METRICS if m in r})
    return [
        {"space": s, "decoder": d, "condition": c, "metrics": aggregate(v)} for (s, d, c), v in groups.items()
    ]


def run(*, out: Path, seeds: int | None = None, quick: bool = False) -> Path:
    """Run the study (``quick``: a tiny smoke version) and write ``results.md``/``results.json``/grids.

    Args:
        out: results folder (created).
        seeds: seeds per space (``None``: 3, or 1 with ``quick``).
        quick: tiny sizes for tests.

    Returns:
        The path of ``results.md``.
    """
    settings = QUICK if quick else FULL
    if seeds is not None:
        settings = replace(settings, seeds=int(seeds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tasks: dict[str, Any] = {"digits": run_task(load_digits(settings), settings, out)}
    skipped: dict[str, str] = {}
    if settings.fashion and fashion_mnist_available():
        try:
            tasks["fashion"] = run_task(load_fashion(settings), settings, out)
        except DataUnavailableError as err:
            skipped["fashion"] = str(err)
    else:
        skipped["fashion"] = "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
    payload = {
        "command": study_command("generation", out, seeds, quick),
        "settings": asdict(settings),
        "spaces": list(SPACES),
        "wall_seconds": time.perf_counter() - start,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "tasks": tasks,
        "skipped": skipped,
    }
    write_json(out / "results.json", payload)
    return render(out)  # from the saved (rounded) JSON, so a later ``render`` gives the same file
