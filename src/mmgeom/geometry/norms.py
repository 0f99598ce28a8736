"""Statistics of the raw embedding norms (the magnitudes that L2Dir aligns)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validation import check_embeddings
from ..functional._common import accum_dtype

#: Norms whose standard deviation is below this many machine epsilons of their mean count as constant.
CONSTANT_EPS = 64.0


def _norms(h: Tensor) -> Tensor:
    return h.to(accum_dtype(h)).norm(dim=1)


@torch.no_grad()
def norm_stats(h: Tensor) -> dict[str, float]:
    """Mean, standard deviation and coefficient of variation of the raw row norms ``||h_i||``.

    Keys ``"mean"``, ``"std"`` (population standard deviation, ``ddof = 0``) and ``"cv"`` (``std / mean``;
    ``nan`` when every row is zero).

    Reference: Zong et al., "L2-norm alignment and Directional consistency", ACL 2026 (norms carry
    information that cosine training discards).

    Args:
        h: ``(B, D)`` raw (unnormalised) embeddings.

    Example:
        >>> norm_stats(torch.tensor([[3.0, 4.0], [0.0, 5.0]]))
        {'mean': 5.0, 'std': 0.0, 'cv': 0.0}
    """
    check_embeddings(h, "h")
    r = _norms(h)
    mean = float(r.mean())
    std = float(r.std(correction=0))
    return {"mean": mean, "std": std, "cv": std / mean if mean > 0 else math.nan}


@torch.no_grad()
def norm_correlation(ha: Tensor, hb: Tensor) -> float:
    """Pearson correlation between the raw norms of paired rows, ``corr_i(||h_a,i||, ||h_b,i||)``.

    ``nan`` when either modality's norms are constant up to rounding (standard deviation below
    ``64 eps`` of the mean, ``eps`` the machine epsilon of the accumulation dtype), e.g. for inputs that are
    already normalised: the correlation is undefined there, and a value computed from rounding noise
    would be meaningless.

    Args:
        ha: ``(B, D)`` raw embeddings, ``B >= 2``.
        hb: ``(B, D')`` raw embeddings paired with ``ha`` (the dimensions may differ).

    Example:
        >>> h = torch.tensor([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
        >>> round(norm_correlation(h, 3 * h), 6)
        1.0
    """
    check_embeddings(ha, "ha", min_rows=2)
    check_embeddings(hb, "hb", min_rows=2)
    if ha.shape[0] != hb.shape[0]:
        raise ValueError(
            f"hb: expected {ha.shape[0]} rows to pair with ha {tuple(ha.shape)}, got shape {tuple(hb.shape)}"
        )
    ra, rb = _norms(ha), _norms(hb)
    if ra.dtype != rb.dtype:
        ra, rb = ra.double(), rb.double()
    ca, cb = ra - ra.mean(), rb - rb.mean()
    floor = CONSTANT_EPS * torch.finfo(ra.dtype).eps
    for c, r in ((ca, ra), (cb, rb)):
        if float(c.pow(2).mean().sqrt()) <= floor * float(r.mean()):
            return math.nan
    return float((ca * cb).sum() / (ca.norm() * cb.norm()))
