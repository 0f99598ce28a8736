"""Small building blocks shared by the functional equations (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor

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
