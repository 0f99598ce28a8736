"""Study ``mmgeom study generation``: do better-aligned spaces generate better images from other modalities?

UniAlign's second claim (Yin et al., arXiv 2602.09507) is about generation: an UnCLIP-style decoder
trained on *image* embeddings and fed the embeddings of *other* modalities makes better images when the
modalities share one distribution. This study tests it on real data, with no prior network:

* **digits** — the six views of UCI Multiple Features; the image modality is the 16x15 ``pix`` view.
  A space (one MLP head per view) is trained with each loss of :data:`SPACES`; a decoder learns
  ``pix`` embedding -> ``pix`` image on the training split; on the test split it decodes the ``pix``
  embedding itself (the *self-reconstruction bound*), each of the five other views' embeddings, and
  their mixture (the mean of the five normalised embeddings). The data is instance-paired, so the pixel
  error to the real image of the same digit is measured too.
* **fashion** — Fashion-MNIST images and the frozen all-MiniLM-L6-v2 embeddings of class phrasings
  (:mod:`mmgeom.studies.prompts`); the decoder learns image embedding -> image and is fed the embedding
  of a held-out phrasing of each test image's class (class-paired: no pixel error). Needs the Debian
  package ``dataset-fashion-mnist``; skipped with a note where it is absent.

Two decoders (:mod:`mmgeom.generation`): the deterministic :class:`~mmgeom.generation.ConvDecoder` and
the conditional :class:`~mmgeom.generation.DiffusionDecoder` (DDIM sampling, classifier-free guidance).
Images are scored by :class:`~mmgeom.generation.GenerationScorer` in the feature space of a CNN
trained on the real training images (not Inception-FID). Alignment of each view with the image is
measured as the mean cosine of test positive pairs; the report correlates it with the FID gap.

Outputs in ``out``: ``results.md`` (tables, answers, grids), ``results.json`` and PNG image grids.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import functional as F
from .._validation import validation
from ..data import DataUnavailableError, load_dataset, split_and_standardize
from ..data.fashion_mnist import fashion_mnist_available, load_fashion_mnist
from ..generation import (
    ConvDecoder,
    DiffusionDecoder,
    GenerationScorer,
    ImageDecoder,
    fit_decoder,
    mix_embeddings,
    save_grid,
    train_feature_classifier,
)
from ..losses import create_loss
from ..models import MultiViewEncoder
from ..seeding import seed_everything
from ..train.lean import train_loop
from .common import aggregate, cache_dir, cached_store, study_command, write_json

#: The image view of the digits and the other views, in the dataset's canonical order.
IMAGE_VIEW = "pix"
OTHER_VIEWS: tuple[str, ...] = ("fou", "fac", "kar", "zer", "mor")
MIX = "mix of the 5"
SELF = "self (pix)"

#: Space label -> loss factory ``(anchor) -> loss``; all anchored on the image modality.
SPACES: dict[str, Callable[[str, float], nn.Module]] = {
    "InfoNCE (anchor)": lambda a, t: create_loss("infonce", temperature=t, anchor=a),
    "GRAM": lambda a, t: create_loss("gram", anchor=a),
    "UniAlign (generation, lambda_vol = 0.1)": lambda a, t: create_loss(
        "unialign", anchor=a, preset="generation"
    ),
    "UniAlign (centroid)": lambda a, t: create_loss("unialign", anchor=a, alignment="centroid"),
}


@dataclass(frozen=True)
class Settings:
    """Everything that defines a run of the study (stored in ``results.json``)."""

    seeds: int = 3
    space_steps: int = 200
    space_batch: int = 256
    space_lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    hidden: int = 128
    out_dim: int = 64
    temperature: float = 0.1
    conv_steps: int = 800
    conv_batch: int = 64
    conv_channels: tuple[int, ...] = (32, 16)
    conv_lr: float = 2e-3
    diffusion: bool = True
    diffusion_seeds: int = 1
    fashion_diffusion: bool = False
    diffusion_steps: int = 1500
    diffusion_batch: int = 64
    diffusion_lr: float = 2e-3
    diffusion_channels: tuple[int, ...] = (16, 32)
    diffusion_timesteps: int = 100
    sample_steps: int = 20
    guidance: float = 2.0
    classifier_steps: int = 1500
    fashion: bool = True
    fashion_train_rows: int = 10000
    fashion_test_rows: int = 2000
    fashion_space_steps: int = 600
    fashion_hidden: int = 256
    grid_columns: int = 10
    split_seed: int = 0


FULL = Settings()
QUICK = Settings(
    seeds=1,
    space_steps=10,
    warmup_steps=2,
    conv_steps=10,
    diffusion_steps=5,
    diffusion_channels=(8, 16),
    diffusion_timesteps=20,
    sample_steps=3,
    classifier_steps=20,
    fashion_train_rows=400,
    fashion_test_rows=100,
    fashion_space_steps=10,
    fashion_diffusion=True,
)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------- the data


@dataclass
class Task:
    """One dataset of the study: features per modality, the image modality's pixels, labels.

    ``train_batch(idx, gen)`` builds a training batch (modality -> features) from image-row indices;
    ``conditions`` are the test-time conditions ``name -> (modality, row index into that modality's
    test features)``, one row per test image.
    """

    name: str
    image: str
    image_shape: tuple[int, int]
    train: dict[str, Tensor]
    test: dict[str, Tensor]
    train_images: Tensor
    test_images: Tensor
    train_labels: Tensor
    test_labels: Tensor
    train_batch: Callable[[Tensor, torch.Generator], dict[str, Tensor]]
    conditions: dict[str, tuple[str, Tensor]]
    paired: bool
    note: str


def load_digits(settings: Settings) -> Task:
    """The six mfeat views (standardised with training statistics) and the raw ``pix`` images in [0, 1]."""
    raw = load_dataset("mfeat", None)
    data = split_and_standardize(raw, seed=settings.split_seed)
    pix = raw.views[IMAGE_VIEW] / 6.0  # pixel averages 0..6
    images = {p: pix[data.split[p]].reshape(-1, 1, 16, 15) for p in ("train", "test")}
    n_test = len(data.test)
    everyone = torch.arange(n_test)
    conditions = {SELF: (IMAGE_VIEW, everyone), **{v: (v, everyone) for v in OTHER_VIEWS}}
    return Task(
        "digits",
        IMAGE_VIEW,
        (16, 15),
        train=dict(data.train.views),
        test=dict(data.test.views),
        train_images=images["train"],
        test_images=images["test"],
        train_labels=data.train.labels,
        test_labels=data.test.labels,
        train_batch=lambda idx, gen: {v: x[idx] for v, x in data.train.views.items()},
        conditions=conditions,
        paired=True,
        note=f"{len(data.train)} training and {n_test} test digits; image = the 16x15 pix view",
    )


def load_fashion(settings: Settings) -> Task:
    """Fashion-MNIST pixels (first N of each split) and the frozen MiniLM embeddings of the phrasings.

    Raises:
        DataUnavailableError: the Debian package or the text backbone is missing.
    """
    from .prompts import prompt_fingerprint, write_prompt_store

    root = cache_dir() / "fashion-text"
    store = cached_store(
        root / "text",
        lambda: write_prompt_store(root / "text", overwrite=True),
        lambda s: s.metadata.get("prompts_sha256") == prompt_fingerprint(),
    )
    text = {s: store.read("text", s) for s in ("train", "test")}
    text_y = {s: torch.as_tensor(store.labels[store.indices(s)]).long() for s in ("train", "test")}
    rows = {"train": settings.fashion_train_rows, "test": settings.fashion_test_rows}
    pixels, labels = {}, {}
    for s in ("train", "test"):
        x, y = load_fashion_mnist(s)
        pixels[s], labels[s] = x[: rows[s]].float().div(255.0).unsqueeze(1), y[: rows[s]]
    mean, std = float(pixels["train"].mean()), float(pixels["train"].std())
    feats = {s: (pixels[s].flatten(1) - mean) / std for s in pixels}
    by_class = {s: [torch.nonzero(text_y[s] == c).flatten() for c in range(10)] for s in text_y}

    def pick(split: str, y: Tensor, gen: torch.Generator | None) -> Tensor:
        out = []
        for i, c in enumerate(y.tolist()):
            pool = by_class[split][c]
            j = int(torch.randint(len(pool), (1,), generator=gen)) if gen is not None else i % len(pool)
            out.append(pool[j])
        return torch.stack(out)

    def train_batch(idx: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
        return {"image": feats["train"][idx], "text": text["train"][pick("train", labels["train"][idx], gen)]}

    # Each test image is conditioned on a phrasing of its own class, cycling through the phrasings.
    test_text = torch.cat([text["test"], text["train"]])
    held = pick("test", labels["test"], None)
    seen = pick("train", labels["test"], None) + len(text["test"])
    everyone = torch.arange(len(labels["test"]))
    return Task(
        "fashion",
        "image",
        (28, 28),
        train={"image": feats["train"], "text": text["train"]},
        test={"image": feats["test"], "text": test_text},
        train_images=pixels["train"],
        test_images=pixels["test"],
        train_labels=labels["train"],
        test_labels=labels["test"],
        train_batch=train_batch,
        conditions={
            "self (image)": ("image", everyone),
            "text (held-out phrasing)": ("text", held),
            "text (training phrasing)": ("text", seen),
        },
        paired=False,
        note=(
            f"{len(labels['train'])} training / {len(labels['test'])} test images; "
            f"{len(text_y['train'])} training and {len(text_y['test'])} held-out phrasings (frozen MiniLM)"
        ),
    )


# ------------------------------------------------------------------------------------- the spaces


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


# ----------------------------------------------------------------------------------- the decoders


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


def grid_name(task: str, space: str, decoder: str) -> str:
    """File name of one image grid."""
    slug = "".join(c if c.isalnum() else "-" for c in space.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"grid-{task}-{slug}-{decoder}.png"


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


# -------------------------------------------------------------------------------------------- run


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
    from .generation_report import render

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
