"""All-gather along the batch dimension, with a backward that keeps the gradients.

``torch.distributed.all_gather`` writes into pre-allocated tensors outside autograd: whatever the loss
does with the gathered rows of the *other* ranks, no gradient reaches them, and even this rank's own
rows inside the gathered tensor are cut from the graph. :func:`gather_with_grad` is an autograd function
whose backward is the adjoint of the gather: each rank receives the gradient of its own rows summed over
every rank's loss. See ``docs/distributed.md`` for why that makes W ranks compute the single-process
gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .env import get_rank, get_world_size, is_initialized


def gather_sizes(rows: int, device: str | torch.device = "cpu") -> list[int]:
    """Every rank's row count, in rank order (``[rows]`` in a single process)."""
    if not is_initialized():
        return [int(rows)]
    local = torch.tensor([int(rows)], dtype=torch.long, device=device)
    parts = [torch.zeros_like(local) for _ in range(get_world_size())]
    dist.all_gather(parts, local)
    return [int(p.item()) for p in parts]


def _wire(x: Tensor) -> Tensor:
    """A dtype every backend can all-gather (bool travels as uint8)."""
    return x.to(torch.uint8) if x.dtype == torch.bool else x


def _all_gather_rows(x: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """The row blocks of every rank (uneven row counts are padded on the wire and trimmed)."""
    wire = _wire(x).contiguous()
    longest = max(sizes)
    if wire.shape[0] < longest:
        pad = wire.new_zeros((longest - wire.shape[0], *wire.shape[1:]))
        wire = torch.cat([wire, pad])
    parts = [torch.empty_like(wire) for _ in sizes]
    dist.all_gather(parts, wire)
    return [p[:n].to(x.dtype) for p, n in zip(parts, sizes, strict=True)]


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's rows. Backward: all-reduce (sum), return this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: tuple[int, ...]) -> Tensor:
        ctx.sizes, ctx.rank = sizes, get_rank()
        return torch.cat(_all_gather_rows(x, sizes))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start : start + ctx.sizes[ctx.rank]], None


def gather_with_grad(x: Tensor, sizes: Sequence[int] | None = None) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, differentiably.

    The forward is an all-gather (rank order). The backward all-reduces (sums) the gradient of the
    gathered tensor over the ranks and returns the rows that belong to this rank, so every rank's loss
    contributes to the gradient of every row. If every rank computes the same loss ``L`` on the gathered
    batch, the gradient of this rank's rows is ``W * dL/dZ_r``; DDP's division by ``W`` then gives the
    single-process parameter gradient (``docs/distributed.md``).

    Args:
        x: ``(B_r, ...)`` rows of this rank; every rank passes the same trailing shape and dtype.
        sizes: every rank's ``B_r`` if already known (saves one small collective); by default gathered.

    Returns:
        ``(sum_r B_r, ...)``; ``x`` itself in a single process.

    Example:
        >>> z_all = gather_with_grad(z_local)        # (W * B, D), gradients flow back to every rank
    """
    if not is_initialized() or get_world_size() == 1:
        return x
    if x.dim() == 0:
        raise ValueError(
            f"gather_with_grad: expected a tensor with a batch dimension, got shape {tuple(x.shape)}"
        )
    counts = tuple(int(n) for n in (sizes if sizes is not None else gather_sizes(x.shape[0], x.device)))
    if len(counts) != get_world_size() or counts[get_rank()] != x.shape[0]:
        raise ValueError(
            f"gather_with_grad: sizes {list(counts)} do not match {get_world_size()} ranks with "
            f"{x.shape[0]} rows on rank {get_rank()}"
        )
    return _GatherWithGrad.apply(x, counts)


@torch.no_grad()
def gather_rows(x: Tensor, sizes: Sequence[int] | None = None) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, without gradient (labels, masks, indices).

    Boolean tensors are supported (they travel as ``uint8``). ``x`` itself in a single process.
    """
    if not is_initialized() or get_world_size() == 1:
        return x
    counts = list(sizes) if sizes is not None else gather_sizes(x.shape[0], x.device)
    return torch.cat(_all_gather_rows(x.detach(), counts))


def gather_many(tensors: Sequence[Tensor], sizes: Sequence[int] | None = None) -> list[Tensor]:
    """Gather several per-row tensors with as few collectives as possible.

    Floating tensors of one dtype are flattened to ``(B_r, -1)``, concatenated along the feature
    dimension, gathered once with :func:`gather_with_grad` and split again (``cat``/``split`` are
    differentiable, so each keeps its gradient); integer and boolean tensors (labels, masks) travel
    together as ``int64`` through one :func:`gather_rows`. Every tensor must have ``B_r`` rows.

    Returns:
        The gathered tensors, in the order given (``tensors`` unchanged in a single process).
    """
    items = list(tensors)
    if not is_initialized() or get_world_size() == 1 or not items:
        return items
    rows = items[0].shape[0]
    for t in items:
        if t.dim() == 0 or t.shape[0] != rows:
            raise ValueError(f"gather_many: every tensor needs {rows} rows, got shape {tuple(t.shape)}")
    counts = list(sizes) if sizes is not None else gather_sizes(rows, items[0].device)
    out: list[Tensor | None] = [None] * len(items)
    groups: dict[Any, list[int]] = {}
    for i, t in enumerate(items):
        groups.setdefault(t.dtype if t.is_floating_point() else "integer", []).append(i)
    for key, idx in groups.items():
        flat = [items[i].reshape(rows, -1) for i in idx]
        widths = [f.shape[1] for f in flat]
        if key == "integer":
            joined = gather_rows(torch.cat([f.to(torch.int64) for f in flat], dim=1), counts)
        else:
            joined = gather_with_grad(torch.cat(flat, dim=1), counts)
        for i, part in zip(idx, joined.split(widths, dim=1), strict=True):
            shape = (joined.shape[0], *items[i].shape[1:])
            out[i] = part.reshape(shape).to(items[i].dtype)
    return [t for t in out if t is not None]
