"""Learning-rate schedule: linear warm-up, then cosine decay (or constant)."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_lr(
    step: int,
    base_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    schedule: str = "cosine",
) -> float:
    """Learning rate of the update with 0-based index ``step``.

    * warm-up, ``step < W``: ``base_lr * (step + 1) / W`` (the first update already moves);
    * ``"cosine"``, ``step >= W``: ``min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2`` with
      ``p = (step - W) / (total_steps - W)``, so it starts at ``base_lr`` and reaches ``min_lr`` one step
      after the last update; ``p`` is clipped to 1 beyond ``total_steps``;
    * ``"constant"``, ``step >= W``: ``base_lr``.

    Args:
        step: 0-based update index.
        base_lr: peak learning rate.
        total_steps: number of updates in the run.
        warmup_steps: ``W``.
        min_lr: floor of the cosine.
        schedule: ``"cosine"`` or ``"constant"``.
    """
    if step < 0:
        raise ValueError(f"step: expected >= 0, got {step}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule: expected 'cosine' or 'constant', got {schedule!r}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    decay = total_steps - warmup_steps
    p = 1.0 if decay <= 0 else min(1.0, (step - warmup_steps) / decay)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


def build_scheduler(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    schedule: str = "cosine",
) -> LambdaLR:
    """A ``LambdaLR`` that gives every parameter group :func:`warmup_cosine_lr` of its initial lr.

    Call ``scheduler.step()`` after each ``optimizer.step()``; update ``i`` then uses the rate for ``i``.
    """
    bases = [float(g["lr"]) for g in optimizer.param_groups]

    def factor_for(base: float) -> Callable[[int], float]:
        def factor(step: int) -> float:
            return warmup_cosine_lr(step, base, total_steps, warmup_steps, min_lr, schedule) / base

        return factor

    return LambdaLR(optimizer, [factor_for(b) for b in bases])
