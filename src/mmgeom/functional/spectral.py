"""Spectral (singular-value) measures of an embedding matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_embeddings
from ._common import EPS, normalize


def spectral_entropy(z: Tensor, *, power: float = 2.0, center: bool = True, eps: float = EPS) -> Tensor:
    """Entropy ``H(p)`` of the normalised singular-value spectrum of the row-normalised, centred matrix.

    ``p_k = sigma_k^power / sum_l sigma_l^power``. With ``power = 2`` this is the spectrum of the
    covariance (DAGR's spectral dispersion maximises it); with ``power = 1`` ``exp(H)`` is the effective
    rank of Roy & Vetterli (2007). The value lies in ``[0, log min(B, D)]``.

    Example:
        >>> z = torch.eye(4)
        >>> round(float(spectral_entropy(z, center=False)), 4)  # four equal singular values
        1.3863
    """
    check_embeddings(z, "z", min_rows=2, normalised=True)
    return spectral_entropy_unit(normalize(z), power=power, center=center, eps=eps)


def spectral_entropy_unit(x: Tensor, *, power: float = 2.0, center: bool = True, eps: float = EPS) -> Tensor:
    """:func:`spectral_entropy` of rows that are already unit vectors, without any check."""
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    if power == 2.0:
        # sigma^2 are the eigenvalues of the smaller of x^T x and x x^T: one matmul and a small eigh
        # instead of an SVD of the full B x D matrix.
        small = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
        s = torch.linalg.eigvalsh(small).clamp_min(0.0)
    else:
        s = torch.linalg.svdvals(x).pow(power)
    p = s / s.sum().clamp_min(eps)
    return -(p * p.clamp_min(eps).log()).sum()
