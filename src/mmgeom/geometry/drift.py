"""Cross-modal drift of paired embeddings (DAGR's agreement band is measured in these units)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_pair
from ..functional import paired_sq_dists


@torch.no_grad()
def drift(za: Tensor, zb: Tensor) -> float:
    """Drift ``E_i ||z_a,i - z_b,i||^2`` between paired L2-normalised rows, in ``[0, 4]``.

    The same number as Wang–Isola alignment with ``alpha = 2``; it is the quantity DAGR's agreement band
    ``delta`` is compared against (``2 - 2 cos`` per pair).

    Reference: Xia et al., "Dispersive and Anchoring Geometric Regularizer", arXiv 2601.21670.

    Example:
        >>> x = torch.randn(4, 3)
        >>> round(drift(x, -x), 5)
        4.0
    """
    check_pair(za, zb)
    return float(paired_sq_dists(za, zb).mean())
