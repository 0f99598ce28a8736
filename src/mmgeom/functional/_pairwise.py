"""Memory-bounded exact Gaussian potential ``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` on unit rows.

For unit rows ``||z_i - z_j||^2 = 2 - 2 s_ij`` with ``s = z z^T``, so the potential is
``LSE_{i != j}(2t s_ij) - 2t - log(B(B - 1))``: one Gram matrix, no B x B x D differences. Its gradient is
``dU/dz_i = 4t sum_j w_ij z_j`` with ``w = softmax`` of the off-diagonal logits over all pairs (``w`` is
symmetric, so the row and column contributions are one matmul).

The forward pass walks row blocks, keeping only per-row log-sum-exps. Small problems keep ``w`` for the
backward pass (one matmul forward, one backward); large ones recompute each block in backward instead of
storing a B x B activation, so peak memory is O(chunk * B).

With a presence mask (missing modalities) the pairs involving an absent row get the logit ``-inf``: the
potential is then the one of the present rows alone (``log mean`` over present pairs ``i != j``), absent
rows get exactly zero weight and gradient, and shapes never depend on the mask's values (no host read).
Fewer than two present rows leave no pair: the potential is 0 and so is its gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: Above this many bytes for the B x B weights, blocks are recomputed in backward instead of stored.
DENSE_BYTES = 256 * 2**20
#: Working-set budget for one row block when chunking.
CHUNK_BYTES = 64 * 2**20


def auto_chunk(n: int, itemsize: int, chunk_size: int | None) -> tuple[int, bool]:
    """``(rows per block, keep weights for backward)`` for an ``n``-row problem."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
        return min(chunk_size, n), chunk_size >= n
    if n * n * itemsize <= DENSE_BYTES:
        return n, True
    return max(1, CHUNK_BYTES // (n * itemsize)), False


def _block_logits(z: Tensor, start: int, stop: int, scale: float, present: Tensor | None) -> Tensor:
    logits = (z[start:stop] @ z.T).mul_(scale)
    rows = torch.arange(stop - start, device=z.device)
    logits[rows, rows + start] = float("-inf")
    if present is not None:
        # A pair counts only when both rows are present; absent pairs drop out of the log-sum-exp.
        logits.masked_fill_(~(present[start:stop, None] & present[None, :]), float("-inf"))
    return logits


class _GaussianPotential(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, t: float, chunk: int, keep: bool, present: Tensor | None) -> Tensor:
        n = z.shape[0]
        scale = 2.0 * t
        row_lse = z.new_empty(n)
        kept = []
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            logits = _block_logits(z, start, stop, scale, present)
            row_lse[start:stop] = torch.logsumexp(logits, dim=1)
            if keep:
                kept.append(logits)
        lse = torch.logsumexp(row_lse, dim=0)
        if present is not None:
            # No present pair: lse = -inf. A finite stand-in keeps exp(logits - lse) at 0 (not
            # exp(-inf + inf) = NaN), so the weights and the gradient are exactly 0.
            lse = lse.clamp_min(torch.finfo(lse.dtype).min)
        ctx.t, ctx.chunk = t, chunk
        ctx.present = present
        if keep:
            weights = torch.cat(kept).sub_(lse).exp_()
            ctx.save_for_backward(z, weights, lse)
        else:
            ctx.save_for_backward(z, None, lse)
        if present is None:
            return lse - scale - math.log(n * (n - 1))
        # The pair count stays a tensor (no host read); clamped so that log() sees no 0 when it is unused.
        rows = present.sum()
        count = rows.to(lse.dtype).clamp_min(2.0)
        return torch.where(rows >= 2, lse - scale - (count * (count - 1.0)).log(), 0.0)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        z, weights, lse = ctx.saved_tensors
        factor = grad * (4.0 * ctx.t)
        if weights is not None:
            return factor * (weights @ z), None, None, None, None
        out = torch.empty_like(z)
        for start in range(0, z.shape[0], ctx.chunk):
            stop = min(start + ctx.chunk, z.shape[0])
            w = _block_logits(z, start, stop, 2.0 * ctx.t, ctx.present).sub_(lse).exp_()
            out[start:stop] = w @ z
        return factor * out, None, None, None, None


def gaussian_potential_unit(
    z: Tensor, t: float, chunk_size: int | None = None, mask: Tensor | None = None
) -> Tensor:
    """The potential of already-normalised rows ``z`` (no validation; see ``uniformity``).

    ``mask``: optional ``(B,)`` bool presence; then the potential of the present rows only (pairs of
    present rows), 0 with fewer than two present rows. Absent rows must be finite (e.g. zeros).
    """
    chunk, keep = auto_chunk(z.shape[0], z.element_size(), chunk_size)
    out: Tensor = _GaussianPotential.apply(z, float(t), chunk, keep, mask)
    return out
