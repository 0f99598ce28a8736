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
    return gram_det_unit(torch.stack([normalize(z) for z in zs], dim=1))


def gram_det_unit(stacked: Tensor) -> Tensor:
    """:func:`gram_det` of a ``(B, k, D)`` stack of unit rows (row i's tuple in ``stacked[i]``), unchecked."""
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
    if n == 2:
        # Closed form [[d, -b], [-c, a]]: one stack instead of four 1x1 determinants (small-op launches
        # dominate at small batches).
        a, b, cc, d = c[..., 0, 0], c[..., 0, 1], c[..., 1, 0], c[..., 1, 1]
        return torch.stack([torch.stack([d, -b], -1), torch.stack([-cc, a], -1)], -2)
    adj = torch.empty_like(c)
    idx = list(range(n))
    for i in range(n):
        for j in range(n):
            rows = [r for r in idx if r != j]
            cols = [q for q in idx if q != i]
            minor = c[..., rows, :][..., :, cols]
            adj[..., i, j] = (-1) ** (i + j) * torch.linalg.det(minor)
    return adj


def _volume_matrix_3(s1: Tensor, s2: Tensor, o1: Tensor, o2: Tensor) -> Tensor:
    """``det G_ij`` for k = 3 unit rows: ``1 - s1^2 - s2^2 - c_j^2 + 2 c_j s1 s2`` (before the floor).

    With unit rows ``C_j = [[1, c_j], [c_j, 1]]`` (``c_j = <o1_j, o2_j>``), so ``det C_j = 1 - c_j^2``
    and ``adj(C_j) = [[1, -c_j], [-c_j, 1]]``: the block formula of :func:`gram_volume_matrix` with its
    2 x 2 pieces written out. Taking the unit diagonal as exactly 1 (rather than ``||o_j||^2`` up to
    rounding) changes neither the value nor the gradient in exact arithmetic (``d||o||^2/do`` is radial,
    and the normalisation's Jacobian removes radial components); it saves a batched 2 x 2 matmul, the
    adjugate's small ops and three (B, B) products with their backward (a third of a small-batch call).
    """
    c = (o1 * o2).sum(dim=1)  # (B_j,)
    quad = torch.addcmul(s1 * s1, s2, s2)  # s1^2 + s2^2
    quad = torch.addcmul(quad, s1 * (2.0 * c).unsqueeze(0), s2, value=-1.0)  # - 2 c_j s1 s2
    return (1.0 - c * c).unsqueeze(0) - quad


def gram_volume_matrix(anchor: Tensor, *others: Tensor, eps: float = VOLUME_EPS) -> Tensor:
    """``(B, B)`` volumes ``V[i, j]`` of the tuple (anchor row i, every other modality's row j).

    The diagonal holds the volumes of the true tuples; off-diagonal entries are the negatives that the
    GRAM contrastive loss pushes apart. With ``C_j`` the Gram matrix of the others' row j and ``s_ij`` the
    anchor-to-others cosines, the block determinant is ``det G_ij = det C_j - s_ij^T adj(C_j) s_ij``:
    the (k-1) x (k-1) pieces are computed once per j, so the B x B part costs one matmul and a small
    quadratic form per entry instead of B^2 determinants (and stays exact when ``C_j`` is singular).
    """
    _check_tuple((anchor, *others), "gram_volume_matrix")
    return gram_volume_matrix_unit(normalize(anchor), *[normalize(z) for z in others], eps=eps)


def gram_volume_matrix_unit(a: Tensor, *normed: Tensor, eps: float = VOLUME_EPS) -> Tensor:
    """:func:`gram_volume_matrix` of rows that are already unit vectors, without any check."""
    # One contiguous (B, B) cosine matrix per other modality keeps the B x B work to matmuls and
    # elementwise products (a (B, B, k-1) einsum layout is several times slower on CPU).
    crosses = [a @ z.T for z in normed]
    if len(normed) == 1:
        return (1.0 - crosses[0].pow(2)).clamp_min(eps).sqrt()
    if len(normed) == 2:
        return _volume_matrix_3(crosses[0], crosses[1], normed[0], normed[1]).clamp_min(eps).sqrt()
    o = torch.stack(normed, dim=1)  # (B_j, k-1, D)
    inner = o @ o.transpose(1, 2)  # (B_j, k-1, k-1)
    adj = _adjugate(inner)
    quad: Tensor | None = None
    for m in range(len(normed)):
        for n in range(m, len(normed)):
            coef = adj[:, m, m] if m == n else adj[:, m, n] + adj[:, n, m]
            term = coef.unsqueeze(0) * crosses[m] * crosses[n]
            quad = term if quad is None else quad + term
    assert quad is not None
    if inner.shape[-1] == 2:  # 2x2 determinant in closed form (as the adjugate above)
        det = inner[:, 0, 0] * inner[:, 1, 1] - inner[:, 0, 1] * inner[:, 1, 0]
    else:
        det = torch.linalg.det(inner)
    return (det.unsqueeze(0) - quad).clamp_min(eps).sqrt()
