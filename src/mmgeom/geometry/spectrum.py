"""Effective rank of an embedding matrix (how many directions its spectrum really uses)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional.spectral import spectral_entropy


@torch.no_grad()
def effective_rank(z: Tensor) -> float:
    """Effective rank ``exp(H(p))``, ``p_k = sigma_k / sum_l sigma_l``, of the centred, row-normalised matrix.

    The rows are L2-normalised (the geometry the losses act on; magnitudes are reported by the norm
    statistics) and centred, so the value lies in ``[1, min(B - 1, D)]`` (1 also for a fully collapsed
    batch, whose centred matrix is zero). It equals ``r`` when the centred matrix has ``r`` equal non-zero
    singular values. Computed with :func:`mmgeom.functional.spectral.spectral_entropy` (``power = 1``).

    Reference: Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007.

    Args:
        z: ``(B, D)`` raw embeddings, ``B >= 2``.

    Example:
        >>> e = torch.eye(3)
        >>> round(effective_rank(torch.cat([e, -e])), 4)  # +-e_k: three equal singular values
        3.0
    """
    return float(spectral_entropy(z, power=1.0, center=True).exp())
