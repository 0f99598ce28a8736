"""The ``data:`` section of the experiment config: a bundled dataset or a feature store, views, split."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator, model_validator

from ..data import check_fractions, dataset_views, list_datasets
from ..data.store_check import load_manifest
from ..data.store_format import MANIFEST, FeatureStoreError
from .config_base import Section, _error

__all__ = ["DataConfig"]


class DataConfig(Section):
    """Which dataset and views, and how to split and scale them.

    Attributes:
        dataset: a bundled dataset name (``"mfeat"``); ignored when ``store`` is set.
        views: the views to use, in order; ``None`` for all of them (bundled datasets).
        split_seed: seed of the stratified split (bundled datasets).
        fractions: ``(train, val, test)`` fractions, summing to 1 (bundled datasets).
        standardize: per-view standardisation with training-split statistics.
        store: a feature store folder (``mmgeom import``) to train from instead of a bundled dataset
            (a relative path is taken from the current directory and stored absolute);
            batches are read from its memory maps (:func:`mmgeom.data.store_training.load_store_split`).
        modalities: the store's modalities to use, in order (``None``: all); at least two.
        labels: use the store's labels (``False``: unlabelled training).
        split: part → store split name, e.g. ``{val: dev}`` (default: train/val/test by name).
    """

    dataset: str = "mfeat"
    views: list[str] | None = None
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    standardize: bool = True
    store: str | None = None
    modalities: list[str] | None = None
    labels: bool = True
    split: dict[str, str] | None = None

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in list_datasets():
            raise ValueError(f"unknown dataset {v!r}; available: {list_datasets()}")
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        try:
            return check_fractions(v)
        except ValueError as err:
            raise ValueError(str(err).removeprefix("fractions: ")) from None

    @model_validator(mode="after")
    def _known_views(self) -> DataConfig:
        if self.views is not None:
            available = dataset_views(self.dataset)
            if len(self.views) < 2:
                raise _error(f"expected at least two views to align, got {self.views}", key="views")
            for v in self.views:
                if v not in available:
                    raise _error(
                        f"unknown view {v!r} of {self.dataset}; available: {list(available)}", key="views"
                    )
            if len(set(self.views)) != len(self.views):
                raise _error(f"a view is listed twice: {self.views}", key="views")
        return self

    @field_validator("store")
    @classmethod
    def _absolute_store(cls, value: str | None) -> str | None:
        # Resolved once, when the config is read: the run's saved config.yaml then names the store
        # wherever `mmgeom eval` / `mmgeom embed` / `--resume` are run from.
        return None if value is None else str(Path(value).expanduser().resolve())

    @model_validator(mode="after")
    def _store_source(self) -> DataConfig:
        if self.store is None:
            for key in ("modalities", "split"):
                if getattr(self, key) is not None:
                    raise _error("is read from a feature store only; set data.store too", key=key)
            return self
        if self.views is not None:
            raise _error("name a store's modalities with data.modalities, not data.views", key="views")
        try:
            manifest = load_manifest(Path(self.store) / MANIFEST)
        except FeatureStoreError as err:
            raise _error(str(err), key="store") from None
        have = list(manifest["modalities"])
        names = self.modalities if self.modalities is not None else have
        for m in names:
            if m not in have:
                raise _error(f"unknown modality {m!r} of {self.store}; available: {have}", key="modalities")
        if len(names) < 2 or len(set(names)) != len(names):
            raise _error(f"expected at least two distinct modalities to align, got {names}", key="modalities")
        for part, name in (self.split or {}).items():
            if part not in ("train", "val", "test"):
                raise _error(f"unknown part {part!r}; expected train, val or test", key="split")
            if name not in manifest["splits"]:
                raise _error(f"{name!r} is not a split of {self.store} ({manifest['splits']})", key="split")
        return self

    def view_names(self) -> tuple[str, ...]:
        """The selected views (all of the dataset's or store's when ``views``/``modalities`` is ``None``)."""
        if self.store is not None:
            if self.modalities is not None:
                return tuple(self.modalities)
            return tuple(load_manifest(Path(self.store) / MANIFEST)["modalities"])
        return tuple(self.views) if self.views is not None else dataset_views(self.dataset)
