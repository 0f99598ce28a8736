"""Training straight from a feature store: lazy batches from the memory maps, streaming standardisation.

:func:`load_store_split` returns the same :class:`~mmgeom.data.SplitDataset` the bundled datasets give,
except that its ``train`` part is a :class:`StoreRows`: its rows stay on disk and :meth:`StoreRows.batch`
reads only the rows of one batch (with the presence ``mask`` the losses accept when a modality is absent
from some rows). The validation and test parts are read into memory, keeping the rows where every chosen
modality is present (what cross-view retrieval can score). Standardisation statistics come from one
chunked pass over the training rows (float64 sums merged chunk by chunk), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .datasets import SplitDataset
from .features import FeatureStore
from .multiview import MultiViewDataset
from .split import Split
from .standardize import Standardizer
from .store_check import release_pages
from .store_format import FeatureStoreError

__all__ = ["STORE_PARTS", "StoreRows", "load_store_split", "streaming_standardizer"]

#: The parts a training run uses, mapped to store split names by ``data.split``.
STORE_PARTS = ("train", "val", "test")


def streaming_standardizer(
    store: FeatureStore,
    modalities: Sequence[str],
    rows: np.ndarray,
    *,
    chunk_rows: int = 16384,
    min_std: float = 1e-6,
) -> Standardizer:
    """Per-column mean and population std of ``rows`` (present rows only), in chunks.

    Each chunk's float64 count, mean and sum of squared deviations are merged with the running ones by
    the pairwise update of Chan, Golub & LeVeque (1983), "Algorithms for computing the sample variance",
    which stays accurate where a single sum of squares would cancel. Same rule as
    :meth:`Standardizer.fit`: a column with std ``<= min_std`` gets scale 1.

    Raises:
        FeatureStoreError: a modality with no present row among ``rows``.
    """
    mean: dict[str, Tensor] = {}
    scale: dict[str, Tensor] = {}
    for m in modalities:
        arr = store.array(m)
        n, mu, m2 = 0, np.zeros(arr.shape[1]), np.zeros(arr.shape[1])
        for start in range(0, rows.size, chunk_rows):
            part = rows[start : start + chunk_rows]
            part = part[store.present(m, part)]
            if part.size == 0:
                continue
            x = np.asarray(arr[np.sort(part)], dtype=np.float64)
            release_pages(arr)
            k, xm = x.shape[0], x.mean(axis=0)
            xm2 = ((x - xm) ** 2).sum(axis=0)
            delta = xm - mu
            total = n + k
            mu = mu + delta * (k / total)
            m2 = m2 + xm2 + delta**2 * (n * k / total)
            n = total
        if n == 0:
            raise FeatureStoreError(f"{store.path}: modality {m!r} is absent from every training row")
        sd = np.sqrt(m2 / n)
        sd = np.where(sd > min_std, sd, 1.0)
        mean[m] = torch.from_numpy(mu).float()
        scale[m] = torch.from_numpy(sd).float()
    return Standardizer(mean, scale)


@dataclass(frozen=True)
class StoreRows(MultiViewDataset):
    """The rows ``rows`` of a store, read batch by batch (a :class:`MultiViewDataset` without ``views``).

    ``views`` is empty: nothing is loaded. :meth:`batch` reads, standardises and returns rows;
    :meth:`subset` loads the chosen rows into an ordinary in-memory dataset.

    Attributes:
        store: the open store.
        rows: ``(N,)`` int64 store rows of this part, in order.
        modalities: the modalities used, in order.
        standardizer: applied to every batch (``None``: raw values).
    """

    store: FeatureStore | None = None
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    modalities: tuple[str, ...] = ()
    standardizer: Standardizer | None = None

    def __post_init__(self) -> None:
        if self.store is None or not self.modalities:
            raise ValueError("StoreRows: expected a store and at least one modality")
        if self.labels.shape != (self.rows.size,):
            raise ValueError(f"labels: expected ({self.rows.size},), got {tuple(self.labels.shape)}")

    @property
    def view_names(self) -> tuple[str, ...]:
        return self.modalities

    @property
    def view_dims(self) -> dict[str, int]:
        assert self.store is not None
        return {m: self.store.dims[m] for m in self.modalities}

    @property
    def has_masks(self) -> bool:
        """Whether some chosen modality is absent from some store row."""
        assert self.store is not None
        return any("mask" in self.store.manifest["modalities"][m] for m in self.modalities)

    def read(
        self, indices: Tensor | Sequence[int] | np.ndarray
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Standardised float32 ``views`` and bool presence ``mask`` of part rows ``indices``.

        Rows are read from the memory maps in ascending store order (sequential pages) and put back in
        the asked order; absent rows are zeros after standardisation (ignored by the losses via the mask).
        """
        assert self.store is not None
        pos = torch.as_tensor(indices, dtype=torch.long).cpu().numpy()
        rows = self.rows[pos]
        order = np.argsort(rows, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(order.size)
        sorted_rows = rows[order]
        views: dict[str, Tensor] = {}
        mask: dict[str, Tensor] = {}
        for m in self.modalities:
            arr = self.store.array(m)
            x = torch.from_numpy(np.asarray(arr[sorted_rows], dtype=np.float32)[back])
            release_pages(arr)  # keep the resident set at one batch, not the whole store
            keep = torch.from_numpy(self.store.present(m, sorted_rows)[back])
            if self.standardizer is not None:
                x = (x - self.standardizer.mean[m]) / self.standardizer.scale[m]
                x = torch.where(keep[:, None], x, torch.zeros((), dtype=x.dtype))
            views[m] = x
            if not bool(keep.all()):
                mask[m] = keep
        return views, mask

    def batch(self, indices: Tensor | None = None, *, with_labels: bool = False) -> dict[str, Tensor]:
        """Like :meth:`MultiViewDataset.batch` (``views`` only, plus ``labels``); see :meth:`read`."""
        idx = torch.arange(len(self)) if indices is None else indices
        out, _ = self.read(idx)
        if with_labels:
            out["labels"] = self.labels[torch.as_tensor(idx, dtype=torch.long).cpu()]
        return out

    def subset(self, indices: Tensor | Sequence[int]) -> MultiViewDataset:
        """The part rows ``indices`` loaded into an in-memory :class:`MultiViewDataset`."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return MultiViewDataset(self.batch(idx), self.labels[idx], self.name, self.class_names)


def load_store_split(
    path: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    split: Mapping[str, str] | None = None,
    standardize: bool = True,
    labels: bool = True,
    chunk_rows: int = 16384,
) -> SplitDataset:
    """A store's train / val / test parts for training (see the module docstring).

    Args:
        path: the store folder.
        modalities: modalities to use (``None``: all), at least two.
        split: part → store split name (default ``{"train": "train", "val": "val", "test": "test"}``).
        standardize: standardise with training-row statistics (:func:`streaming_standardizer`).
        labels: use the store's labels (else every row gets label 0).
        chunk_rows: rows per chunk of the statistics pass and of reading val/test.

    Raises:
        FeatureStoreError: an unknown modality or split name, fewer than two modalities, an empty part.
    """
    store = FeatureStore.open(path)
    names = list(modalities) if modalities is not None else list(store.modalities)
    unknown = [m for m in names if m not in store.modalities]
    if unknown:
        raise FeatureStoreError(
            f"modalities: {unknown[0]!r} not in the store {store.path} ({list(store.modalities)})"
        )
    if len(names) < 2 or len(set(names)) != len(names):
        raise FeatureStoreError(
            f"modalities: expected at least two distinct modalities to align, got {names}"
        )
    parts = {p: p for p in STORE_PARTS} | dict(split or {})
    rows = {p: store.indices(parts[p]) for p in STORE_PARTS}
    all_labels = np.asarray(store.labels, dtype=np.int64) if labels else np.zeros(store.num_rows, np.int64)
    scaler = (
        streaming_standardizer(store, names, rows["train"], chunk_rows=chunk_rows) if standardize else None
    )
    class_names = store.metadata.get("class_names")
    cls = tuple(class_names) if isinstance(class_names, list) else None
    name = str(store.metadata.get("source", store.path.name))
    train = StoreRows(
        {}, torch.from_numpy(all_labels[rows["train"]]), name, cls, store, rows["train"], tuple(names), scaler
    )
    loaded: dict[str, MultiViewDataset] = {}
    for p in ("val", "test"):
        full = np.ones(rows[p].size, dtype=bool)
        for m in names:
            full &= store.present(m, rows[p])
        rows[p] = rows[p][full]
        if rows[p].size == 0:
            raise FeatureStoreError(
                f"split: part {p!r} (store split {parts[p]!r}) has no row with every modality"
            )
        part = StoreRows(
            {}, torch.from_numpy(all_labels[rows[p]]), name, cls, store, rows[p], tuple(names), scaler
        )
        chunks = [
            part.read(torch.arange(a, min(a + chunk_rows, len(part))))[0]
            for a in range(0, len(part), chunk_rows)
        ]
        views = {m: torch.cat([c[m] for c in chunks]) for m in names}
        loaded[p] = MultiViewDataset(views, part.labels, name, cls)
    index = Split(*(torch.from_numpy(rows[p]) for p in STORE_PARTS))
    return SplitDataset(train, loaded["val"], loaded["test"], index, scaler)
