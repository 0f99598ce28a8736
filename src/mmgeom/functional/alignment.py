"""Paired-row alignment terms: Wang–Isola alignment and DAGR's agreement-band hinge."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_pair, check_positive
from ._common import masked_mean, normalize


def paired_sq_dists(za: Tensor, zb: Tensor) -> Tensor:
    """``(B,)`` squared distances ``||z_a,i - z_b,i||^2`` between normalised paired rows."""
    return (normalize(za) - normalize(zb)).pow(2).sum(dim=1)


def alignment(za: Tensor, zb: Tensor, alpha: float = 2.0) -> Tensor:
    """Wang–Isola alignment ``mean_i ||z_a,i - z_b,i||^alpha`` on L2-normalised rows.

    Reference: Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere", ICML 2020.

    Args:
        za: ``(B, D)`` raw embeddings.
        zb: ``(B, D)`` raw embeddings paired with ``za``.
        alpha: exponent ``> 0`` (2 in the paper).

    Example:
        >>> x = torch.randn(5, 3)
        >>> float(alignment(x, 2 * x))
        0.0
    """
    check_pair(za, zb)
    check_positive(alpha, "alpha")
    return alignment_unit(normalize(za), normalize(zb), alpha)


def alignment_unit(a: Tensor, b: Tensor, alpha: float = 2.0, mask: Tensor | None = None) -> Tensor:
    """:func:`alignment` of rows that are already unit vectors, without any check.

    ``mask``: optional ``(B,)`` bool; the mean then runs over the rows where it is True (0 when none is),
    without selecting rows (no host read). Rows outside it must be finite.
    """
    d2 = (a - b).pow(2).sum(dim=1)
    if alpha != 2.0:
        # The distance itself has an infinite derivative at 0; going through d2 keeps the gradient finite.
        d2 = d2.clamp_min(1e-30).pow(alpha / 2.0)
    return d2.mean() if mask is None else masked_mean(d2, mask)


def band_hinge(za: Tensor, zb: Tensor, delta: float | Tensor) -> Tensor:
    """DAGR's anchoring term ``mean_i [||z_a,i - z_b,i||^2 - delta]_+`` on L2-normalised rows.

    Pairs whose drift stays inside the agreement band ``delta`` contribute exactly zero (and no gradient).

    Reference: Xia et al., "Dispersive and Anchoring Geometric Regularizer", arXiv 2601.21670.

    Args:
        za: ``(B, D)`` raw embeddings.
        zb: ``(B, D)`` raw embeddings paired with ``za``.
        delta: band width ``>= 0`` in squared-distance units (``[0, 4]`` is meaningful on the sphere).

    Example:
        >>> x = torch.randn(5, 3)
        >>> float(band_hinge(x, -x, 3.0))
        1.0
    """
    check_pair(za, zb)
    if not isinstance(delta, Tensor):
        check_positive(delta, "delta", allow_zero=True)
    return band_hinge_unit(normalize(za), normalize(zb), delta)


def band_hinge_unit(a: Tensor, b: Tensor, delta: float | Tensor, mask: Tensor | None = None) -> Tensor:
    """:func:`band_hinge` of rows that are already unit vectors, without any check.

    ``mask``: optional ``(B,)`` bool; the mean then runs over the rows where it is True (0 when none is).
    """
    hinge = torch.relu((a - b).pow(2).sum(dim=1) - delta)
    return hinge.mean() if mask is None else masked_mean(hinge, mask)
