"""Small building blocks shared by the functional equations (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import validation_enabled

#: Guard added to norms before dividing.
EPS = 1e-12


def accum_dtype(x: Tensor) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def unit_and_norm(x: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Rows scaled to unit L2 norm and the row norms ``(x / max(||x||, eps), ||x||)``, from one reduction.

    Computed in the accumulation dtype. A product by the reciprocal norm rather than a division by it:
    the division's backward for its ``(..., 1)`` operand costs three passes over ``x`` (``grad / n``,
    ``x / n``, ``/ n``) against one (``grad * x``).
    """
    x = x.to(accum_dtype(x))
    norm = x.norm(dim=-1, keepdim=True)
    return x * norm.clamp_min(eps).reciprocal(), norm.squeeze(-1)


def normalize(x: Tensor, eps: float = EPS) -> Tensor:
    """Rows scaled to unit L2 norm, computed in the accumulation dtype (as :func:`unit_and_norm`)."""
    x = x.to(accum_dtype(x))
    # The same operations as unit_and_norm (bit for bit), without the call and the squeezed view.
    return x * x.norm(dim=-1, keepdim=True).clamp_min(eps).reciprocal()


def normalize_present(x: Tensor, mask: Tensor, eps: float = EPS) -> Tensor:
    """:func:`normalize` with the rows where the ``(B,)`` bool ``mask`` is False set to exactly zero.

    The absent rows are zeroed *before* normalising: whatever they hold (zeros, junk, even NaN) reaches
    neither the result nor, through ``torch.where``'s backward (a selection, not a product with 0), the
    gradient, which is exactly 0 there. No value is read on the host.
    """
    return normalize(torch.where(mask.unsqueeze(-1), x, 0.0), eps)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the entries where ``mask`` is True; 0 (with zero gradient) when none is.

    The count stays a tensor (``clamp_min(1)`` turns an empty mean's ``0 / 0`` into ``0 / 1``), so the
    value is the one of the selected entries without a data-dependent shape (no host read).
    """
    total = torch.where(mask, values, 0.0).sum()
    return total / mask.sum().clamp_min(1).to(total.dtype)


def check_presence(mask: object, z: Tensor, name: str = "z") -> Tensor:
    """Check a ``(B,)`` bool presence ``mask`` for the rows of ``z`` and return it.

    The shape and dtype are always checked; with value checks on (:func:`mmgeom.set_validation`), a row
    marked present must have a direction (not all zeros). Absent rows may hold anything finite.
    """
    rows = z.shape[0]
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (rows,):
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask: expected a bool tensor of shape ({rows},) for {name}, got {got}")
    if mask.device != z.device:
        raise ValueError(f"mask: expected device {z.device} as {name}, got {mask.device}")
    if validation_enabled():
        zero = ((z.detach().abs().amax(dim=1) == 0) & mask).nonzero()
        if zero.numel():
            raise ValueError(f"{name}: row {int(zero[0])} is marked present but is all zeros")
    return mask
