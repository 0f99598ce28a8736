"""Evaluate an encoder on one split: embed it once, then retrieval, diagnostics and classification.

Keys of the returned dict (what a run's ``metrics.jsonl`` eval events hold):

* ``retrieval/<q>-><g>/<metric>``, ``retrieval/<a><-><b>/<metric>``, ``retrieval/mean/<metric>``:
  cross-view instance retrieval (:func:`~mmgeom.evaluation.cross_view_retrieval`);
* ``geometry/<name>``: every diagnostic (:func:`~mmgeom.evaluation.geometry_diagnostics`);
* ``classification/<view>/accuracy``, ``classification/fused/accuracy``: nearest-class-centroid accuracy
  of each view's embeddings and of their fusion (the mean of the L2-normalised views), with the class
  centroids computed on a reference (training) split — when one is given;
* ``chance/hit@1``: ``1 / N_gallery``; ``chance/accuracy``: the majority-class rate of the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data import MultiViewDataset
from .centroid import nearest_centroid_accuracy
from .cross_view import cross_view_retrieval
from .diagnostics import geometry_diagnostics
from .embed import embed_views

__all__ = ["evaluate_split"]


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
        encoder: the multi-view encoder (its train/eval mode is restored afterwards).
        data: the split to evaluate.
        pairs: ``(query_view, gallery_view)`` pairs to score.
        directions: ``"both"`` or ``"forward"`` (see :func:`~mmgeom.evaluation.cross_view_retrieval`).
        ks: hit@K cut-offs.
        diagnostics: add the ``geometry/*`` keys.
        device: where the encoder runs.
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
