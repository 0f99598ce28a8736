"""Datasets by name, and the split + standardise step every experiment runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .mfeat import MFEAT_VIEWS, load_mfeat
from .multiview import MultiViewDataset
from .split import DEFAULT_FRACTIONS, Split, stratified_split
from .standardize import Standardizer

_LOADERS: dict[str, Callable[..., MultiViewDataset]] = {"mfeat": load_mfeat}
_VIEWS: dict[str, tuple[str, ...]] = {"mfeat": tuple(MFEAT_VIEWS)}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (and by configs' ``data.dataset``)."""
    return sorted(_LOADERS)


def dataset_views(name: str) -> tuple[str, ...]:
    """The view names of a bundled dataset in their default order, known without loading it."""
    if name not in _VIEWS:
        raise ValueError(f"dataset: unknown name {name!r}; available: {list_datasets()}")
    return _VIEWS[name]


def load_dataset(name: str, views: Sequence[str] | None = None) -> MultiViewDataset:
    """Load a bundled dataset by name, with the selected views in the given order.

    Raises:
        ValueError: an unknown dataset or view name.
        DataUnavailableError: the package that ships the data is missing.
    """
    if name not in _LOADERS:
        raise ValueError(f"dataset: unknown name {name!r}; available: {list_datasets()}")
    return _LOADERS[name](views)


@dataclass(frozen=True)
class SplitDataset:
    """Train / validation / test parts of one dataset, standardised with training statistics."""

    train: MultiViewDataset
    val: MultiViewDataset
    test: MultiViewDataset
    split: Split
    standardizer: Standardizer | None

    def part(self, name: str) -> MultiViewDataset:
        """``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split: unknown part {name!r}; expected 'train', 'val' or 'test'")
        return getattr(self, name)


def split_and_standardize(
    data: MultiViewDataset,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    standardize: bool = True,
) -> SplitDataset:
    """Stratified split, then per-view standardisation fitted on the training rows only."""
    split = stratified_split(data.labels, fractions, seed)
    train, val, test = (data.subset(split[p]) for p in ("train", "val", "test"))
    scaler = Standardizer.fit(train) if standardize else None
    if scaler is not None:
        train, val, test = (scaler.transform(d) for d in (train, val, test))
    return SplitDataset(train, val, test, split, scaler)
