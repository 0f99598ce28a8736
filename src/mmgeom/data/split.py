"""Deterministic stratified train / validation / test splits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Default fractions (train, val, test).
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


@dataclass(frozen=True)
class Split:
    """Sorted, disjoint row indices of the three parts."""

    train: Tensor
    val: Tensor
    test: Tensor

    def __getitem__(self, part: str) -> Tensor:
        if part not in ("train", "val", "test"):
            raise ValueError(f"split: unknown part {part!r}; expected 'train', 'val' or 'test'")
        return getattr(self, part)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions: three finite values >= 0, train > 0, sum 1."""
    if len(fractions) != 3:
        raise ValueError(f"fractions: expected 3 values (train, val, test), got {list(fractions)}")
    f = tuple(float(x) for x in fractions)
    if not all(math.isfinite(x) and x >= 0 for x in f) or f[0] <= 0:
        raise ValueError(f"fractions: expected values >= 0 with train > 0, got {list(fractions)}")
    if abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"fractions: expected them to sum to 1, got {list(fractions)} (sum {sum(f):.6g})")
    return f  # type: ignore[return-value]


def stratified_split(labels: Tensor, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0) -> Split:
    """Split rows class by class so each part keeps the class proportions.

    In each class of ``n`` rows, ``round(n * f_val)`` go to validation, ``round(n * f_test)`` to test and
    the rest to train, chosen by a permutation drawn from ``numpy.random.default_rng([seed, class_id])``
    (so a class's assignment does not depend on the other classes). Same inputs, same split.

    Args:
        labels: ``(N,)`` integer class ids.
        fractions: ``(train, val, test)``, summing to 1.
        seed: split seed.

    Returns:
        A :class:`Split` of sorted int64 index tensors.
    """
    _, f_val, f_test = check_fractions(fractions)
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"labels: expected (N,) integer class ids, got {tuple(labels.shape)} {labels.dtype}")
    y = labels.cpu().numpy()
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        n = rows.size
        n_val, n_test = round(n * f_val), round(n * f_test)
        if n_val + n_test >= n:
            raise ValueError(f"split: class {int(c)} has {n} rows, too few to keep any for training")
        perm = rows[np.random.default_rng([int(seed), int(c)]).permutation(n)]
        parts["val"].append(perm[:n_val])
        parts["test"].append(perm[n_val : n_val + n_test])
        parts["train"].append(perm[n_val + n_test :])
    out = {k: torch.from_numpy(np.sort(np.concatenate(v)).astype(np.int64)) for k, v in parts.items()}
    return Split(**out)
