"""Where the UniAlign study's features come from: the bundled mfeat views, or a user's feature store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ...data import Split, SplitDataset, Standardizer, load_dataset, split_and_standardize
from ..store_source import StoreParts, read_store_parts
from .settings import ANCHOR, FULL, VIEW_ORDER, Settings

#: The full study's ``ms``: on a store it becomes every ``M`` from 2 to the number of chosen modalities.
FULL_MS = FULL.ms


@dataclass(frozen=True)
class StudyData:
    """The standardised parts of every ``M`` the study runs.

    Attributes:
        splits: ``M`` -> the first ``M`` views of ``view_order`` (train / val / test).
        view_order: the views in the order they are added, the anchor first.
        anchor: the anchor view.
        probe: run the linear probes (the data has a class label on every row).
        notes: sentences for the report about the data (dropped rows, held-out validation, skipped parts).
        val_source: where the validation rows come from: ``"split"`` (the data's own validation split)
            or ``"holdout"`` (held out of the training rows).
    """

    splits: dict[int, SplitDataset]
    view_order: tuple[str, ...]
    anchor: str
    probe: bool = True
    notes: list[str] = field(default_factory=list)
    val_source: str = "split"


def bundled_data(settings: Settings) -> StudyData:
    """The six mfeat views, stratified 70/10/20 split (``settings.split_seed``), standardised per ``M``."""
    data_all = load_dataset("mfeat", list(VIEW_ORDER))
    splits = {
        m: split_and_standardize(data_all.select_views(VIEW_ORDER[:m]), seed=settings.split_seed)
        for m in settings.ms
    }
    return StudyData(splits, VIEW_ORDER, ANCHOR)


def store_parts_to_study(parts: StoreParts, ms: Sequence[int]) -> StudyData:
    """Standardise a store's parts per ``M`` with the training rows' statistics (as the bundled path)."""
    index = Split(*(torch.from_numpy(parts.rows[p]) for p in ("train", "val", "test")))
    splits = {}
    for m in ms:
        views = list(parts.modalities[:m])
        train, val, test = (parts.parts[p].select_views(views) for p in ("train", "val", "test"))
        scaler = Standardizer.fit(train)
        splits[m] = SplitDataset(
            scaler.transform(train), scaler.transform(val), scaler.transform(test), index, scaler
        )
    notes = list(parts.notes)
    if not parts.labelled:
        notes.append(
            "Skipped: the linear probes (probe/anchor, probe/mean) need a class label on every row and "
            "the store has rows without one (label -1); retrieval and geometry need no labels."
        )
    val_source = "split" if parts.val_source == "store" else "holdout"
    return StudyData(splits, parts.modalities, parts.anchor, parts.labelled, notes, val_source)


def store_data(
    path: str | Path,
    settings: Settings,
    *,
    anchor: str | None = None,
    modalities: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    max_rows: int | None = None,
) -> tuple[StudyData, Settings]:
    """A store's chosen modalities (anchor first), and ``settings`` with ``ms`` fitted to their number.

    ``ms``: every ``M`` from 2 to the number of chosen modalities, or only those of ``settings.ms`` when
    it is shorter (the quick settings' ``(2, 3)``); ``batch_size`` at most the training rows. See
    :func:`mmgeom.studies.store_source.read_store_parts` for the request checks, the validation rows and
    the missing-modality rule. The hold-out and sampling use ``settings.split_seed``.

    Raises:
        ValueError: a bad request (names the store, the key and the expectation).
    """
    parts = read_store_parts(
        path,
        modalities=modalities,
        anchor=anchor,
        min_modalities=2,
        study="unialign",
        val_fraction=val_fraction,
        max_rows=max_rows,
        seed=settings.split_seed,
    )
    n = len(parts.modalities)
    ms = tuple(m for m in settings.ms if m <= n) if settings.ms != FULL_MS else tuple(range(2, n + 1))
    data = store_parts_to_study(parts, ms)
    n_train = len(parts.parts["train"])
    if settings.batch_size > n_train:  # a small store: every step sees all training rows
        data.notes.append(f"Batch size {settings.batch_size} cut to the {n_train} training rows.")
        settings = replace(settings, batch_size=n_train)
    return data, replace(settings, ms=ms)
