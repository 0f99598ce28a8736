"""The modality gap: distance between the centres of two modalities on the unit sphere."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_pair
from ..functional import normalize


@torch.no_grad()
def modality_gap(za: Tensor, zb: Tensor) -> float:
    """Modality gap ``||mean_i z_a,i - mean_i z_b,i||`` between the centroids of L2-normalised rows.

    0 when the two modalities occupy the same region on average; at most 2.

    Reference: Liang et al., "Mind the Gap: Understanding the Modality Gap in Multi-modal Contrastive
    Representation Learning", NeurIPS 2022.

    Args:
        za: ``(B, D)`` raw embeddings of one modality.
        zb: ``(B, D)`` raw embeddings of another modality (same shape).

    Example:
        >>> e = torch.eye(2)
        >>> round(modality_gap(e[:1], e[1:]), 4)
        1.4142
    """
    check_pair(za, zb)
    return float((normalize(za).mean(dim=0) - normalize(zb).mean(dim=0)).norm())
