"""Positive- and negative-pair cosine similarities between two modalities, and their separation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .._validation import check_pair
from ..functional import normalize
from .ks import ks_statistic

#: Default cap on the negative cosines fed to the KS statistic (above it, a cyclic-shift subsample).
MAX_NEGATIVES = 1 << 18

#: Up to this batch size the subsampled negatives are read off dense blocks of ``z_a z_b^T``.
DENSE_ROWS = 4096

#: Elements of one ``(chunk, B)`` block of the negative-cosine loop.
BLOCK_ELEMENTS = 1 << 22


def positive_cosines(za: Tensor, zb: Tensor) -> Tensor:
    """``(B,)`` cosines ``cos(z_a,i, z_b,i)`` of the paired rows (float32 or float64)."""
    check_pair(za, zb)
    return (normalize(za) * normalize(zb)).sum(dim=1)


def negative_cosine_mean(za: Tensor, zb: Tensor) -> float:
    """Mean cosine over the ``B(B-1)`` unpaired rows ``i != j``, in ``O(B D)``.

    ``sum_{i != j} z_a,i . z_b,j = (sum_i z_a,i) . (sum_j z_b,j) - sum_i z_a,i . z_b,i``.
    """
    check_pair(za, zb, min_rows=2)
    a, b = normalize(za), normalize(zb)
    n = a.shape[0]
    total = a.sum(dim=0) @ b.sum(dim=0) - (a * b).sum()
    return float(total) / (n * (n - 1))


def negative_shifts(rows: int, max_negatives: int | None) -> list[int] | None:
    """Cyclic shifts ``s`` whose pairs ``(i, (i + s) mod B)`` form the negative subsample.

    ``None`` (every off-diagonal pair) when ``B (B - 1) <= max_negatives`` or the cap is ``None``;
    otherwise ``K = max(1, max_negatives // B)`` shifts spread evenly over ``1..B-1``:
    ``s_k = 1 + floor(k (B - 1) / K)``. Every row and every column then appears in exactly ``K`` pairs.
    """
    if max_negatives is None or rows * (rows - 1) <= max_negatives:
        return None
    k = max(1, max_negatives // rows)
    return [1 + (i * (rows - 1)) // k for i in range(k)]


def negative_cosines(za: Tensor, zb: Tensor, max_negatives: int | None = MAX_NEGATIVES) -> Iterator[Tensor]:
    """Chunks of negative cosines ``cos(z_a,i, z_b,j)``, ``i != j``: all of them, or the shift subsample.

    Peak memory is ``O(chunk B)``; see :func:`negative_shifts` for the deterministic subsample.
    """
    check_pair(za, zb, min_rows=2)
    a, b = normalize(za), normalize(zb)
    return _negative_chunks(a, b, negative_shifts(a.shape[0], max_negatives))


def _negative_chunks(a: Tensor, b: Tensor, shifts: list[int] | None) -> Iterator[Tensor]:
    n = a.shape[0]
    if shifts is not None and n > DENSE_ROWS:
        # Only the sampled pairs are formed: O(K B D) work whatever B is.
        rows = torch.arange(n, device=a.device)
        step = max(1, BLOCK_ELEMENTS // (n * a.shape[1]))
        for start in range(0, len(shifts), step):
            s = torch.tensor(shifts[start : start + step], device=a.device)
            cols = (rows[None, :] + s[:, None]) % n  # (shifts, B): partner of row i under each shift
            yield (a[None, :, :] * b[cols]).sum(dim=2).flatten()
        return
    # Dense row blocks of a @ b.T (a matrix product is cheaper than gathering for moderate B).
    chunk = max(1, BLOCK_ELEMENTS // n)
    offsets = None if shifts is None else torch.tensor(shifts, device=a.device)
    for start in range(0, n, chunk):
        block = a[start : start + chunk] @ b.T
        rows = torch.arange(block.shape[0], device=block.device) + start
        if offsets is None:
            keep = torch.ones_like(block, dtype=torch.bool)
            keep[rows - start, rows] = False
            yield block[keep]
        else:
            yield block.gather(1, (rows[:, None] + offsets[None, :]) % n).flatten()


@torch.no_grad()
def cosine_stats(za: Tensor, zb: Tensor, *, max_negatives: int | None = MAX_NEGATIVES) -> dict[str, float]:
    """Positive/negative cosine means, their difference and the KS statistic between the two distributions.

    Keys: ``"pos_cos"`` (mean cosine of paired rows), ``"neg_cos"`` (mean over all ``i != j``, always
    exact), ``"cos_diff"`` (``pos_cos - neg_cos``) and ``"ks"`` (two-sample Kolmogorov–Smirnov statistic
    between the ``B`` positive cosines and the negative cosines; ``1`` when every positive beats every
    negative). The KS statistic uses every negative up to ``max_negatives`` of them and the deterministic
    cyclic-shift subsample of :func:`negative_shifts` above.

    Reference: Liang et al., "Mind the Gap: Understanding the Modality Gap in Multi-modal Contrastive
    Representation Learning", NeurIPS 2022 (cosine distributions of matched and unmatched pairs).

    Args:
        za: ``(B, D)`` raw embeddings, ``B >= 2``.
        zb: ``(B, D)`` raw embeddings paired with ``za``.
        max_negatives: cap on the negatives used by ``"ks"`` (``None``: all ``B (B - 1)``).

    Example:
        >>> x = torch.randn(6, 4)
        >>> cosine_stats(x, x)["pos_cos"]  # doctest: +ELLIPSIS
        1.0...
    """
    if max_negatives is not None and int(max_negatives) < 1:
        raise ValueError(f"max_negatives: expected an integer >= 1 or None, got {max_negatives!r}")
    pos = positive_cosines(za, zb)
    neg = negative_cosine_mean(za, zb)
    pos_mean = float(pos.mean())
    return {
        "pos_cos": pos_mean,
        "neg_cos": neg,
        "cos_diff": pos_mean - neg,
        "ks": ks_statistic(pos, negative_cosines(za, zb, max_negatives)),
    }
