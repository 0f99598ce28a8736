"""Exact rescoring of top-k candidates and the final (score desc, index asc) order.

Both search backends first keep ``k + margin`` candidates per query from a fast float32 pass (a BLAS
GEMM whose rounding depends on the library and the block shape), then call :func:`rescore_candidates`.
It recomputes each candidate's score from the original rows with float64 accumulation, one dot product
per (query, candidate) pair done identically for every pair, rounds it to the output dtype and sorts by
(score descending, gallery index ascending). Two backends that agree on the candidate set therefore
return bit-identical scores and indices, and exact duplicate gallery rows always come out in index
order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import EPS, Embeddings, Scoring, chunk_ranges
from ._select import order_by_score_then_index

#: Extra candidates kept per query beyond ``k`` before exact rescoring.
RESCORE_MARGIN = 8


def candidate_count(k: int, n_gallery: int) -> int:
    """How many candidates the fast pass keeps: ``min(N_g, k + RESCORE_MARGIN)``."""
    return min(n_gallery, k + RESCORE_MARGIN)


def exact_scores(query_rows: Tensor, gallery_rows: Tensor, scoring: Scoring, gallery_index: Tensor) -> Tensor:
    """float64 scores of ``query_rows[i]`` (``(r, D)``) against ``gallery_rows[i, j]`` (``(r, c, D)``)."""
    q = query_rows.to(torch.float64)
    g = gallery_rows.to(torch.float64)
    if scoring.normalise:
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(EPS)
        g = g / g.norm(dim=-1, keepdim=True).clamp_min(EPS)
    s = (g * q[:, None, :]).sum(dim=-1)
    if scoring.magnitudes is not None:
        s = s * scoring.magnitudes[gallery_index.cpu()].to(s.device)
    return s


def rescore_candidates(
    query: Embeddings,
    gallery: Embeddings,
    candidates: Tensor,
    k: int,
    scoring: Scoring,
    out_dtype: torch.dtype,
    budget_bytes: int,
) -> tuple[Tensor, Tensor]:
    """Exact scores of the candidates and the final top-``k`` in (score desc, index asc) order.

    Args:
        query: the query matrix.
        gallery: the gallery matrix (only the candidate rows are read).
        candidates: ``(N_q, c)`` gallery indices, ``c >= k``.
        k: how many to return.
        scoring: metric and optional magnitudes.
        out_dtype: dtype of the returned scores.
        budget_bytes: memory budget for the gathered rows.

    Returns:
        ``(scores, indices)``, each ``(N_q, k)``.
    """
    n_q, c = candidates.shape
    rows_per_chunk = max(1, budget_bytes // (4 * 8 * max(1, c) * gallery.d))
    scores, indices = [], []
    for start, stop in chunk_ranges(n_q, rows_per_chunk):
        cand = candidates[start:stop]
        unique, inverse = torch.unique(cand, return_inverse=True)
        g = gallery.rows(unique).to(cand.device)[inverse]
        q = query.chunk(start, stop, check=False)
        s = exact_scores(q, g, scoring, cand).to(out_dtype)
        v, i = order_by_score_then_index(s, cand)
        scores.append(v[:, :k])
        indices.append(i[:, :k])
    return torch.cat(scores), torch.cat(indices)
