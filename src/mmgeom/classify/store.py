"""Fusion classification from a feature store: its modalities, its label column and its split.

:func:`load_classify_store` gives the parts :func:`~mmgeom.classify.train_classifier` and
:func:`~mmgeom.classify.evaluate_classifier` take. The training part stays on disk
(:class:`~mmgeom.data.store_training.StoreRows`: each step reads only its batch from the memory maps),
standardised with statistics from one chunked pass over the training rows; the validation and test
parts are read into memory.

**Missing modalities: rows are dropped.** A row where a chosen modality is absent (presence mask) or
that has no label (``-1``) is left out of every part. The store holds zeros where a modality is absent;
fed to an encoder they give some non-zero embedding, not the fusion model's missing-modality convention
(a zero pre-fusion embedding, or an omitted term), so such rows would train on made-up inputs. Dropping
keeps training and scoring on real rows only; the counts are returned so the caller can report them.
Robustness to a missing modality is measured instead by the ``missing/*`` accuracies of
:func:`~mmgeom.classify.evaluate_classifier`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import FeatureStore, MultiViewDataset
from ..data.store_training import STORE_PARTS, StoreRows, streaming_standardizer

__all__ = ["ClassifyStoreParts", "load_classify_store"]


@dataclass(frozen=True)
class ClassifyStoreParts:
    """A store's parts for fusion classification.

    Attributes:
        train: the training rows (read batch by batch from the store).
        val: validation rows in memory, or ``None`` when the store has no such split.
        test: test rows in memory.
        num_classes: ``max(label) + 1`` over the kept rows.
        dropped: part -> rows left out (a chosen modality absent, or no label).
    """

    train: StoreRows
    val: MultiViewDataset | None
    test: MultiViewDataset
    num_classes: int
    dropped: dict[str, int]


def load_classify_store(
    path: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    split: Mapping[str, str] | None = None,
    standardize: bool = True,
    chunk_rows: int = 16384,
) -> ClassifyStoreParts:
    """The store's train / val / test parts with labels, incomplete rows dropped (module docstring).

    Args:
        path: the store folder.
        modalities: modalities to fuse (``None``: all of the store's), at least one.
        split: part -> store split name (default ``train``/``val``/``test`` by name; ``val`` is optional).
        standardize: standardise with the training rows' statistics.
        chunk_rows: rows per chunk of the statistics pass and of reading val/test.

    Raises:
        ValueError: an unknown or repeated modality, a store with no labels, a missing ``train`` or
            ``test`` split, a part left without rows (each names the store and the key).
    """
    store = FeatureStore.open(path)
    names = store.chosen_modalities(modalities)
    labels = np.asarray(store.labels, dtype=np.int64)
    if not (labels >= 0).any():
        raise ValueError(f"{store.path}: labels: classification needs class labels; every row has label -1")
    parts = {p: p for p in STORE_PARTS} | dict(split or {})
    rows: dict[str, np.ndarray] = {}
    dropped: dict[str, int] = {}
    for p in STORE_PARTS:
        if parts[p] not in store.split_names:
            if p == "val":
                continue
            raise ValueError(
                f"{store.path}: split: no {parts[p]!r} split for the {p} part "
                f"(it has {list(store.split_names)})"
            )
        r = store.indices(parts[p])
        keep = labels[r] >= 0
        for m in names:
            keep &= store.present(m, r)
        rows[p], dropped[p] = r[keep], int((~keep).sum())
        if rows[p].size < 2:
            raise ValueError(
                f"{store.path}: split: part {p!r} has {rows[p].size} labelled row(s) with every modality "
                f"{names}; expected at least 2"
            )
    scaler = (
        streaming_standardizer(store, names, rows["train"], chunk_rows=chunk_rows) if standardize else None
    )
    name = str(store.metadata.get("source", store.path.name))

    def part_rows(p: str) -> StoreRows:
        y = torch.from_numpy(labels[rows[p]])
        return StoreRows({}, y, name, None, store, rows[p], tuple(names), scaler)

    def in_memory(p: str) -> MultiViewDataset:
        lazy = part_rows(p)
        chunks = [
            lazy.batch(torch.arange(a, min(a + chunk_rows, len(lazy))))
            for a in range(0, len(lazy), chunk_rows)
        ]
        return MultiViewDataset({m: torch.cat([c[m] for c in chunks]) for m in names}, lazy.labels, name)

    num_classes = int(max(labels[r].max() for r in rows.values())) + 1
    val = in_memory("val") if "val" in rows else None
    return ClassifyStoreParts(part_rows("train"), val, in_memory("test"), num_classes, dropped)
