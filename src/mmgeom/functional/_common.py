"""Small building blocks shared by the functional equations (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor

#: Guard added to norms before dividing.
EPS = 1e-12


def accum_dtype(x: Tensor) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def normalize(x: Tensor, eps: float = EPS) -> Tensor:
    """Rows scaled to unit L2 norm, computed in the accumulation dtype."""
    x = x.to(accum_dtype(x))
    # A product by the (B, 1) reciprocal rather than a division by the norm: the division's backward
    # for its (B, 1) operand costs three (B, D) passes (grad / n, x / n, / n) against one (grad * x).
    return x * x.norm(dim=-1, keepdim=True).clamp_min(eps).reciprocal()
