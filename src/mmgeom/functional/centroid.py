"""Per-row centroids of a modality tuple (UniAlign's anchor-free alignment and centroid uniformity)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_pair, validation_enabled
from ._common import EPS, normalize


def _stack(zs: tuple[Tensor, ...], mask: Tensor | None, what: str) -> tuple[Tensor, Tensor]:
    """Normalised ``(B, M, D)`` stack and a float ``(B, M)`` presence weight."""
    if len(zs) < 2:
        raise ValueError(f"{what}: expected at least 2 modalities, got {len(zs)}")
    # Absent rows may hold anything finite (zeros, typically), so only present rows must have a direction.
    for k, z in enumerate(zs[1:], start=1):
        check_pair(zs[0], z, ("z0", f"z{k}"), normalised=mask is None)
    stacked = torch.stack([normalize(z) for z in zs], dim=1)
    b, m = stacked.shape[:2]
    if mask is None:
        return stacked, stacked.new_ones(b, m)
    if mask.shape != (b, m) or mask.dtype != torch.bool:
        raise ValueError(
            f"mask: expected a bool tensor of shape ({b}, {m}), got {mask.dtype} {tuple(mask.shape)}"
        )
    if validation_enabled():
        # Value checks (each reads the mask or the rows on the host): skipped with validation off.
        check_rows_present(mask)
        for k, z in enumerate(zs):
            zero = ((z.detach().abs().amax(dim=1) == 0) & mask[:, k]).nonzero()
            if zero.numel():
                raise ValueError(f"z{k}: row {int(zero[0])} is marked present but is all zeros")
    return stacked, mask.to(stacked.dtype)


def check_rows_present(mask: Tensor) -> None:
    """A value check of a ``(B, M)`` presence mask: every row has at least one present modality.

    Raises:
        ValueError: naming ``mask``.
    """
    if not bool(mask.any(dim=1).all()):
        raise ValueError("mask: every row needs at least one present modality")


def tuple_mean(*zs: Tensor, mask: Tensor | None = None) -> Tensor:
    """``(B, D)`` unnormalised mean ``c̄_i`` of row i's normalised embeddings over its present modalities."""
    stacked, w = _stack(zs, mask, "tuple_mean")
    return tuple_mean_unit(stacked, w)


def tuple_mean_unit(stacked: Tensor, weight: Tensor | None = None) -> Tensor:
    """:func:`tuple_mean` of a ``(B, M, D)`` stack of unit rows with a float ``(B, M)`` presence, unchecked.

    A row with no present modality (only with value checks off) gets the zero vector rather than ``0/0``.
    """
    if weight is None:
        return stacked.mean(dim=1)
    return (stacked * weight.unsqueeze(-1)).sum(dim=1) / weight.sum(dim=1, keepdim=True).clamp_min(1.0)


def centroid(*zs: Tensor, mask: Tensor | None = None) -> Tensor:
    """``(B, D)`` centroid direction ``c_i = normalize(mean_m z_i^m)`` (UniAlign's ``C``).

    Example:
        >>> e = torch.eye(2)
        >>> centroid(e[:1], e[1:]).tolist()  # doctest: +ELLIPSIS
        [[0.7071..., 0.7071...]]
    """
    return normalize(tuple_mean(*zs, mask=mask), EPS)


def centroid_alignment(*zs: Tensor, mask: Tensor | None = None) -> Tensor:
    """Anchor-free alignment ``1/(BM) sum_i sum_m ||z_i^m - c̄_i||^2`` with ``c̄_i`` the unnormalised mean.

    Equals ``mean_i (1 - ||c̄_i||^2)``: zero exactly when every modality of every row agrees. With a
    ``(B, M)`` presence mask the average runs over present (row, modality) entries only.

    Reference: Yin et al., "Towards Uniformity and Alignment for Multimodal Representation Learning",
    arXiv 2602.09507.
    """
    stacked, w = _stack(zs, mask, "centroid_alignment")
    return centroid_alignment_unit(stacked, w if mask is not None else None)


def centroid_alignment_unit(stacked: Tensor, weight: Tensor | None = None) -> Tensor:
    """:func:`centroid_alignment` of a ``(B, M, D)`` stack of unit rows, unchecked.

    ``weight`` is the float ``(B, M)`` presence (1 present, 0 absent); ``None`` means every entry is
    present, which skips the weighting (the unmasked value is the same). The counts stay tensors, clamped
    at 1: an empty row or batch (possible only with value checks off) contributes 0, never ``0/0``.
    """
    if weight is None:
        return (stacked - stacked.mean(dim=1, keepdim=True)).pow(2).sum(dim=-1).mean()
    w = weight
    mean = tuple_mean_unit(stacked, w).unsqueeze(1)
    sq = (stacked - mean).pow(2).sum(dim=-1)
    return (sq * w).sum() / w.sum().clamp_min(1.0)
