"""One wrapper that makes every registered loss see the global batch under DDP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..losses import LossOutput
from .env import get_rank, get_world_size, is_initialized
from .gather import gather_many, gather_sizes
from .local_infonce import local_info_nce_output, supports_local

REGIMES = ("global", "local")


class DistributedLoss(nn.Module):
    """Evaluate ``loss`` on the batch of all ranks, with gradients flowing back to every rank's rows.

    ``regime="global"`` (any loss): every tensor with one row per example is gathered from every rank —
    the modality embeddings and loss keyword tensors such as ``magnitudes`` with
    :func:`~mmgeom.distributed.gather_with_grad`, ``labels`` and ``mask`` without gradient, all in one
    floating-point and one integer collective (:func:`~mmgeom.distributed.gather_many`) — and every
    rank evaluates the unchanged loss on the concatenated (global) batch. Terms that need the whole batch
    (uniformity, dispersion, centroids, Gram volumes, DAGR's calibration statistics) therefore see exactly
    what a single process would. With DDP's gradient averaging the parameter gradients equal the
    single-process gradients of the concatenated batch (``docs/distributed.md``).

    ``regime="local"`` (``infonce`` only): each rank computes the cross-entropy of its own rows against
    the gathered columns (O(B_r * B) logits instead of O(B^2)), scaled so that the same identity holds.
    The returned ``total`` is then this rank's share; :meth:`log_scalars` gives the global value.

    In a single process (no process group, or world size 1) the wrapper calls ``loss`` unchanged.

    Args:
        loss: a loss called as ``loss(batch, **kwargs) -> LossOutput``.
        regime: ``"global"`` or ``"local"``.

    Raises:
        ValueError: an unknown regime, or ``"local"`` for a loss without a local form.

    Example:
        >>> loss = DistributedLoss(create_loss("unialign", anchor="text"))
        >>> out = loss(ddp_encoder(local_batch))          # the loss of the global batch on every rank
        >>> out.total.backward()
    """

    def __init__(self, loss: nn.Module, regime: str = "global") -> None:
        super().__init__()
        if regime not in REGIMES:
            raise ValueError(f"regime: expected one of {list(REGIMES)}, got {regime!r}")
        if regime == "local" and not supports_local(loss):
            raise ValueError(
                f"regime: 'local' is implemented for infonce only, got {type(loss).__name__}; use 'global'"
            )
        self.loss = loss
        self.regime = regime

    @property
    def active(self) -> bool:
        """Whether more than one process takes part (otherwise the wrapper is transparent)."""
        return is_initialized() and get_world_size() > 1

    def forward(self, batch: Mapping[str, Any], **kwargs: Any) -> LossOutput:
        """The loss of the global batch (``regime="global"``) or this rank's share (``"local"``)."""
        if not self.active:
            return self.loss(batch, **kwargs)
        rows = _batch_rows(batch)
        sizes = gather_sizes(rows, _first_tensor(batch).device)
        if self.regime == "local":
            return local_info_nce_output(self.loss, batch, sizes, **kwargs)
        gathered, extra = _gather_all(dict(batch), dict(kwargs), rows, sizes)
        return self.loss(gathered, **extra)

    def log_scalars(self, out: LossOutput) -> dict[str, float]:
        """``{"total": ..., **terms}`` of the *global* loss as floats, for logging.

        In the global regime every rank already holds the global values; in the local regime the ranks'
        shares are averaged (one all-reduce).
        """
        names = ["total", *out.terms]
        values = [out.total.detach().reshape(()), *(v.detach().reshape(()) for v in out.terms.values())]
        if self.active and self.regime == "local":
            stacked = torch.stack([v.to(torch.float64) for v in values])
            dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
            stacked /= get_world_size()
            return dict(zip(names, stacked.tolist(), strict=True))
        return {n: float(v) for n, v in zip(names, values, strict=True)}

    def extra_repr(self) -> str:
        return f"regime={self.regime}, rank={get_rank()}, world_size={get_world_size()}"


def _first_tensor(batch: Mapping[str, Any]) -> Tensor:
    for v in batch.values():
        if isinstance(v, Tensor):
            return v
    raise ValueError("batch: expected at least one modality tensor")


def _batch_rows(batch: Mapping[str, Any]) -> int:
    """Rows of the local batch (the first modality tensor's)."""
    for k, v in batch.items():
        if k not in ("labels", "mask") and isinstance(v, Tensor) and v.dim() >= 1:
            return int(v.shape[0])
    return int(_first_tensor(batch).shape[0])


def _gather_all(
    batch: dict[str, Any], kwargs: dict[str, Any], rows: int, sizes: list[int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Gather every per-row tensor of the batch and of the keyword arguments (also inside dicts such
    as ``magnitudes`` and ``mask``) in one float and one integer collective; leave other values."""
    paths: list[tuple[str, str, str | None]] = []
    tensors: list[Tensor] = []
    for where, source in (("batch", batch), ("kwargs", kwargs)):
        for key, value in source.items():
            if isinstance(value, Mapping):
                for inner, v in value.items():
                    if _per_row(v, rows):
                        paths.append((where, key, inner))
                        tensors.append(v)
            elif _per_row(value, rows):
                paths.append((where, key, None))
                tensors.append(value)
    out = {"batch": dict(batch), "kwargs": dict(kwargs)}
    out["batch"].update({k: dict(v) for k, v in batch.items() if isinstance(v, Mapping)})
    out["kwargs"].update({k: dict(v) for k, v in kwargs.items() if isinstance(v, Mapping)})
    for (where, key, inner), gathered in zip(paths, gather_many(tensors, sizes), strict=True):
        if inner is None:
            out[where][key] = gathered
        else:
            out[where][key][inner] = gathered
    return out["batch"], out["kwargs"]


def _per_row(value: Any, rows: int) -> bool:
    """A tensor with one row per example of this rank's batch."""
    return isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == rows
