"""Evaluation: cross-view instance retrieval and geometry diagnostics on one split.

Instance retrieval: every row of the query view searches the gallery view of the same split; its one
positive is the same row (the same example seen through the other view). Metrics come from
:func:`mmgeom.retrieval.retrieval_metrics`; diagnostics from :func:`mmgeom.geometry.diagnose`.

Keys of the returned dict:

* ``retrieval/<q>-><g>/<metric>``: query view ``q``, gallery view ``g``;
* ``retrieval/<a><-><b>/<metric>``: the mean of the two directions (``directions="both"``);
* ``retrieval/mean/<metric>``: the mean over the evaluated pairs (of the pair values above);
* ``geometry/<name>``: every diagnostic;
* ``classification/<view>/accuracy``, ``classification/fused/accuracy``: nearest-class-centroid accuracy
  of each view's embeddings and of their fusion (the mean of the L2-normalised views), with the class
  centroids computed on a reference (training) split — when one is given;
* ``chance/hit@1``: ``1 / N_gallery``; ``chance/accuracy``: the majority-class rate of the split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from ..data import MultiViewDataset


@torch.no_grad()
def embed_views(
    encoder: nn.Module, data: MultiViewDataset, device: str | torch.device = "cpu", chunk: int = 4096
) -> dict[str, Tensor]:
    """Encode every view of ``data`` in eval mode (the encoder's mode is restored afterwards)."""
    was_training = encoder.training
    encoder.eval()
    try:
        parts: dict[str, list[Tensor]] = {v: [] for v in data.view_names}
        for start in range(0, len(data), chunk):
            idx = torch.arange(start, min(start + chunk, len(data)))
            out = encoder({v: x.to(device) for v, x in data.batch(idx).items()})
            for v in data.view_names:
                parts[v].append(out[v].float().cpu())
        return {v: torch.cat(p) for v, p in parts.items()}
    finally:
        encoder.train(was_training)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, Tensor):
            if v.numel() != 1:
                continue
            v = v.item()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(k)] = float(v)
    return out


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
    from ..retrieval import retrieval_metrics, topk_metrics

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
            m = _scalars(raw)
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


def geometry_diagnostics(embeddings: Mapping[str, Tensor], labels: Tensor | None = None) -> dict[str, float]:
    """:func:`mmgeom.geometry.diagnose` on the embeddings, keys prefixed ``geometry/``."""
    from ..geometry import diagnose

    return {f"geometry/{k}": v for k, v in _scalars(diagnose(dict(embeddings), labels=labels)).items()}


def _fused(embeddings: Mapping[str, Tensor]) -> Tensor:
    return torch.stack([nnf.normalize(z.float(), dim=1) for z in embeddings.values()]).mean(dim=0)


def nearest_centroid_accuracy(
    reference: Mapping[str, Tensor],
    reference_labels: Tensor,
    embeddings: Mapping[str, Tensor],
    labels: Tensor,
) -> dict[str, float]:
    """Accuracy of assigning each row to the class whose mean (normalised) reference embedding is the
    most cosine-similar, per view and for the fused embedding (mean of the normalised views).

    Args:
        reference: view -> ``(N_ref, D)`` embeddings with known labels (the training split).
        reference_labels: ``(N_ref,)`` class ids.
        embeddings: view -> ``(N, D)`` embeddings to classify.
        labels: ``(N,)`` true class ids.

    Returns:
        ``classification/<view>/accuracy`` and ``classification/fused/accuracy``.
    """
    classes = int(max(int(reference_labels.max()), int(labels.max()))) + 1
    onehot = nnf.one_hot(reference_labels.long(), classes).float()
    counts = onehot.sum(dim=0).clamp_min(1.0)
    out: dict[str, float] = {}
    items = [*embeddings.items(), ("fused", _fused(embeddings))]
    refs = {**reference, "fused": _fused(reference)}
    for view, z in items:
        centroids = (onehot.T @ nnf.normalize(refs[view].float(), dim=1)) / counts[:, None]
        scores = nnf.normalize(z.float(), dim=1) @ nnf.normalize(centroids, dim=1).T
        scores[:, onehot.sum(dim=0) == 0] = float("-inf")  # classes absent from the reference
        out[f"classification/{view}/accuracy"] = float((scores.argmax(dim=1) == labels).float().mean())
    return out


def evaluate_split(
    encoder: nn.Module,
    data: MultiViewDataset,
    pairs: Sequence[tuple[str, str]],
    *,
    directions: str = "both",
    ks: Sequence[int] = (1, 5, 10),
    diagnostics: bool = True,
    device: str | torch.device = "cpu",
    classification_reference: MultiViewDataset | None = None,
) -> dict[str, float]:
    """Embed ``data`` and score retrieval (and diagnostics); see the module docstring for the keys.

    Args:
        classification_reference: a labelled split (the training rows) whose class centroids
            classify ``data``; ``None`` skips classification.
    """
    emb = embed_views(encoder, data, device)
    metrics = cross_view_retrieval(emb, pairs, directions, ks)
    if diagnostics:
        metrics.update(geometry_diagnostics(emb, data.labels))
    if classification_reference is not None and len(data):
        ref = embed_views(encoder, classification_reference, device)
        metrics.update(nearest_centroid_accuracy(ref, classification_reference.labels, emb, data.labels))
        metrics["chance/accuracy"] = float(torch.bincount(data.labels).max()) / len(data)
    metrics["chance/hit@1"] = 1.0 / len(data)
    return metrics
