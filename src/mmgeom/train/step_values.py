"""What one update leaves for logging, and the interval sums the ``train`` events average.

On an accelerator, reading a step's loss and each of its terms as Python floats costs one host-device
synchronisation per value (16 for InfoNCE over six views). There :func:`loss_values` keeps them as one
float64 tensor on the device, and :class:`IntervalSums` adds those tensors up over a logging interval,
writing the sums back into the trainer's ``log_state`` (Python floats, the checkpointed form) only when a
``train`` event or a checkpoint reads them: one synchronisation per interval. On the CPU a ``float()``
is no synchronisation and costs 0.3 us, less than building any tensor (a ``stack`` of 16 values costs
5-30 us), so the values are read as floats and added in Python, as they always were.

Both ways give bit-identical sums: a float32 (or bfloat16) value converts exactly to float64, and a
float64 tensor addition is the same IEEE double addition as Python's ``+``, done in the same order,
starting from the same value.
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
        values: the values of ``names``: a ``(len(names),)`` float64 tensor on the training device, or
            Python floats (CPU); ``None`` for a skipped step.
        grad_norm: the global gradient norm before clipping (NaN for a skipped step).
        skipped: the step was non-finite and skipped (``faults.on_non_finite: skip``).
    """

    lr: float
    names: tuple[str, ...] = ()
    values: Tensor | tuple[float, ...] | None = None
    grad_norm: float = math.nan
    skipped: bool = False

    def as_floats(self) -> dict[str, float]:
        """What :meth:`~mmgeom.train.Trainer.train_step` returns: ``loss``, ``loss/<term>``, ``lr``,
        ``grad_norm``; ``{"skipped": 1.0, "lr": ...}`` for a skipped step."""
        if self.skipped or self.values is None:
            return {"skipped": 1.0, "lr": self.lr}
        values = self.values.tolist() if isinstance(self.values, Tensor) else self.values
        out = dict(zip(self.names, values, strict=True))
        out.update(lr=self.lr, grad_norm=self.grad_norm)
        return out


def from_floats(scalars: Mapping[str, float]) -> StepValues:
    """The :class:`StepValues` of what :meth:`~mmgeom.train.Trainer.train_step` returned (floats)."""
    lr = float(scalars["lr"])
    if "skipped" in scalars:
        return StepValues(lr=lr, skipped=True)
    names = tuple(k for k in scalars if k not in ("lr", "grad_norm"))
    values = tuple(float(scalars[k]) for k in names)
    return StepValues(lr=lr, names=names, values=values, grad_norm=float(scalars.get("grad_norm", math.nan)))


def loss_values(
    out: LossOutput,
    host: Callable[[LossOutput], dict[str, float]] | None = None,
    on_device: bool | None = None,
) -> tuple[tuple[str, ...], Tensor | tuple[float, ...]]:
    """The logged names and values of ``out.total`` and its terms.

    Args:
        out: the loss output.
        host: a function returning ``{"total": ..., **terms}`` as floats, used instead when the values
            need a collective first (DDP's local regime:
            :meth:`~mmgeom.distributed.DistributedLoss.log_scalars`).
        on_device: keep the values in one float64 tensor on their device (no sync) instead of reading
            them as floats; default: when they are not on the CPU.
    """
    names = ("loss", *(f"loss/{k}" for k in out.terms))
    if host is not None:
        return names, tuple(host(out).values())
    parts = [out.total.detach(), *out.terms.values()]  # terms are detached (LossOutput's contract)
    if on_device is None:
        on_device = out.total.device.type != "cpu"
    if not on_device:
        return names, tuple(float(p) for p in parts)
    with torch.no_grad():
        if all(p.dtype == parts[0].dtype and p.dim() == 0 for p in parts):
            return names, torch.stack(parts).to(torch.float64)
        return names, torch.stack([p.reshape(()).to(torch.float64) for p in parts])


class IntervalSums:
    """The running per-name sums of a logging interval (``sums[k] += v`` for each update, in order).

    Float values are added into ``log_state["sums"]`` at once; tensor values into a float64 tensor on
    their device, written back as floats by :meth:`flush` (before a ``train`` event or a checkpoint).

    Args:
        state: returns the trainer's current ``log_state`` (``{"sums": {name: float}, "count", "seconds"}``);
            a callable, because the trainer replaces the dict after each event and on resume.
    """

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state
        self._names: Sequence[str] | None = None
        self._acc: Tensor | None = None

    def add(self, step: StepValues, seconds: float) -> None:
        """Add one update's values and its time."""
        assert step.values is not None
        state = self._state()
        if isinstance(step.values, Tensor):
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
        else:
            self.flush()
            sums = state["sums"]
            for k, v in zip(step.names, step.values, strict=True):
                sums[k] = sums.get(k, 0.0) + v
        state["count"] += 1
        state["seconds"] += seconds

    def flush(self) -> None:
        """Write the pending tensor sums into ``log_state["sums"]`` as floats (one host sync)."""
        if self._acc is not None and self._names is not None:
            sums = self._state()["sums"]
            for k, v in zip(self._names, self._acc.tolist(), strict=True):
                sums[k] = v
        self._names, self._acc = None, None
