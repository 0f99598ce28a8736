"""The generation study's tasks: digits (mfeat views) and Fashion-MNIST with prompts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ...data import load_dataset, split_and_standardize
from ...data.fashion_mnist import load_fashion_mnist
from ..feature_cache import cache_dir, cached_store
from .settings import IMAGE_VIEW, OTHER_VIEWS, SELF, Settings


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
    from ..prompts import prompt_fingerprint, write_prompt_store

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
