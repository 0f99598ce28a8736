"""Rank of every positive, computed chunk by chunk without an ``(N_q, N_g)`` score matrix.

The rank of positive ``p`` of query ``i`` (0-based) is the number of gallery items ranked before it:
``#{j : s_ij > s_ip} + #{j < p : s_ij = s_ip}`` — higher score first, equal scores by lower gallery
index (the tie rule of :func:`mmgeom.retrieval.topk`). Scores are those of the float32 (float64 for
float64 inputs) blocks: ``q_i/|q_i| . g_j`` scaled by ``1/|g_j|`` (cosine) or ``r_j/|g_j|`` (magnitude).

For one chunk of ``cq`` queries the score rows against the whole gallery are kept (``cq * N_g`` floats),
so every positive's score is read from the same computation it is compared with. Then:

* few positives per query (``P <= 64``): one broadcast comparison of each score column block against
  the positives' scores (``>=`` in blocks before the positive, ``>`` after it, an exact split in the
  block that holds it), summed;
* many positives (same-class retrieval): a stable descending sort of each row, positives read off.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._inputs import EPS, Embeddings, Scoring, check_nonzero_rows, chunk_ranges
from ._plan import rank_chunks
from ._threads import limited_threads
from .relevance import Relevance, padded_from_mask

#: Above this many positives per query, ranks come from a sort instead of comparisons.
MAX_COMPARE_POSITIVES = 64

#: Bytes of the comparison buffer used per column block.
COMPARE_BUFFER_BYTES = 8 * 2**20


def gallery_scale(gallery: Embeddings, scoring: Scoring, chunk: int) -> Tensor | None:
    """One pass over the gallery: validate every row and return the per-column score scale.

    ``1/|g_j|`` for cosine, ``r_j/|g_j|`` for magnitude scoring, None for dot.
    """
    scales = []
    for g0, g1 in chunk_ranges(gallery.n, chunk):
        g = gallery.chunk(g0, g1)
        if scoring.normalise:
            check_nonzero_rows(g, gallery.name, g0)
            scales.append(1.0 / g.norm(dim=1).clamp_min(EPS))
    if not scoring.normalise:
        return None
    scale = torch.cat(scales)
    if scoring.magnitudes is not None:
        scale = scale * scoring.magnitudes.to(scale.dtype)
    return scale


def iter_positive_ranks(
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
    scale = gallery_scale(gallery, scoring, cg)
    if scale is not None:
        scale = scale.to(q.device)
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
                ranks = ranks_by_comparison(blocks, cg, relevance.padded(q0, q1).to(q.device))
            else:
                ranks = ranks_by_sorting(blocks, relevance, q0, q1, budget)
        yield q0, q1, ranks.cpu(), counts


def _positive_scores(blocks: list[Tensor], width: int, pos: Tensor, valid: Tensor) -> Tensor:
    """``(r, P)`` score of each positive, read from the blocks that hold it."""
    out = torch.full(pos.shape, float("inf"), dtype=blocks[0].dtype, device=pos.device)
    which = pos // width
    for j, block in enumerate(blocks):
        rows, ts = ((which == j) & valid).nonzero(as_tuple=True)
        if rows.numel():
            out[rows, ts] = block[rows, pos[rows, ts] - j * width]
    return out


def ranks_by_comparison(blocks: list[Tensor], width: int, padded: Tensor) -> Tensor:
    """Ranks of ``padded`` positives (``(r, P)``, -1 padding) by counting the items ranked before each.

    Args:
        blocks: score blocks ``(r, w_j)`` covering the gallery in order; all but the last ``width`` wide.
        width: gallery chunk width.
        padded: ``(r, P)`` ascending positive indices, ``-1`` padded.
    """
    r, n_pos = padded.shape
    n_g = sum(b.shape[1] for b in blocks)
    valid = padded >= 0
    pos = padded.clamp(min=0)
    s = _positive_scores(blocks, width, pos, valid)
    s_next = torch.nextafter(s, torch.full_like(s, float("inf")))
    ranks = torch.zeros((r, n_pos), dtype=torch.long, device=padded.device)
    step = max(1, COMPARE_BUFFER_BYTES // (4 * r * n_pos))
    buffer = torch.empty(r * n_pos * min(step, width), dtype=s.dtype, device=s.device)
    for j, block in enumerate(blocks):
        for a, b in chunk_ranges(block.shape[1], step):
            lo, hi = j * width + a, j * width + b
            sub = block[:, a:b]
            # Blocks wholly before a positive count ties (>= s); from its own block on, only > s counts.
            thr = torch.where(pos >= hi, s, s_next)
            cmp = buffer[: r * n_pos * (b - a)].view(r, n_pos, b - a)
            torch.ge(sub[:, None, :], thr[:, :, None], out=cmp)
            ranks += cmp.sum(dim=2).to(torch.long)
            inside = valid & (pos >= lo) & (pos < hi)
            rows, ts = inside.nonzero(as_tuple=True)
            if rows.numel():
                cols = torch.arange(lo, hi, device=sub.device)
                tied_before = (sub[rows] == s[rows, ts][:, None]) & (cols[None, :] < pos[rows, ts][:, None])
                ranks[rows, ts] += tied_before.sum(dim=1)
    return torch.where(valid, ranks, n_g)


def ranks_by_sorting(blocks: list[Tensor], relevance: Relevance, q0: int, q1: int, budget: int) -> Tensor:
    """Ranks of all positives from a stable descending sort of each score row (many positives)."""
    n_g = relevance.num_gallery
    # values + int64 indices + the sorted copy + two boolean rows per element
    rows_per_step = max(1, budget // (2 * n_g * 22))
    parts = []
    for a, b in chunk_ranges(q1 - q0, rows_per_step):
        full = torch.cat([blk[a:b] for blk in blocks], dim=1)
        order = torch.sort(full, dim=1, descending=True, stable=True).indices
        positive = relevance.mask(q0 + a, q0 + b).to(order.device).gather(1, order)
        parts.append(padded_from_mask(positive.cpu()))
    width = max(p.shape[1] for p in parts)
    out = torch.full((q1 - q0, width), n_g, dtype=torch.long)
    row = 0
    for p in parts:
        out[row : row + p.shape[0], : p.shape[1]] = torch.where(p < 0, n_g, p)
        row += p.shape[0]
    return out
