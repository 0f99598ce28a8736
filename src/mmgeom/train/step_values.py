"""What one update leaves for logging, kept on the device until a ``train`` event needs it.

Reading a step's loss and its terms as Python floats costs one host-device synchronisation per value
(16 for InfoNCE over six views) and a kernel launch each. :class:`StepValues` keeps them as one float64
tensor instead; :class:`IntervalSums` adds those tensors up over a logging interval and writes the sums
back into the trainer's ``log_state`` (Python floats, the checkpointed form) only when a ``train`` event
or a checkpoint reads them: one synchronisation per interval.

The sums are bit-identical to adding the floats in Python: a float32 (or bfloat16) value converts
exactly to float64, and a float64 tensor addition is the same IEEE double addition as Python's ``+``,
done in the same order, starting from the same value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..losses import LossOutput

__all__ = ["IntervalSums", "StepValues", "from_floats", "loss_values"]


@dataclass(frozen=True)
class StepValues:
    """One update's logged values.

    Attributes:
        lr: the learning rate the update used.
        names: the logged names of ``values``: ``"loss"``, then ``"loss/<term>"`` in the loss's order.
        values: ``(len(names),)`` float64 tensor on the training device (``None`` for a skipped step).
        grad_norm: the global gradient norm before clipping (NaN for a skipped step).
        skipped: the step was non-finite and skipped (``faults.on_non_finite: skip``).
    """

    lr: float
    names: tuple[str, ...] = ()
    values: Tensor | None = None
    grad_norm: float = math.nan
    skipped: bool = False

    def as_floats(self) -> dict[str, float]:
        """What :meth:`~mmgeom.train.Trainer.train_step` returns: ``loss``, ``loss/<term>``, ``lr``,
        ``grad_norm``; ``{"skipped": 1.0, "lr": ...}`` for a skipped step."""
        if self.skipped or self.values is None:
            return {"skipped": 1.0, "lr": self.lr}
        out = dict(zip(self.names, self.values.tolist(), strict=True))
        out.update(lr=self.lr, grad_norm=self.grad_norm)
        return out


def from_floats(scalars: Mapping[str, float]) -> StepValues:
    """The :class:`StepValues` of what :meth:`~mmgeom.train.Trainer.train_step` returned (floats)."""
    lr = float(scalars["lr"])
    if "skipped" in scalars:
        return StepValues(lr=lr, skipped=True)
    names = tuple(k for k in scalars if k not in ("lr", "grad_norm"))
    values = torch.tensor([float(scalars[k]) for k in names], dtype=torch.float64)
    return StepValues(lr=lr, names=names, values=values, grad_norm=float(scalars.get("grad_norm", math.nan)))


def loss_values(
    out: LossOutput, host: Callable[[LossOutput], dict[str, float]] | None = None
) -> tuple[tuple[str, ...], Tensor]:
    """The logged names and one float64 tensor of ``out.total`` and its terms, without a host sync.

    Args:
        out: the loss output.
        host: a function returning ``{"total": ..., **terms}`` as floats, used instead when the values
            need a collective first (DDP's local regime:
            :meth:`~mmgeom.distributed.DistributedLoss.log_scalars`).
    """
    names = ("loss", *(f"loss/{k}" for k in out.terms))
    if host is not None:
        floats = host(out)
        return names, torch.tensor(list(floats.values()), dtype=torch.float64, device=out.total.device)
    parts = [out.total.detach().reshape(()), *(v.detach().reshape(()) for v in out.terms.values())]
    if all(p.dtype == parts[0].dtype for p in parts):
        return names, torch.stack(parts).to(torch.float64)
    return names, torch.stack([p.to(torch.float64) for p in parts])


class IntervalSums:
    """The running per-name sums of a logging interval, as a float64 tensor between flushes.

    Args:
        state: returns the trainer's current ``log_state`` (``{"sums": {name: float}, "count", "seconds"}``);
            a callable, because the trainer replaces the dict after each event and on resume.
    """

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state
        self._names: Sequence[str] | None = None
        self._acc: Tensor | None = None

    def add(self, step: StepValues, seconds: float) -> None:
        """Add one update's values (``sums[k] += v`` for each name, in order) and its time."""
        assert step.values is not None
        state = self._state()
        if step.names != self._names:
            # A new set of names (first step, or a loss whose terms change): continue from the floats.
            self.flush()
            sums = state["sums"]
            self._names = step.names
            self._acc = torch.tensor(
                [sums.get(k, 0.0) for k in step.names], dtype=torch.float64, device=step.values.device
            )
        assert self._acc is not None
        self._acc += step.values
        state["count"] += 1
        state["seconds"] += seconds

    def flush(self) -> None:
        """Write the pending sums into ``log_state["sums"]`` as floats (one host sync)."""
        if self._acc is not None and self._names is not None:
            sums = self._state()["sums"]
            for k, v in zip(self._names, self._acc.tolist(), strict=True):
                sums[k] = v
        self._names, self._acc = None, None
