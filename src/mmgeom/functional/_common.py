"""Small building blocks shared by the functional equations (not public API)."""

from __future__ import annotations

import math

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
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def sq_dists_normalised(z: Tensor) -> Tensor:
    """``||z_i - z_j||^2 = 2 - 2 z_i . z_j`` for unit rows; one matmul instead of B^2 differences."""
    return (2.0 - 2.0 * (z @ z.T)).clamp_min(0.0)


def log_mean_exp_offdiag(logits: Tensor) -> Tensor:
    """``log mean_{i != j} exp(logits_ij)`` for a square matrix, via logsumexp with the diagonal masked.

    For a symmetric matrix this equals the mean over the pairs ``i < j`` (the ``torch.pdist`` pairs).
    """
    n = logits.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    masked = logits.masked_fill(eye, float("-inf"))
    return torch.logsumexp(masked.reshape(-1), dim=0) - math.log(n * (n - 1))
