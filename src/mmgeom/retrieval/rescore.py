"""Exact rescoring of top-k candidates, the final (score desc, index asc) order and its guarantee.

Both search backends first keep ``c = k + 8`` candidates per query from a fast pass (float32 BLAS GEMM
or FAISS, float64 for float64 inputs), whose rounding depends on the library and even on the block
shape: two identical gallery rows can get scores one ulp apart. Then:

1. :func:`rescore_candidates` recomputes each candidate's score from the original rows with float64
   accumulation — one elementwise product and sum per (query, candidate) pair, computed identically
   for every pair, so identical rows get identical scores — rounds it to the output dtype and sorts by
   (score descending, gallery index ascending).
2. :func:`refine_uncertain` checks, per query, that no gallery item outside the candidates can reach the
   k-th score: every such item scored at most ``theta`` (the c-th fast score), so its exact score is at
   most ``theta + tau`` with ``tau`` a bound on the fast pass's rounding error
   (``2 (D + 4) u |q| max_j |g_j|``). Queries whose k-th exact score is not clear of that bound (only
   when more than 8 items lie within rounding of the k-th score, e.g. duplicated gallery rows) are
   searched again: a float64 pass collects every item that can reach the k-th score, and those are
   rescored and ordered the same way.

The result is the top-k under the float64 scores rounded to the output dtype, with ties by lower
gallery index, whatever the backend, chunking or BLAS.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import EPS, Embeddings, Scoring, chunk_ranges, scale_gallery_chunk
from ._select import order_by_score_then_index
from ._threads import limited_threads

#: Extra candidates kept per query beyond ``k`` before exact rescoring.
RESCORE_MARGIN = 8


def candidate_count(k: int, n_gallery: int) -> int:
    """How many candidates the fast pass keeps: ``min(N_g, k + RESCORE_MARGIN)``."""
    return min(n_gallery, k + RESCORE_MARGIN)


def exact_scores(
    query_rows: Tensor,
    gallery_rows: Tensor,
    scoring: Scoring,
    gallery_index: Tensor,
    work: Tensor | None = None,
) -> Tensor:
    """float64 scores of ``query_rows[i]`` (``(r, D)``) against ``gallery_rows[i, j]`` (``(r, c, D)``).

    Each pair's dot product (and each row's norm) is one reduction over ``D`` done the same way for
    every pair, whatever ``r`` and ``c``: identical rows give bit-identical scores. (float32 and float16
    products are exact in float64, so the only rounding is the float64 sum.)

    Args:
        query_rows: ``(r, D)`` query rows (any floating dtype).
        gallery_rows: ``(r, c, D)`` candidate rows (any floating dtype).
        scoring: metric and optional magnitudes.
        gallery_index: ``(r, c)`` gallery indices of the candidates (for the magnitudes).
        work: optional float64 buffer of at least ``r * c * D`` elements; the products are formed in it
            instead of in fresh multi-MB temporaries (each of which costs page faults when the allocator
            maps it from the OS).

    Returns:
        ``(r, c)`` float64 scores.
    """
    r, c, d = gallery_rows.shape
    q = query_rows.to(torch.float64)
    if work is not None and work.numel() >= r * c * d:
        g = work[: r * c * d].view(r, c, d)
        g.copy_(gallery_rows)
    else:
        g = gallery_rows.to(torch.float64, copy=True)
    g_norm = g.norm(dim=-1) if scoring.normalise else None
    s = g.mul_(q[:, None, :]).sum(dim=-1)  # in place: g is a private float64 copy
    if g_norm is not None:
        s = s / (g_norm * q.norm(dim=-1)[:, None]).clamp_min(EPS)
    if scoring.magnitudes is not None:
        s = s * scoring.magnitudes[gallery_index.cpu()].to(s.device)
    return s


#: Target size of the gathered float64 rows of one rescoring chunk (small enough to stay in cache).
RESCORE_CHUNK_BYTES = 2**20
#: Queries whose exact candidate scores are ordered together.
ORDER_ROWS = 16384


def rescore_candidates(
    query: Embeddings,
    gallery: Embeddings,
    candidates: Tensor,
    k: int,
    scoring: Scoring,
    out_dtype: torch.dtype,
    budget_bytes: int,
    query_offset: int = 0,
) -> tuple[Tensor, Tensor]:
    """Exact scores of the candidates and the best ``k`` in (score desc, index asc) order.

    Args:
        query: the query matrix.
        gallery: the gallery matrix (only the candidate rows are read).
        candidates: ``(N_q, c)`` gallery indices, ``c >= k``.
        k: how many to return.
        scoring: metric and optional magnitudes.
        out_dtype: dtype of the returned scores.
        budget_bytes: memory budget for the gathered rows.
        query_offset: index of the query row of ``candidates[0]`` (a slice of the queries).

    Returns:
        ``(scores, indices)``, each ``(N_q, k)``.
    """
    n_q, c = candidates.shape
    d = gallery.d
    dev = candidates.device
    # Chunks of about 1 MB of float64 rows, gathered into buffers allocated once: a fresh multi-MB
    # temporary per chunk was mapped from the OS (page faults) each time and cost more than the
    # arithmetic (3x with glibc's mmap threshold at 1 MB).
    per_query = max(1, c) * d * 8
    rows_per_chunk = max(1, min(64, n_q, RESCORE_CHUNK_BYTES // per_query, budget_bytes // (4 * per_query)))
    work = torch.empty(rows_per_chunk * c * d, dtype=torch.float64, device=dev)
    gathered: Tensor | None = None
    if isinstance(gallery.data, Tensor):
        gathered = torch.empty(rows_per_chunk * c, d, dtype=gallery.data.dtype, device=gallery.data.device)
    scores = torch.empty(n_q, k, dtype=out_dtype, device=dev)
    indices = torch.empty(n_q, k, dtype=torch.long, device=dev)
    with limited_threads():
        # the exact scores of up to ORDER_ROWS queries are kept and ordered together (one sort pass per
        # block instead of a handful of small sorts per chunk; the block bounds the sort's temporaries)
        for b0, b1 in chunk_ranges(n_q, ORDER_ROWS):
            exact = torch.empty(b1 - b0, c, dtype=out_dtype, device=dev)
            for start, stop in chunk_ranges(b1 - b0, rows_per_chunk):
                cand = candidates[b0 + start : b0 + stop]
                flat = cand.reshape(-1)
                if gathered is not None:
                    assert isinstance(gallery.data, Tensor)
                    g = torch.index_select(
                        gallery.data.detach(), 0, flat.to(gathered.device), out=gathered[: flat.numel()]
                    )
                else:
                    g = gallery.rows(flat)
                q = query.chunk(query_offset + b0 + start, query_offset + b0 + stop, check=False)
                exact[start:stop] = exact_scores(q, g.to(dev).view(stop - start, c, d), scoring, cand, work)
            v, i = order_by_score_then_index(exact, candidates[b0:b1])
            scores[b0:b1], indices[b0:b1] = v[:, :k], i[:, :k]
    return scores, indices


def rounding_bound(d: int, dtype: torch.dtype, query_norms: Tensor, gallery_norm_max: float) -> Tensor:
    """Bound on ``|fast score - exact score|`` for inner products of length ``d`` computed in ``dtype``.

    ``gamma_{d+4} |q| |g|`` covers the dot product and the normalisation / scaling of its two rows
    (Higham, "Accuracy and Stability of Numerical Algorithms", 2002, §3.1); doubled for safety.
    """
    u = torch.finfo(dtype).eps / 2
    return 2.0 * (d + 4) * u * query_norms.to(torch.float64) * gallery_norm_max


def uncertain_queries(
    scores: Tensor, fast_theta: Tensor, tau: Tensor, n_candidates: int, n_gallery: int
) -> Tensor:
    """Indices of queries whose k-th exact score might be reached by a non-candidate item."""
    if n_candidates >= n_gallery:
        return torch.zeros(0, dtype=torch.long)
    kth = scores[:, -1]
    ulp = torch.nextafter(kth, torch.full_like(kth, float("inf"))) - kth
    clear = kth.double() - 2 * ulp.double() > fast_theta.double().to(kth.device) + tau.to(kth.device)
    return (~clear).nonzero().flatten().cpu()


def refine_uncertain(
    rows: Tensor,
    query: Embeddings,
    gallery: Embeddings,
    current: Tensor,
    kth: Tensor,
    scoring: Scoring,
    out_dtype: torch.dtype,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` of the query ``rows`` by a float64 pass over the whole gallery.

    Every item whose rounded exact score can reach ``kth`` (the current k-th score of that query) is
    collected from float64 blocks with a margin for their rounding, then rescored exactly together with
    the ``current`` ``(r, k)`` result and ordered.
    """
    k = current.shape[1]
    q = torch.cat([query.chunk(int(r), int(r) + 1, check=False) for r in rows]).to(torch.float64)
    if scoring.normalise:
        q = q / q.norm(dim=1, keepdim=True).clamp_min(EPS)
    lower = kth.to(torch.float64)
    lower = lower - 2 * (torch.nextafter(kth, torch.full_like(kth, float("inf"))) - kth).to(torch.float64)
    found: list[list[Tensor]] = [[current[r].cpu()] for r in range(rows.numel())]
    for g0, g1 in chunk_ranges(gallery.n, chunk):
        g = gallery.chunk(g0, g1, check=False).to(device=q.device, dtype=torch.float64)
        g = scale_gallery_chunk(g, scoring, g0)
        block = q @ g.T
        tau = rounding_bound(q.shape[1], torch.float64, q.norm(dim=1), float(g.norm(dim=1).max()))
        hit_row, hit_col = (block >= (lower - tau)[:, None]).nonzero(as_tuple=True)
        for r in hit_row.unique().tolist():
            found[r].append((hit_col[hit_row == r] + g0).cpu())
    scores, indices = [], []
    for r, parts in enumerate(found):
        cand = torch.unique(torch.cat(parts))[None, :]
        g = gallery.rows(cand[0]).to(cand.device)[None]
        s = exact_scores(query.chunk(int(rows[r]), int(rows[r]) + 1, check=False), g, scoring, cand)
        v, i = order_by_score_then_index(s.to(out_dtype), cand)
        scores.append(v[:, :k])
        indices.append(i[:, :k])
    return torch.cat(scores), torch.cat(indices)
