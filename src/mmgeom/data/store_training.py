"""Training straight from a feature store: batches read row by row, streaming standardisation.

:func:`load_store_split` returns the same :class:`~mmgeom.data.SplitDataset` the bundled datasets give,
except that its ``train`` part is a :class:`StoreRows`: its rows stay on disk and :meth:`StoreRows.batch`
reads only the rows of one batch (with the presence ``mask`` the losses accept when a modality is absent
from some rows), with ``os.preadv`` so that no page of the store stays mapped into the process. The
validation and test parts are :class:`StorePart`: the rows where every chosen modality is present (what
cross-view retrieval can score), read into memory on first use (only rank 0 evaluates under torchrun).
Standardisation statistics come from one chunked pass over the training rows (float64 moments merged
chunk by chunk), split across the ranks of a ``torch.distributed`` group, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

__all__ = ["STORE_PARTS", "StorePart", "StoreRows", "load_store_split", "streaming_standardizer"]

#: The parts a training run uses, mapped to store split names by ``data.split``.
STORE_PARTS = ("train", "val", "test")


def _process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialised ``torch.distributed`` group, else ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sum_across_ranks(x: np.ndarray) -> np.ndarray:
    """Element-wise float64 sum of ``x`` over the ranks (``x`` itself in one process)."""
    dist = torch.distributed
    t = torch.from_numpy(x)
    if dist.get_backend() == "nccl":  # NCCL reduces device tensors only
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def _chunk_moments(
    store: FeatureStore, m: str, part: np.ndarray, buf16: np.ndarray, x: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray]:
    """``(count, mean, sum of squared deviations)`` of the present rows ``part`` of ``m``, in float64.

    Rows are read with :meth:`FeatureStore.take` into the reused buffer ``buf16`` and converted into
    the reused float64 buffer ``x``, which the deviations then overwrite in place: no temporary of the
    chunk's size is allocated, so the pass holds two chunk buffers whatever the store's size.
    """
    part = part[store.present(m, part)]
    k = int(part.size)
    if k == 0:
        return 0, np.zeros(x.shape[1]), np.zeros(x.shape[1])
    raw, xk = store.take(m, part, out=buf16[:k]), x[:k]
    np.copyto(xk, raw, casting="unsafe")
    xm = xk.mean(axis=0)
    np.subtract(xk, xm, out=xk)
    np.square(xk, out=xk)
    return k, xm, xk.sum(axis=0)


def streaming_standardizer(
    store: FeatureStore,
    modalities: Sequence[str],
    rows: np.ndarray,
    *,
    chunk_rows: int = 16384,
    min_std: float = 1e-6,
    rank: int | None = None,
    world_size: int | None = None,
) -> Standardizer:
    """Per-column mean and population std of ``rows`` (present rows only), in chunks, split across ranks.

    ``rows`` is cut into fixed chunks of ``chunk_rows``. Each chunk's float64 count, mean and sum of
    squared deviations are computed by one rank (under ``torchrun`` rank ``r`` of ``W`` takes the
    ``r``-th contiguous run of chunks, so it reads ``1/W`` of the rows, sequentially); one ``all_reduce``
    (sum) gathers every chunk's moments on every rank (a chunk belongs to one rank, so the sum only adds
    zeros: exact), and every rank merges them in chunk order by the pairwise update of Chan, Golub &
    LeVeque (1983), "Algorithms for computing the sample variance", which stays accurate where a single
    sum of squares would cancel. The chunks and their merge order do not depend on the number of
    processes, so 1 and ``W`` processes get bit-identical statistics (tested). Same rule as
    :meth:`Standardizer.fit`: a column with std ``<= min_std`` gets scale 1.

    Args:
        rank, world_size: this process's share (default: the initialised ``torch.distributed`` group,
            else one process).

    Raises:
        FeatureStoreError: a modality with no present row among ``rows``.
    """
    if rank is None or world_size is None:
        rank, world_size = _process_group()
    n_chunks = -(-rows.size // chunk_rows)
    mine = range(n_chunks * rank // world_size, n_chunks * (rank + 1) // world_size)
    mean: dict[str, Tensor] = {}
    scale: dict[str, Tensor] = {}
    for m in modalities:
        dim = store.dims[m]
        size = min(chunk_rows, rows.size)
        buf16, x = np.empty((size, dim), store.array(m).dtype), np.empty((size, dim))
        # Per chunk: [count, mean (dim), M2 (dim)]; chunks of other ranks stay zero.
        moments = np.zeros((n_chunks, 1 + 2 * dim))
        for c in mine:
            k, xm, xm2 = _chunk_moments(store, m, rows[c * chunk_rows : (c + 1) * chunk_rows], buf16, x)
            moments[c, 0], moments[c, 1 : 1 + dim], moments[c, 1 + dim :] = k, xm, xm2
        del buf16, x
        if world_size > 1:
            moments = _sum_across_ranks(moments)
        n, mu, m2 = 0, np.zeros(dim), np.zeros(dim)
        for row in moments:
            k = int(row[0])
            if k == 0:
                continue
            xm, xm2 = row[1 : 1 + dim], row[1 + dim :]
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

        Rows are read with :meth:`FeatureStore.take` in ascending store order (runs of consecutive rows
        in one read) and put back in the asked order; absent rows are zeros after standardisation
        (ignored by the losses via the mask).
        """
        assert self.store is not None
        pos = torch.as_tensor(indices, dtype=torch.long).cpu().numpy()
        rows = self.rows[pos]
        order = np.argsort(rows, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(order.size)
        sorted_rows = rows[order]
        back_t = torch.from_numpy(back)
        views: dict[str, Tensor] = {}
        mask: dict[str, Tensor] = {}
        for m in self.modalities:
            # preadv, not the memory map: nothing of the store stays mapped into the process.
            # Reorder and widen in torch: tensors torch allocates are several times faster for the
            # threaded in-place standardisation below than a fresh numpy array (measured, 2 threads).
            x = torch.from_numpy(self.store.take(m, sorted_rows)).index_select(0, back_t).float()
            keep = torch.from_numpy(self.store.present(m, sorted_rows)[back])
            complete = bool(keep.all())
            if self.standardizer is not None:
                # In place on the fresh copy: the same (x - mean) / scale, without two more batch tensors.
                x.sub_(self.standardizer.mean[m]).div_(self.standardizer.scale[m])
                if not complete:
                    x[~keep] = 0.0
            views[m] = x
            if not complete:
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


@dataclass(frozen=True, eq=False)
class StorePart(StoreRows):
    """A validation or test part whose ``views`` are read into memory on first use.

    Under ``torchrun`` only rank 0 evaluates, so the other ranks never read these rows; in one process
    nothing is read before the first evaluation. Once read (in chunks of ``chunk_rows`` into tensors
    allocated once), the part is an ordinary in-memory :class:`MultiViewDataset` (validated likewise).
    """

    chunk_rows: int = 16384

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__delattr__(self, "views")  # read by __getattr__ on first access

    def __getattr__(self, name: str) -> Any:
        if name != "views":
            raise AttributeError(name)
        assert self.store is not None
        n = len(self)
        views = {m: torch.empty(n, self.store.dims[m]) for m in self.modalities}
        for a in range(0, n, self.chunk_rows):
            got, _ = self.read(torch.arange(a, min(a + self.chunk_rows, n)))
            for m in self.modalities:
                views[m][a : a + got[m].shape[0]] = got[m]
        MultiViewDataset(views, self.labels, self.name, self.class_names)  # the usual checks
        object.__setattr__(self, "views", views)
        return views

    @property
    def loaded(self) -> bool:
        """Whether the rows have been read into memory."""
        return "views" in self.__dict__

    def batch(self, indices: Tensor | None = None, *, with_labels: bool = False) -> dict[str, Tensor]:
        """As :meth:`MultiViewDataset.batch` once loaded (in-memory rows), else read from the store."""
        if self.loaded:
            return MultiViewDataset.batch(self, indices, with_labels=with_labels)
        return super().batch(indices, with_labels=with_labels)


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
    all_labels = np.array(store.labels, dtype=np.int64) if labels else np.zeros(store.num_rows, np.int64)
    release_pages(store.labels)
    scaler = (
        streaming_standardizer(store, names, rows["train"], chunk_rows=chunk_rows) if standardize else None
    )
    class_names = store.metadata.get("class_names")
    cls = tuple(class_names) if isinstance(class_names, list) else None
    name = str(store.metadata.get("source", store.path.name))
    train = StoreRows(
        {}, torch.from_numpy(all_labels[rows["train"]]), name, cls, store, rows["train"], tuple(names), scaler
    )
    lazy: dict[str, StorePart] = {}
    for p in ("val", "test"):
        full = np.ones(rows[p].size, dtype=bool)
        for m in names:
            full &= store.present(m, rows[p])
        rows[p] = rows[p][full]
        if rows[p].size == 0:
            raise FeatureStoreError(
                f"split: part {p!r} (store split {parts[p]!r}) has no row with every modality"
            )
        lazy[p] = StorePart(
            {},
            torch.from_numpy(all_labels[rows[p]]),
            name,
            cls,
            store,
            rows[p],
            tuple(names),
            scaler,
            chunk_rows,
        )
    index = Split(*(torch.from_numpy(rows[p]) for p in STORE_PARTS))
    return SplitDataset(train, lazy["val"], lazy["test"], index, scaler)
