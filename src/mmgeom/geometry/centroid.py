"""Uniformity of the per-row centroids of all modalities (UniAlign's centroid term)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .._validation import check_batch, check_positive
from ..functional import uniformity
from ..functional.centroid import centroid


@torch.no_grad()
def centroid_uniformity(batch: Mapping[str, Tensor], t: float = 2.0) -> float:
    """Wang–Isola uniformity of the centroids ``c_i = normalize(mean_m z_i^m)`` of every row's tuple.

    Reference: Yin et al., "Towards Uniformity and Alignment for Multimodal Representation Learning",
    arXiv 2602.09507.

    Args:
        batch: ``{modality: (B, D)}`` raw embeddings, ``M >= 2``, ``B >= 2`` (reserved keys are ignored; rows
            must all be present, see :func:`mmgeom.geometry.diagnose` for masks).
        t: Gaussian-potential scale ``> 0``.

    Example:
        >>> e = torch.eye(2)
        >>> centroid_uniformity({"a": e, "b": e})
        -4.0
    """
    mods = check_batch(batch)
    check_positive(t, "t")
    return float(uniformity(centroid(*mods.values()), t=t))
