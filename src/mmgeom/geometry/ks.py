"""Two-sample Kolmogorov–Smirnov statistic with the larger sample streamed in chunks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def ks_statistic(x: Tensor, y: Tensor | Iterable[Tensor]) -> float:
    """Two-sample KS statistic ``sup_t |F_x(t) - F_y(t)|`` of the empirical CDFs, computed exactly.

    ``x`` is held in memory and sorted; ``y`` may be one tensor or an iterable of chunks (e.g. the ``B^2``
    negative cosines of a batch, produced block by block), so the cost is ``O(|y| log |x|)`` time and
    ``O(|x| + chunk)`` memory. Ties are handled exactly: the supremum is attained at a sample point or as
    the left limit at one, and both ECDFs are evaluated there by counting.

    Reference: the statistic of ``scipy.stats.ks_2samp`` (Hodges 1958).

    Args:
        x: 1-D tensor, the smaller sample (e.g. the ``B`` positive-pair cosines).
        y: 1-D tensor or iterable of 1-D tensors, the other sample.

    Example:
        >>> ks_statistic(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0]))
        1.0
    """
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"x: expected a non-empty 1-D tensor, got shape {tuple(x.shape)}")
    xs = torch.sort(x.detach().flatten()).values
    n = xs.numel()
    chunks = [y] if isinstance(y, Tensor) else y
    # Histograms of the insertion points of every y into xs (left and right), cumulated at the end.
    count_left = torch.zeros(n + 1, dtype=torch.int64, device=xs.device)
    count_right = torch.zeros(n + 1, dtype=torch.int64, device=xs.device)
    total = 0
    for chunk in chunks:
        c = chunk.detach().flatten().to(xs.dtype)
        if c.numel() == 0:
            continue
        total += c.numel()
        # y <= xs[k]  <=>  #{x < y} <= k ;  y < xs[k]  <=>  #{x <= y} <= k.
        left = torch.searchsorted(xs, c, right=False)
        count_left += torch.bincount(left, minlength=n + 1)
        # #{x <= y} differs from #{x < y} only where y ties with some x: search again for those alone.
        tie = xs[left.clamp_max(n - 1)] == c
        if bool(tie.any()):
            left[tie] = torch.searchsorted(xs, c[tie], right=True)
        count_right += torch.bincount(left, minlength=n + 1)
    if total == 0:
        raise ValueError("y: expected a non-empty sample, got no values")
    y_le = count_left.cumsum(0)[:n].double() / total
    y_lt = count_right.cumsum(0)[:n].double() / total
    x_le = torch.searchsorted(xs, xs, right=True).double() / n
    x_lt = torch.searchsorted(xs, xs, right=False).double() / n
    # At xs[k] (right-continuous values) and just before it (left limits); every other point is dominated.
    return float(torch.maximum((x_le - y_le).abs(), (x_lt - y_lt).abs()).max())
