"""Retrieval between any two modalities of an :class:`~mmgeom.evaluation.EvalSource` (``mmgeom eval``).

:func:`eval_pairs` turns ``--query`` / ``--gallery`` into the pairs to score, and :func:`evaluate_source`
scores them with :func:`~mmgeom.evaluation.cross_view_retrieval` (the same keys as a run's
``metrics.jsonl``), plus the chance level of the relevance used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..retrieval import relevance_from_labels
from .cross_view import cross_view_retrieval
from .source import EvalSource

__all__ = ["RELEVANCE_MODES", "SCORES", "eval_pairs", "evaluate_source"]

#: ``relevance`` values of :func:`evaluate_source`.
RELEVANCE_MODES = ("instance", "label")
#: ``score`` values of :func:`evaluate_source`.
SCORES = ("cosine", "magnitude")
#: Rows per block when gallery norms are computed from a (memory-mapped) array.
_NORM_ROWS = 65536


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
    """Score the pairs; the keys of :func:`~mmgeom.evaluation.cross_view_retrieval` plus chance levels.

    Args:
        source: from :func:`~mmgeom.train.offline_eval.open_eval_source` or
            :func:`~mmgeom.evaluation.open_store_source`.
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
