"""Magnitude-aware distances (L2Dir)."""

from __future__ import annotations

from torch import Tensor

from .._validation import check_pair
from ._common import EPS, accum_dtype


def tn_distance(u: Tensor, v: Tensor, eps: float = EPS) -> Tensor:
    """Triangle-normalised distance ``||u_i - v_i|| / (||u_i|| + ||v_i||)`` per row, in ``[0, 1]``.

    It is 0 exactly when ``u_i = v_i`` (same norm and direction) and 1 when they point in opposite
    directions. Works on raw vectors: magnitude is the point.

    Reference: Zong et al., "L2-norm alignment and Directional consistency", ACL 2026.

    Example:
        >>> u = torch.tensor([[3.0, 4.0]])
        >>> float(tn_distance(u, -u))
        1.0
    """
    check_pair(u, v, ("u", "v"), normalised=False)
    u = u.to(accum_dtype(u))
    v = v.to(accum_dtype(v))
    return (u - v).norm(dim=1) / (u.norm(dim=1) + v.norm(dim=1)).clamp_min(eps)


def logcos_distance(u: Tensor, v: Tensor, eps: float = EPS, floor: float = 1e-4) -> Tensor:
    """TNCSE-style norm term per row: ``-log(max(cos_i, floor)) * ||u_i - v_i|| / (2(||u_i|| + ||v_i||))``.

    The TN distance is weighted by how far the directions disagree, so pairs that already point the same
    way contribute little magnitude pressure.

    Reference: Zong et al., ACL 2026 (the ``logcos`` variant of L2Dir's norm term).
    """
    check_pair(u, v, ("u", "v"), normalised=False)
    u = u.to(accum_dtype(u))
    v = v.to(accum_dtype(v))
    nu, nv = u.norm(dim=1), v.norm(dim=1)
    cos = (u * v).sum(dim=1) / (nu * nv).clamp_min(eps)
    return -cos.clamp_min(floor).log() * (u - v).norm(dim=1) / (2.0 * (nu + nv).clamp_min(eps))
