"""A lean training loop for many small runs (studies, decoders, probes): far cheaper than the Trainer.

It has no logging, checkpoints or evaluation schedule of its own: a callback every N steps is the hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from ..data import BatchSampler
from ..errors import NonFiniteLossError
from .schedule import build_scheduler

__all__ = ["train_loop"]


def train_loop(
    params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
    loss_at: Callable[[Tensor], Tensor],
    *,
    num_rows: int,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    grad_clip: float | None = None,
    seed: int = 0,
    every: int = 0,
    callback: Callable[[int], None] | None = None,
) -> list[float]:
    """A lean training loop: AdamW, warm-up + cosine schedule, seeded batches of row indices.

    Each step draws the next batch of row indices from :class:`mmgeom.data.BatchSampler` (``seed``,
    ``drop_last``), calls ``loss_at(indices)`` for the scalar loss, back-propagates, clips (optional) and
    steps AdamW and :func:`mmgeom.train.build_scheduler`. Modules stay in whatever mode the caller set.

    Args:
        params: the parameters to optimise (encoder and any learnable loss state), or AdamW parameter
            groups (dicts, e.g. from :func:`mmgeom.models.weight_decay_groups`) whose own
            ``weight_decay`` overrides the default.
        loss_at: ``(batch_size,)`` int64 row indices -> scalar loss tensor.
        num_rows: training rows the indices range over.
        steps: number of updates.
        batch_size: rows per batch (``<= num_rows``).
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        min_lr: floor of the cosine decay.
        grad_clip: max global gradient norm (``None``: no clipping).
        seed: batch-order seed.
        every: call ``callback`` every ``every`` steps (and at step 0, before training); ``0`` = never.
        callback: ``callback(step)`` with ``step`` the number of updates made so far.

    Returns:
        The loss of every step.

    Raises:
        NonFiniteLossError: the loss became NaN/Inf (names the step).
    """
    groups = _param_groups(params)
    params = [p for g in groups for p in g["params"]]
    if steps < 0:
        raise ValueError(f"steps: expected >= 0, got {steps}")
    if every < 0:
        raise ValueError(f"every: expected >= 0, got {every}")
    sampler = BatchSampler(num_rows, batch_size, seed=seed)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    scheduler = build_scheduler(optimizer, steps, warmup_steps, min_lr)
    history: list[float] = []
    if every and callback is not None:
        callback(0)
    for step in range(1, steps + 1):
        loss = loss_at(sampler.next_batch())
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(step, "loss", value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        scheduler.step()
        history.append(value)
        if every and callback is not None and step % every == 0:
            callback(step)
    return history


def _param_groups(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trainable parameters as AdamW groups: plain parameters form one group (the default weight decay);
    dicts are groups as given (e.g. :func:`mmgeom.models.weight_decay_groups`), frozen ones left out."""
    items: list[Any] = list(params)
    if not any(isinstance(item, dict) for item in items):
        return [{"params": [p for p in items if p.requires_grad]}]
    groups = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("params: expected parameters or parameter-group dicts, not a mix of both")
        trainable = [p for p in item["params"] if p.requires_grad]
        if trainable:
            groups.append({**item, "params": trainable})
    return groups
