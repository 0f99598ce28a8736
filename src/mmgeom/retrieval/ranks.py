"""Rank of every positive, computed chunk by chunk without an ``(N_q, N_g)`` score matrix.

The rank of positive ``p`` of query ``i`` (0-based) is the number of gallery items ranked before it
under the exact key of :func:`mmgeom.retrieval.topk`: higher exact score first (float64 accumulation,
rounded to the output dtype), equal scores by lower gallery index. The float32 (float64 for float64
inputs) BLAS blocks decide every comparison they can decide despite their rounding; the few items whose
fast score lies within the rounding bound of the positive's are rescored exactly
(:mod:`mmgeom.retrieval._ties`). So ranks do not depend on the chunk sizes, on where a row sits inside a
GEMM block, or on the CPU's kernels: identical gallery rows always rank in index order.

For one chunk of ``cq`` queries the score rows against the whole gallery are kept (``cq * N_g`` floats),
so every positive's score is read from the same computation it is compared with. Then:

* few positives per query (``P <= 64``): broadcast comparisons of each score column block against each
  positive's band ``[lo, hi]``: items above ``hi`` counted, items inside settled exactly;
* many positives (same-class retrieval): a stable descending sort of each row; each positive's band is
  located by binary search and the union of the bands of a row is settled exactly in one sort.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import _native, _plan
from ._fused_ranks import fused_ranks
from ._inputs import EPS, Embeddings, Scoring, check_nonzero_rows, chunk_ranges
from ._plan import rank_chunks
from ._threads import limited_threads
from ._ties import ExactKeys, exact_before, tie_band
from ._tune import plan_for
from .relevance import Relevance, padded_from_mask
from .rescore import rounding_bound

#: Above this many positives per query, ranks come from a sort instead of comparisons.
MAX_COMPARE_POSITIVES = 64

#: Bytes of each comparison buffer used per column block.
COMPARE_BUFFER_BYTES = 8 * 2**20


def gallery_scale(gallery: Embeddings, scoring: Scoring, chunk: int) -> tuple[Tensor | None, float]:
    """One pass over the gallery: validate every row; the per-column score scale and the largest scaled norm.

    The scale is ``1/|g_j|`` for cosine, ``r_j/|g_j|`` for magnitude scoring, None for dot; the norm
    bound (``max_j |g_j| * scale_j``) feeds the rounding bound of the fast scores.
    """
    scales, norms = [], []
    for g0, g1 in chunk_ranges(gallery.n, chunk):
        g = gallery.chunk(g0, g1)
        norm = g.norm(dim=1)
        norms.append(norm)
        if scoring.normalise:
            check_nonzero_rows(g, gallery.name, g0)
            scales.append(1.0 / norm.clamp_min(EPS))
    norm_all = torch.cat(norms).to(torch.float64)
    if not scoring.normalise:
        return None, float(norm_all.max())
    scale = torch.cat(scales)
    if scoring.magnitudes is not None:
        scale = scale * scoring.magnitudes.to(scale.dtype)
    return scale, float((norm_all * scale.to(torch.float64).abs()).max())


def iter_positive_ranks(
    query: Embeddings,
    q: Tensor,
    gallery: Embeddings,
    relevance: Relevance,
    scoring: Scoring,
    chunks: tuple[int, int] | None,
    budget: int,
    progress: bool = False,
) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """Yield ``(start, stop, ranks, counts)`` per query chunk.

    Args:
        query: the original query matrix (exact keys are computed from it).
        q: ``(N_q, D)`` prepared queries (compute dtype, normalised for cosine).
        gallery: the gallery source.
        relevance: positives per query.
        scoring: metric and optional magnitudes.
        chunks: explicit ``(query_chunk, gallery_chunk)`` or None for the budget.
        budget: memory budget in bytes.
        progress: show a progress bar over query chunks.

    Yields:
        ``ranks`` ``(r, P)`` int64 0-based ranks of each query's positives, ascending, padded with
        ``N_g``; ``counts`` ``(r,)`` positives per query.
    """
    n_q, d = q.shape
    itemsize = q.element_size()
    cq, cg = chunks if chunks is not None else rank_chunks(n_q, gallery.n, d, itemsize, budget)
    cq, cg = min(cq, n_q), min(cg, gallery.n)
    scale, norm_max = gallery_scale(gallery, scoring, cg)
    if scale is not None:
        scale = scale.to(q.device)
    tau = rounding_bound(d, q.dtype, q.norm(dim=1).cpu(), norm_max)
    keys = ExactKeys(query, gallery, scoring, q.dtype)
    flops = 2.0 * n_q * gallery.n * d
    if (
        chunks is None
        and flops >= _plan.MIN_FUSED_FLOPS
        and _native.available(q.dtype, q.device)
        and relevance.max_count(0, n_q) <= MAX_COMPARE_POSITIVES
    ):
        plan = plan_for(flops, q.dtype)
        plan = plan.fit(n_q, gallery.n, d, itemsize, budget)
        ranks = fused_ranks(keys, q, gallery, relevance, scale, tau, plan, progress)
        yield 0, n_q, ranks, relevance.counts(0, n_q)
        return
    g_ranges = chunk_ranges(gallery.n, cg)
    # One buffer for a query chunk's score rows, laid out block after block so that every block
    # ``(r, w_j)`` is contiguous (a GEMM output) and the buffer is reused across query chunks.
    buffer = torch.empty(cq * gallery.n, dtype=q.dtype, device=q.device)
    for q0, q1 in tqdm(chunk_ranges(n_q, cq), desc="ranks", disable=not progress, leave=False):
        r = q1 - q0
        blocks = []
        for g0, g1 in g_ranges:
            block = buffer[r * g0 : r * g1].view(r, g1 - g0)
            torch.mm(q[q0:q1], gallery.chunk(g0, g1, check=False).to(q.device).T, out=block)
            if scale is not None:
                block.mul_(scale[g0:g1])
            blocks.append(block)
        counts = relevance.counts(q0, q1)
        with limited_threads():
            if int(counts.max()) <= MAX_COMPARE_POSITIVES:
                padded = relevance.padded(q0, q1).to(q.device)
                ranks = ranks_by_comparison(blocks, cg, padded, tau[q0:q1], keys, q0)
            else:
                ranks = ranks_by_sorting(blocks, relevance, q0, q1, budget, tau[q0:q1], keys)
        yield q0, q1, ranks.cpu(), counts


def _positive_scores(blocks: list[Tensor], width: int, pos: Tensor, valid: Tensor) -> Tensor:
    """``(r, P)`` score of each positive, read from the blocks that hold it (``inf`` for padding)."""
    out = torch.full(pos.shape, float("inf"), dtype=blocks[0].dtype, device=pos.device)
    which = pos // width
    for j, block in enumerate(blocks):
        rows, ts = ((which == j) & valid).nonzero(as_tuple=True)
        if rows.numel():
            out[rows, ts] = block[rows, pos[rows, ts] - j * width]
    return out


def _positive_keys(keys: ExactKeys, q0: int, pos: Tensor, cache: Tensor, rows: Tensor, ts: Tensor) -> Tensor:
    """Exact keys of the positives ``(rows, ts)``, computed on first use and kept in ``cache`` (NaN = not
    yet): only positives with another item inside their band are ever rescored."""
    todo = torch.isnan(cache[rows, ts])
    if bool(todo.any()):
        r, t = rows[todo], ts[todo]
        cache[r, t] = keys(r + q0, pos[r, t])
    return cache[rows, ts]


def ranks_by_comparison(
    blocks: list[Tensor], width: int, padded: Tensor, tau: Tensor, keys: ExactKeys, q0: int
) -> Tensor:
    """Ranks of ``padded`` positives (``(r, P)``, -1 padding) by counting the items ranked before each.

    Args:
        blocks: score blocks ``(r, w_j)`` covering the gallery in order; all but the last ``width`` wide.
        width: gallery chunk width.
        padded: ``(r, P)`` ascending positive indices, ``-1`` padded.
        tau: ``(r,)`` bound on the fast scores' error for each query.
        keys: exact keys of (query, item) pairs.
        q0: index of the chunk's first query.
    """
    r, n_pos = padded.shape
    n_g = sum(b.shape[1] for b in blocks)
    valid = padded >= 0
    pos = padded.clamp(min=0)
    lo, hi = tie_band(_positive_scores(blocks, width, pos, valid), tau.to(padded.device), valid)
    pos_cpu = pos.cpu()
    pos_keys = torch.full(pos.shape, float("nan"), dtype=torch.float64)
    ranks = torch.zeros((r, n_pos), dtype=torch.long, device=padded.device)
    step = max(1, COMPARE_BUFFER_BYTES // (r * n_pos))
    n_buf = r * n_pos * min(step, width)
    below_buf = torch.empty(n_buf, dtype=torch.bool, device=padded.device)
    band_buf = torch.empty(n_buf, dtype=torch.bool, device=padded.device)
    for j, block in enumerate(blocks):
        for a, b in chunk_ranges(block.shape[1], step):
            sub = block[:, a:b][:, None, :]
            below = below_buf[: r * n_pos * (b - a)].view(r, n_pos, b - a)
            band = band_buf[: r * n_pos * (b - a)].view(r, n_pos, b - a)
            torch.le(sub, hi[:, :, None], out=below)
            ranks += (b - a) - below.sum(dim=2)  # items clearly above the positive's band
            torch.ge(sub, lo[:, :, None], out=band)
            band &= below
            rows, ts, cols = band.nonzero(as_tuple=True)
            cols = cols + j * width + a
            other = cols != pos[rows, ts]
            rows, ts, cols = rows[other], ts[other], cols[other]
            if rows.numel():
                rows_c, ts_c = rows.cpu(), ts.cpu()
                item_keys = keys(rows_c + q0, cols)
                key_p = _positive_keys(keys, q0, pos_cpu, pos_keys, rows_c, ts_c)
                before = exact_before(item_keys, cols.cpu(), key_p, pos_cpu[rows_c, ts_c])
                ranks.index_put_((rows, ts), before.to(ranks.device, torch.long), accumulate=True)
    return torch.where(valid, ranks, n_g)


def ranks_by_sorting(
    blocks: list[Tensor],
    relevance: Relevance,
    q0: int,
    q1: int,
    budget: int,
    tau: Tensor,
    keys: ExactKeys,
) -> Tensor:
    """Ranks of all positives from a stable descending sort of each score row (many positives).

    The fast rank of a positive is its sorted position; the items of its band (sorted positions
    ``[a_p, b_p)``) are settled by their exact keys: rank = ``a_p`` + the band items exactly before it.
    """
    n_g = relevance.num_gallery
    # values + int64 indices + the sorted copy + two boolean rows + int64 band bookkeeping per element
    rows_per_step = max(1, budget // (2 * n_g * 40))
    parts = []
    for a, b in chunk_ranges(q1 - q0, rows_per_step):
        full = torch.cat([blk[a:b] for blk in blocks], dim=1)
        sv, order = torch.sort(full, dim=1, descending=True, stable=True)
        positive = relevance.mask(q0 + a, q0 + b).to(order.device).gather(1, order)
        parts.append(_settle_sorted(sv, order, padded_from_mask(positive.cpu()), tau[a:b], keys, q0 + a))
    width = max(p.shape[1] for p in parts)
    out = torch.full((q1 - q0, width), n_g, dtype=torch.long)
    row = 0
    for p in parts:
        out[row : row + p.shape[0], : p.shape[1]] = torch.where(p < 0, n_g, p)
        row += p.shape[0]
    return out


def _settle_sorted(sv: Tensor, order: Tensor, at: Tensor, tau: Tensor, keys: ExactKeys, q0: int) -> Tensor:
    """Exact ranks ``(r, P)`` (-1 padded) of the positives at sorted positions ``at`` (-1 padded)."""
    sv, order = sv.cpu(), order.cpu()
    r, n_g = sv.shape
    valid = at >= 0
    at_c = at.clamp(min=0)
    lo, hi = tie_band(sv.gather(1, at_c), tau.cpu(), valid)
    neg = -sv  # ascending, for binary search
    first = torch.searchsorted(neg, -hi, right=False)  # items with fast score > hi
    stop = torch.searchsorted(neg, -lo, right=True)  # items with fast score >= lo
    ranks = torch.where(valid, first, -1)
    unsure = valid & (stop - first > 1)
    if not bool(unsure.any()):
        return ranks
    # the union of the unsure bands of each row, as a mask over sorted positions
    marks = torch.zeros(r, n_g + 1, dtype=torch.long)
    marks.scatter_add_(1, torch.where(unsure, first, n_g), unsure.long())
    marks.scatter_add_(1, torch.where(unsure, stop, n_g), -unsure.long())
    in_union = marks[:, :n_g].cumsum(dim=1) > 0
    u_row, u_at = in_union.nonzero(as_tuple=True)
    u_item = order[u_row, u_at]
    u_key = keys(u_row + q0, u_item)
    # exact order inside each row's union: by row, then key descending, then gallery index ascending
    perm = torch.argsort(u_item, stable=True)
    perm = perm[torch.argsort(-u_key[perm], stable=True)]
    perm = perm[torch.argsort(u_row[perm], stable=True)]
    exact_pos = torch.empty_like(perm)
    row_start = torch.cumsum(in_union.sum(dim=1), 0) - in_union.sum(dim=1)
    exact_pos[perm] = torch.arange(perm.numel()) - row_start[u_row[perm]]
    entry = torch.full((r, n_g), -1, dtype=torch.long)
    entry[u_row, u_at] = torch.arange(u_row.numel())
    # union items before the band are all exactly before the positive: counted in ``first`` already
    union_before_band = torch.cat([torch.zeros(r, 1, dtype=torch.long), in_union.long().cumsum(dim=1)], dim=1)
    rows, ts = unsure.nonzero(as_tuple=True)
    e = entry[rows, at_c[rows, ts]]
    ranks[rows, ts] = first[rows, ts] + exact_pos[e] - union_before_band[rows, first[rows, ts]]
    return ranks
