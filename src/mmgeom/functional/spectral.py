"""Spectral (singular-value) measures of an embedding matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_embeddings
from ._common import EPS, check_presence, normalize, normalize_present


def spectral_entropy(
    z: Tensor, *, power: float = 2.0, center: bool = True, eps: float = EPS, mask: Tensor | None = None
) -> Tensor:
    """Entropy ``H(p)`` of the normalised singular-value spectrum of the row-normalised, centred matrix.

    ``p_k = sigma_k^power / sum_l sigma_l^power``. With ``power = 2`` this is the spectrum of the
    covariance (DAGR's spectral dispersion maximises it); with ``power = 1`` ``exp(H)`` is the effective
    rank of Roy & Vetterli (2007). The value lies in ``[0, log min(B, D)]``. With ``mask`` (``(B,)`` bool,
    True = present) it is the entropy of the present rows alone, 0 with fewer than two (no host read).

    Example:
        >>> z = torch.eye(4)
        >>> round(float(spectral_entropy(z, center=False)), 4)  # four equal singular values
        1.3863
    """
    if mask is None:
        check_embeddings(z, "z", min_rows=2, normalised=True)
        return spectral_entropy_unit(normalize(z), power=power, center=center, eps=eps)
    check_embeddings(z, "z", min_rows=1, normalised=False)
    check_presence(mask, z, "z")
    return spectral_entropy_unit(normalize_present(z, mask), power=power, center=center, eps=eps, mask=mask)


def spectral_entropy_unit(
    x: Tensor, *, power: float = 2.0, center: bool = True, eps: float = EPS, mask: Tensor | None = None
) -> Tensor:
    """:func:`spectral_entropy` of rows that are already unit vectors, without any check.

    ``mask``: optional ``(B,)`` bool presence, absent rows of ``x`` zero (:func:`normalize_present`): the
    entropy of the present rows (centred on their own mean), 0 with fewer than two. The absent rows stay
    zero rows, which add only zero singular values (``p_k = 0`` contributes nothing), so the spectrum is
    the one of ``x[mask]`` without selecting rows (no host read).
    """
    rows = None
    if mask is not None:
        rows = mask.sum()
        if center:
            mean = x.sum(dim=0, keepdim=True) / rows.clamp_min(1).to(x.dtype)
            x = torch.where(mask.unsqueeze(-1), x - mean, 0.0)
    elif center:
        x = x - x.mean(dim=0, keepdim=True)
    if power == 2.0:
        # sigma^2 are the eigenvalues of the smaller of x^T x and x x^T: one matmul and a small eigh
        # instead of an SVD of the full B x D matrix.
        small = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
        s = torch.linalg.eigvalsh(small).clamp_min(0.0)
    else:
        s = torch.linalg.svdvals(x).pow(power)
    p = s / s.sum().clamp_min(eps)
    entropy = -(p * p.clamp_min(eps).log()).sum()
    return entropy if rows is None else torch.where(rows >= 2, entropy, 0.0)
