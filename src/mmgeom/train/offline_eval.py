"""Retrieval between any two modalities of a saved run or of a feature store (``mmgeom eval``).

Two kinds of source hold paired embeddings (row ``i`` of every modality is the same example):

* a **run directory** (``mmgeom train`` / ``mmgeom demo``): the trained encoder is loaded
  (:func:`~mmgeom.train.load_run`) and embeds one split of the run's data, as training evaluated it;
* a **feature store** (:class:`~mmgeom.data.FeatureStore`, ``mmgeom features``): the stored features are
  evaluated as they are; without a split the memory-mapped arrays are streamed, never loaded whole.

:func:`open_eval_source` reads either, :func:`eval_pairs` turns ``--query`` / ``--gallery`` into the pairs
to score, and :func:`evaluate_source` scores them with
:func:`~mmgeom.train.evaluate.cross_view_retrieval` (the same keys as a run's ``metrics.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.features import MANIFEST, STORE_FORMAT, FeatureStore
from .evaluate import cross_view_retrieval, embed_views
from .runload import is_run_dir, load_run

__all__ = [
    "RELEVANCE_MODES",
    "SCORES",
    "EvalSource",
    "eval_pairs",
    "evaluate_source",
    "open_eval_source",
]

#: ``relevance`` values of :func:`evaluate_source`.
RELEVANCE_MODES = ("instance", "label")
#: ``score`` values of :func:`evaluate_source`.
SCORES = ("cosine", "magnitude")
#: Rows per block when gallery norms are computed from a (memory-mapped) array.
_NORM_ROWS = 65536


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


def _is_feature_store(path: Path) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == STORE_FORMAT


def _store_rows(store: FeatureStore, modality: str, idx: np.ndarray) -> np.ndarray:
    """The rows ``idx`` of a modality: a memory-mapped slice when they are contiguous, else a copy."""
    arr = store.array(modality)
    if idx.size and int(idx[-1]) - int(idx[0]) + 1 == idx.size:
        return arr[int(idx[0]) : int(idx[-1]) + 1]
    return np.asarray(arr[idx])


def open_eval_source(
    path: str | Path,
    split: str | None = None,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> EvalSource:
    """Open a run directory or a feature store for evaluation.

    Args:
        path: a run directory (``config.yaml``) or a feature store folder (``manifest.json``).
        split: runs: ``"train"``, ``"val"`` or ``"test"`` (default: the run's ``eval.split``); stores: one
            of the store's split names (default: every row).
        checkpoint: runs only: which weights (see :func:`~mmgeom.train.load_run`).
        device: runs only: where the encoder runs.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is neither a run nor a feature store.
        ValueError: an unknown split; ``checkpoint`` given for a feature store.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory (expected a run directory or a feature store)")
    if is_run_dir(root):
        run = load_run(root, checkpoint, device=device)
        name = split if split is not None else run.config.eval.split
        data = run.data.part(name)  # ValueError naming the parts for an unknown split
        embeddings: dict[str, Tensor | np.ndarray] = dict(embed_views(run.encoder, data, device))
        info: dict[str, Any] = {
            "weights": str(run.weights),
            "step": run.step,
            "dataset": run.config.data.dataset,
        }
        return EvalSource("run", root, name, embeddings, data.labels.to(torch.long), info)
    if _is_feature_store(root):
        if checkpoint is not None:
            raise ValueError(f"checkpoint: {root} is a feature store, which has no checkpoints")
        store = FeatureStore.open(root)
        idx = store.indices(split)  # FeatureStoreError (a ValueError) naming the store's splits
        embeddings = {m: _store_rows(store, m, idx) for m in store.modalities}
        labels = torch.from_numpy(np.asarray(store.labels[idx], dtype=np.int64))
        info = {"metadata": store.metadata, "dtypes": store.dtypes}
        return EvalSource("features", root, split, embeddings, labels, info)
    raise FileNotFoundError(
        f"{root}: neither a run directory (no config.yaml; written by mmgeom train / mmgeom demo) nor a "
        f"feature store (no {MANIFEST} of format {STORE_FORMAT!r}; written by mmgeom features)"
    )


def eval_pairs(
    source: EvalSource, query: str | None = None, gallery: str | None = None
) -> tuple[list[tuple[str, str]], str]:
    """The ``(query, gallery)`` pairs to score and their ``directions``.

    Neither given: every pair of modalities that share a dimension, both directions (``"both"``). Only
    ``query``: that modality against every other one of its dimension; only ``gallery``: every other one
    against it; both: that one pair (``"forward"``, one direction each).

    Raises:
        ValueError: an unknown modality (the message lists the available ones), the same modality on
            both sides, two modalities of different dimensions, or no pair to score.
    """
    dims = source.dims
    names = list(dims)
    listed = ", ".join(f"{m} ({d}-d)" for m, d in dims.items())
    for what, name in (("query", query), ("gallery", gallery)):
        if name is not None and name not in dims:
            raise ValueError(f"{what}: unknown modality {name!r}; {source.path} has: {listed}")
    if query is not None and query == gallery:
        raise ValueError(f"query and gallery: both are {query!r}; choose two different modalities ({listed})")
    if query is not None and gallery is not None:
        if dims[query] != dims[gallery]:
            raise ValueError(
                f"query {query!r} is {dims[query]}-d and gallery {gallery!r} is {dims[gallery]}-d: retrieval "
                "needs one shared dimension"
            )
        return [(query, gallery)], "forward"
    if query is not None:
        pairs = [(query, m) for m in names if m != query and dims[m] == dims[query]]
        directions = "forward"
    elif gallery is not None:
        pairs = [(m, gallery) for m in names if m != gallery and dims[m] == dims[gallery]]
        directions = "forward"
    else:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if dims[a] == dims[b]]
        directions = "both"
    if not pairs:
        raise ValueError(
            f"no pair of modalities to evaluate in {source.path}: retrieval needs two modalities of one "
            f"dimension; it has: {listed}"
        )
    return pairs, directions


def _row_norms(x: Tensor | np.ndarray) -> Tensor:
    """``(N,)`` float64 L2 norms of the rows, read in blocks (a memmap is never loaded whole)."""
    parts = []
    for start in range(0, int(x.shape[0]), _NORM_ROWS):
        block = x[start : start + _NORM_ROWS]
        # a float64 copy of the block (a read-only memmap is never handed to torch as is)
        t = (
            block.to(torch.float64)
            if isinstance(block, Tensor)
            else torch.from_numpy(np.array(block, np.float64))
        )
        parts.append(t.norm(dim=1))
    return torch.cat(parts)


def evaluate_source(
    source: EvalSource,
    pairs: Sequence[tuple[str, str]],
    directions: str = "both",
    ks: Sequence[int] = (1, 5, 10),
    *,
    relevance: str = "instance",
    score: str = "cosine",
    backend: str = "torch",
    max_memory_mb: float | None = None,
) -> dict[str, float]:
    """Score the pairs; the keys of :func:`~mmgeom.train.evaluate.cross_view_retrieval` plus chance levels.

    Args:
        source: from :func:`open_eval_source`.
        pairs: ``(query, gallery)`` modality pairs (:func:`eval_pairs`).
        directions: ``"both"`` or ``"forward"``.
        ks: cut-offs K.
        relevance: ``"instance"`` — row ``i`` of the query modality has one positive, row ``i`` of the
            gallery; ``"label"`` — every gallery row with the same class label is a positive.
        score: ``"cosine"``, or ``"magnitude"``: L2Dir scoring ``<q/|q|, |g_d| g_d/|g_d|>``, the query
            normalised and each gallery item keeping the L2 norm of its embedding.
        backend: ``"torch"`` (every metric, from the exact ranks) or ``"faiss"`` (the cut-off metrics from
            exact top-K search through FAISS).
        max_memory_mb: memory budget of each retrieval call.

    Returns:
        ``retrieval/<q>-><g>/<metric>``, ``retrieval/<a><-><b>/<metric>`` (both directions),
        ``retrieval/mean/<metric>``, and ``chance/hit@1`` (instance: ``1/N``) or ``chance/precision``
        (label: the probability that a random gallery row shares the query's label, ``sum_c (N_c/N)^2``).

    Raises:
        ValueError: an unknown ``relevance``, ``score`` or ``backend``, or a bad ``ks``.
    """
    if relevance not in RELEVANCE_MODES:
        raise ValueError(f"relevance: expected one of {RELEVANCE_MODES}, got {relevance!r}")
    if score not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
    from ..retrieval import relevance_from_labels

    labels = source.labels
    rel = relevance_from_labels(labels, labels) if relevance == "label" else None
    used = {m for pair in pairs for m in pair}
    magnitudes = {m: _row_norms(source.embeddings[m]) for m in used} if score == "magnitude" else None
    metrics = cross_view_retrieval(
        source.embeddings,
        pairs,
        directions,
        ks,
        relevance=rel,
        gallery_magnitudes=magnitudes,
        backend=backend,
        max_memory_mb=max_memory_mb,
    )
    n = source.num_rows
    if relevance == "instance":
        metrics["chance/hit@1"] = 1.0 / n
    else:
        _, counts = torch.unique(labels, return_counts=True)
        metrics["chance/precision"] = float(((counts.to(torch.float64) / n) ** 2).sum())
    return metrics
