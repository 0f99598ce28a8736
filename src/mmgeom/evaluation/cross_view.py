"""Cross-view retrieval on paired embeddings: each row of a query view searches a gallery view.

By default (instance retrieval) row ``i`` of the query view has one positive, row ``i`` of the gallery
view: the same example seen through the other view. Metrics come from
:func:`mmgeom.retrieval.retrieval_metrics` (exact ranks) or :func:`mmgeom.retrieval.topk_metrics` (FAISS).

Keys of the returned dict:

* ``retrieval/<q>-><g>/<metric>``: query view ``q``, gallery view ``g``;
* ``retrieval/<a><-><b>/<metric>``: the mean of the two directions (``directions="both"``);
* ``retrieval/mean/<metric>``: the mean over the evaluated pairs (of the pair values above).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..retrieval import retrieval_metrics, topk_metrics
from ._scalars import scalar_metrics

__all__ = ["cross_view_retrieval"]


def cross_view_retrieval(
    embeddings: Mapping[str, Tensor | np.ndarray],
    pairs: Sequence[tuple[str, str]],
    directions: str = "both",
    ks: Sequence[int] = (1, 5, 10),
    *,
    relevance: Any = None,
    gallery_magnitudes: Mapping[str, Tensor | np.ndarray] | None = None,
    backend: str = "torch",
    max_memory_mb: float | None = None,
) -> dict[str, float]:
    """Retrieval between paired views: by default row ``i`` of the query view should find row ``i``.

    Args:
        embeddings: view -> ``(N, D)`` tensor or numpy array (memmaps are streamed), rows aligned.
        pairs: ``(query_view, gallery_view)`` pairs.
        directions: ``"both"`` also scores ``gallery_view -> query_view`` and the mean of the two.
        ks: hit@K cut-offs.
        relevance: the positives of each row, the same for every pair (the rows are aligned): ``None``
            for instance retrieval (row ``i`` <-> row ``i``), or anything
            :func:`~mmgeom.retrieval.retrieval_metrics` accepts for ``(N, N)``, e.g.
            ``relevance_from_labels(labels, labels)`` for same-class retrieval.
        gallery_magnitudes: view -> ``(N,)`` magnitudes ``r_d`` used when that view is the gallery (L2Dir
            magnitude scoring ``<q/|q|, r_d g_d/|g_d|>``); ``None``: cosine.
        backend: ``"torch"``: every metric from the exact ranks
            (:func:`~mmgeom.retrieval.retrieval_metrics`); ``"faiss"``: the cut-off metrics only, from
            exact top-K search with the FAISS backend (:func:`~mmgeom.retrieval.topk_metrics`).
        max_memory_mb: memory budget of each retrieval call (default 256).

    Returns:
        Flat ``retrieval/...`` keys (see the module docstring).
    """
    if directions not in ("both", "forward"):
        raise ValueError(f"directions: expected 'both' or 'forward', got {directions!r}")
    if backend not in ("torch", "faiss"):
        raise ValueError(f"backend: expected 'torch' or 'faiss', got {backend!r}")
    out: dict[str, float] = {}
    pair_values: dict[str, list[float]] = {}
    for q, g in pairs:
        for v in (q, g):
            if v not in embeddings:
                raise ValueError(f"{v}: no embeddings for this view; have {list(embeddings)}")
        n = embeddings[q].shape[0]
        rel = torch.arange(n) if relevance is None else relevance
        runs = [(q, g)] + ([(g, q)] if directions == "both" else [])
        per_direction = []
        for a, b in runs:
            mags = None if gallery_magnitudes is None else gallery_magnitudes[b]
            kw: dict[str, Any] = {"ks": tuple(ks), "gallery_magnitudes": mags, "max_memory_mb": max_memory_mb}
            if backend == "faiss":
                raw = topk_metrics(embeddings[a], embeddings[b], rel, backend="faiss", **kw)
            else:
                raw = retrieval_metrics(embeddings[a], embeddings[b], rel, **kw)
            m = scalar_metrics(raw)
            out.update({f"retrieval/{a}->{b}/{name}": value for name, value in m.items()})
            per_direction.append(m)
        if directions == "both":
            common = per_direction[0].keys() & per_direction[1].keys()
            pair = {name: 0.5 * (per_direction[0][name] + per_direction[1][name]) for name in common}
            out.update({f"retrieval/{q}<->{g}/{name}": value for name, value in pair.items()})
        else:
            pair = per_direction[0]
        for name, value in pair.items():
            pair_values.setdefault(name, []).append(value)
    out.update({f"retrieval/mean/{name}": sum(vals) / len(vals) for name, vals in pair_values.items()})
    return out
