"""Tie-aware top-k selection and the running top-k merge of a score block (not public API).

The order everywhere is: higher score first, and among equal scores the lower gallery index first.
``torch.topk`` alone does not promise anything about ties, so every selection checks whether a tie
straddles its boundary (the (k+1)-th value equals the k-th) and settles those rows with a stable sort.

A block ``S`` of shape ``(r, w)`` is merged into a running top-k without sorting it:

* group maxima: the first ``G * (w // G)`` columns are split into ``n = w // G`` strided groups
  ``{g, g + n, g + 2n, ...}``; ``amax`` over that view is one vectorised, memory-bound pass over ``S``
  (as fast as a plain row reduction, unlike contiguous groups);
* a threshold: an element can only enter if it beats the running k-th score ``theta`` (equal is not
  enough: the running entry has the lower index), and — when many groups beat ``theta``, as in the
  first block — if it reaches the block's own k-th largest group maximum ``theta_0`` (k distinct
  elements are ``>= theta_0``, so anything below cannot be in the top k);
* only groups whose maximum passes, and only their elements that pass, are gathered and merged with a
  tie-aware ``topk`` on a small ``(rows, k + new)`` matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._threads import limited_threads

#: Index given to empty slots of a running top-k; real gallery indices are always smaller.
SENTINEL = 2**62


def order_by_score_then_index(values: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Sort each row by (value descending, index ascending)."""
    by_index = torch.argsort(index, dim=1, stable=True)
    v = values.gather(1, by_index)
    i = index.gather(1, by_index)
    s = torch.sort(v, dim=1, descending=True, stable=True)
    return s.values, i.gather(1, s.indices)


def select(values: Tensor, index: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best entries of each row under (value desc, index asc); rows unordered within the k.

    Args:
        values: ``(r, n)`` scores, ``n >= k``.
        index: ``(r, n)`` gallery indices, distinct within a row.
        k: how many to keep.
    """
    n = values.shape[1]
    if n <= k:
        return values, index
    top, pos = torch.topk(values, k + 1, dim=1, sorted=True)
    v, i = top[:, :k], index.gather(1, pos[:, :k])
    tied = (top[:, k] == top[:, k - 1]).nonzero().flatten()
    if tied.numel():
        tv, ti = order_by_score_then_index(values[tied], index[tied])
        v, i = v.clone(), i.clone()
        v[tied], i[tied] = tv[:, :k], ti[:, :k]
    return v, i


def _columns(offset: int, start: int, stop: int, rows: int, device: torch.device) -> Tensor:
    return (offset + torch.arange(start, stop, device=device)).expand(rows, stop - start)


def merge_block(
    block: Tensor,
    offset: int,
    run_values: Tensor,
    run_index: Tensor,
    k: int,
    group: int = 32,
    workspace: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Merge a score block into a running top-k.

    Args:
        block: ``(r, w)`` scores of ``r`` queries against gallery rows ``offset .. offset + w - 1``.
        offset: gallery index of the block's first column; every index already in the running top-k
            must be smaller (blocks arrive in gallery order).
        run_values: ``(r, k)`` running best scores (``-inf`` in empty slots).
        run_index: ``(r, k)`` their gallery indices (``SENTINEL + j`` in empty slots).
        k: size of the running top-k.
        group: group length ``G`` of the prefilter.
        workspace: optional flat buffer of at least ``r * (w // G)`` elements for the group maxima
            (reused across blocks: fewer multi-MB allocations for the heap to fragment).

    Returns:
        The new ``(run_values, run_index)`` (rows unordered within the k).
    """
    r, w = block.shape
    dev = block.device
    n_groups = w // group
    if n_groups <= k:  # narrow block: every column is a candidate
        with limited_threads():
            return select(
                torch.cat([run_values, block], 1),
                torch.cat([run_index, _columns(offset, 0, w, r, dev)], 1),
                k,
            )
    body = block[:, : n_groups * group].view(r, group, n_groups)
    if workspace is not None and workspace.numel() >= r * n_groups:
        gmax = torch.amax(body, dim=1, out=workspace[: r * n_groups].view(r, n_groups))
    else:
        gmax = body.amax(dim=1)  # the one pass over the whole block: all threads
    with limited_threads():
        return _filter_and_merge(block, body, gmax, offset, run_values, run_index, k)


def _filter_and_merge(
    block: Tensor,
    body: Tensor,
    gmax: Tensor,
    offset: int,
    run_values: Tensor,
    run_index: Tensor,
    k: int,
) -> tuple[Tensor, Tensor]:
    r = block.shape[0]
    # keep x  <=>  x > theta  <=>  x >= nextafter(theta, +inf)
    theta = run_values.amin(dim=1, keepdim=True)
    threshold = torch.nextafter(theta, torch.full_like(theta, float("inf")))
    # Once the running top-k is warm most rows gain nothing from a block: test rows before groups.
    rows = (gmax.amax(dim=1, keepdim=True) >= threshold).flatten().nonzero().flatten()
    if rows.numel() == 0:
        return run_values, run_index
    if rows.numel() < r // 2:
        sub = (gmax[rows] >= threshold[rows]).nonzero()
        hits = torch.stack([rows[sub[:, 0]], sub[:, 1]], dim=1)
    else:
        hits = (gmax >= threshold).nonzero()
    if hits.shape[0] > r * k:
        theta0 = torch.topk(gmax, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
        threshold = torch.maximum(threshold, theta0)
        hits = (gmax >= threshold).nonzero()
    return _merge_hits(block, body, hits, threshold, offset, run_values, run_index, k)


def _merge_hits(
    block: Tensor,
    body: Tensor,
    hits: Tensor,
    threshold: Tensor,
    offset: int,
    run_values: Tensor,
    run_index: Tensor,
    k: int,
) -> tuple[Tensor, Tensor]:
    """Gather the elements ``>= threshold`` of the hit groups (and of the tail) and merge them."""
    r, w = block.shape
    _, group, n_groups = body.shape
    dev = block.device
    rows, gids = hits[:, 0], hits[:, 1]
    vals = body[rows, :, gids]  # (L, G)
    keep = (vals >= threshold[rows]).nonzero()
    e_row = rows[keep[:, 0]]
    e_val = vals[keep[:, 0], keep[:, 1]]
    e_idx = offset + keep[:, 1] * n_groups + gids[keep[:, 0]]
    if n_groups * group < w:  # tail columns that do not fill a group
        tail = block[:, n_groups * group :]
        t_keep = (tail >= threshold).nonzero()
        if t_keep.numel():
            e_row = torch.cat([e_row, t_keep[:, 0]])
            e_val = torch.cat([e_val, tail[t_keep[:, 0], t_keep[:, 1]]])
            e_idx = torch.cat([e_idx, offset + n_groups * group + t_keep[:, 1]])
            order = torch.argsort(e_row, stable=True)
            e_row, e_val, e_idx = e_row[order], e_val[order], e_idx[order]
    if e_row.numel() == 0:
        return run_values, run_index
    # entries are grouped by row (nonzero is row-major); lay them out as a padded (active, width) matrix
    counts = torch.bincount(e_row, minlength=r)
    active = counts.nonzero().flatten()
    width = int(counts.max())
    slot = torch.full((r,), -1, dtype=torch.long, device=dev)
    slot[active] = torch.arange(active.numel(), device=dev)
    first = torch.cumsum(counts, 0) - counts
    pos = torch.arange(e_row.numel(), device=dev) - first[e_row]
    pad_v = torch.full((active.numel(), width), float("-inf"), dtype=block.dtype, device=dev)
    pad_i = (SENTINEL + k + torch.arange(width, device=dev)).expand(active.numel(), width).clone()
    pad_v[slot[e_row], pos] = e_val
    pad_i[slot[e_row], pos] = e_idx
    nv, ni = select(torch.cat([run_values[active], pad_v], 1), torch.cat([run_index[active], pad_i], 1), k)
    values, index = run_values.clone(), run_index.clone()
    values[active], index[active] = nv, ni
    return values, index
