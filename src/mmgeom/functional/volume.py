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


def gram_volume_matrix(anchor: Tensor, *others: Tensor, eps: float = VOLUME_EPS) -> Tensor:
    """``(B, B)`` volumes ``V[i, j]`` of the tuple (anchor row i, every other modality's row j).

    The diagonal holds the volumes of the true tuples; off-diagonal entries are the negatives that the
    GRAM contrastive loss pushes apart. Only the anchor-to-others blocks depend on i, so the Gram matrix of
    the others' row j is computed once and shared across all i.
    """
    _check_tuple((anchor, *others), "gram_volume_matrix")
    a = normalize(anchor)
    o = torch.stack([normalize(z) for z in others], dim=1)  # (B, k-1, D)
    inner = o @ o.transpose(1, 2)  # (B_j, k-1, k-1)
    cross = torch.einsum("id,jmd->ijm", a, o)  # (B_i, B_j, k-1)
    n, k = a.shape[0], o.shape[1] + 1
    g = a.new_empty(n, n, k, k)
    g[..., 0, 0] = 1.0
    g[..., 0, 1:] = cross
    g[..., 1:, 0] = cross
    g[..., 1:, 1:] = inner.unsqueeze(0)
    return torch.linalg.det(g).clamp_min(eps).sqrt()
