"""Nearest-class-centroid accuracy of embeddings, per view and for the fused (mean-direction) embedding.

A training-free read-out of how class-separable a split's embeddings are: class centroids come from a
labelled reference split (the training rows), and each row takes the class of its most cosine-similar
centroid.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as nnf
from torch import Tensor

__all__ = ["fused_embedding", "nearest_centroid_accuracy"]


def fused_embedding(embeddings: Mapping[str, Tensor]) -> Tensor:
    """``(N, D)`` mean of the L2-normalised views (the views share ``D``)."""
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
    items = [*embeddings.items(), ("fused", fused_embedding(embeddings))]
    refs = {**reference, "fused": fused_embedding(reference)}
    for view, z in items:
        centroids = (onehot.T @ nnf.normalize(refs[view].float(), dim=1)) / counts[:, None]
        scores = nnf.normalize(z.float(), dim=1) @ nnf.normalize(centroids, dim=1).T
        scores[:, onehot.sum(dim=0) == 0] = float("-inf")  # classes absent from the reference
        out[f"classification/{view}/accuracy"] = float((scores.argmax(dim=1) == labels).float().mean())
    return out
