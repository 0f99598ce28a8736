"""What offline evaluation scores: paired embeddings of one split, from a run or a feature store.

An :class:`EvalSource` holds rows aligned across modalities (row ``i`` of every modality is the same
example) with their labels. A feature store (:class:`~mmgeom.data.FeatureStore`, ``mmgeom features``) is
opened as one here (:func:`open_store_source`) and evaluated as stored: without a split the
memory-mapped arrays are streamed, never loaded whole. Runs are opened by
:func:`mmgeom.train.offline_eval.open_eval_source`, which rebuilds the trained encoder (training owns run
directories) and embeds a split with :func:`~mmgeom.evaluation.embed_views`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.features import FeatureStore

__all__ = ["EvalSource", "open_store_source"]


@dataclass
class EvalSource:
    """Paired embeddings to evaluate.

    Attributes:
        kind: ``"run"`` or ``"features"``.
        path: the run directory or the store folder.
        split: the split evaluated (``None``: every row of a store).
        embeddings: modality -> ``(N, D)`` tensor or (memory-mapped) numpy array, rows aligned.
        labels: ``(N,)`` int64 class ids.
        info: what else describes the source (weights file and step of a run; store metadata).
    """

    kind: str
    path: Path
    split: str | None
    embeddings: dict[str, Tensor | np.ndarray]
    labels: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """``N``, the rows of every modality."""
        return int(self.labels.numel())

    @property
    def dims(self) -> dict[str, int]:
        """Modality -> dimension."""
        return {m: int(z.shape[1]) for m, z in self.embeddings.items()}


def _store_rows(store: FeatureStore, modality: str, idx: np.ndarray) -> np.ndarray:
    """The rows ``idx`` of a modality: a memory-mapped slice when they are contiguous, else a copy."""
    arr = store.array(modality)
    if idx.size and int(idx[-1]) - int(idx[0]) + 1 == idx.size:
        return arr[int(idx[0]) : int(idx[-1]) + 1]
    return np.asarray(arr[idx])


def open_store_source(path: str | Path, split: str | None = None) -> EvalSource:
    """A feature store's rows of ``split`` (``None``: every row) as an :class:`EvalSource`.

    Contiguous rows stay memory-mapped slices; the arrays are not read here.

    Raises:
        FeatureStoreError: not a readable store, or a split the store does not have (the message names
            the store's splits).
    """
    root = Path(path)
    store = FeatureStore.open(root)
    idx = store.indices(split)  # FeatureStoreError (a ValueError) naming the store's splits
    embeddings: dict[str, Tensor | np.ndarray] = {m: _store_rows(store, m, idx) for m in store.modalities}
    labels = torch.from_numpy(np.asarray(store.labels[idx], dtype=np.int64))
    info: dict[str, Any] = {"metadata": store.metadata, "dtypes": store.dtypes}
    return EvalSource("features", root, split, embeddings, labels, info)
