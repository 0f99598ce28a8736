"""Gram-determinant volumes of k-tuples of embeddings (GRAM, UniAlign)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_pair
from ._common import normalize

#: Floor under the Gram determinant before the square root (keeps the gradient finite at collinearity).
VOLUME_EPS = 1e-12


def _check_tuple(zs: tuple[Tensor, ...], what: str) -> None:
    if len(zs) < 2:
        raise ValueError(f"{what}: expected at least 2 modalities, got {len(zs)}")
    for k, z in enumerate(zs[1:], start=1):
        check_pair(zs[0], z, ("z0", f"z{k}"))


def gram_det(*zs: Tensor) -> Tensor:
    """``(B,)`` determinant of each row's own Gram matrix ``G_i = [z^1_i, ..., z^k_i] [..]^T``.

    The rows are L2-normalised first, so the value lies in ``[0, 1]``: 1 for mutually orthogonal
    vectors, 0 when the tuple is linearly dependent (e.g. all modalities agree).
    """
    _check_tuple(zs, "gram_det")
    stacked = torch.stack([normalize(z) for z in zs], dim=1)  # (B, k, D)
    return torch.linalg.det(stacked @ stacked.transpose(1, 2))


def gram_volume(*zs: Tensor, eps: float = VOLUME_EPS) -> Tensor:
    """``(B,)`` volume ``sqrt(max(det G_i, eps))`` of the parallelotope spanned by row i's k-tuple.

    Reference: Cicchetti et al., "Gramian Multimodal Representation Learning and Alignment", ICLR 2025.

    Args:
        *zs: k >= 2 tensors of shape ``(B, D)``, row i paired across all of them.
        eps: floor under the determinant.

    Example:
        >>> e = torch.eye(3)
        >>> gram_volume(e, e.roll(1, dims=1)).tolist()
        [1.0, 1.0, 1.0]
    """
    return gram_det(*zs).clamp_min(eps).sqrt()


def _adjugate(c: Tensor) -> Tensor:
    """Adjugate of a batch of small ``(n, n)`` matrices, defined (and differentiable) even when singular."""
    n = c.shape[-1]
    if n == 1:
        return torch.ones_like(c)
    adj = torch.empty_like(c)
    idx = list(range(n))
    for i in range(n):
        for j in range(n):
            rows = [r for r in idx if r != j]
            cols = [q for q in idx if q != i]
            minor = c[..., rows, :][..., :, cols]
            adj[..., i, j] = (-1) ** (i + j) * torch.linalg.det(minor)
    return adj


def gram_volume_matrix(anchor: Tensor, *others: Tensor, eps: float = VOLUME_EPS) -> Tensor:
    """``(B, B)`` volumes ``V[i, j]`` of the tuple (anchor row i, every other modality's row j).

    The diagonal holds the volumes of the true tuples; off-diagonal entries are the negatives that the
    GRAM contrastive loss pushes apart. With ``C_j`` the Gram matrix of the others' row j and ``s_ij`` the
    anchor-to-others cosines, the block determinant is ``det G_ij = det C_j - s_ij^T adj(C_j) s_ij``:
    the (k-1) x (k-1) pieces are computed once per j, so the B x B part costs one matmul and a small
    quadratic form per entry instead of B^2 determinants (and stays exact when ``C_j`` is singular).
    """
    _check_tuple((anchor, *others), "gram_volume_matrix")
    a = normalize(anchor)
    o = torch.stack([normalize(z) for z in others], dim=1)  # (B, k-1, D)
    n, k1 = o.shape[0], o.shape[1]
    inner = o @ o.transpose(1, 2)  # (B_j, k-1, k-1)
    cross = (a @ o.reshape(n * k1, -1).T).reshape(a.shape[0], n, k1)  # (B_i, B_j, k-1)
    det_c = inner[:, 0, 0] if k1 == 1 else torch.linalg.det(inner)
    if k1 == 1:
        quad = cross.squeeze(-1).pow(2)
    else:
        quad = (torch.einsum("ijm,jmn->ijn", cross, _adjugate(inner)) * cross).sum(dim=-1)
    return (det_c.unsqueeze(0) - quad).clamp_min(eps).sqrt()
