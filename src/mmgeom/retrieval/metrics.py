"""Retrieval metrics from the ranks of the positives.

With ``r_1 < r_2 < ... < r_P`` the 0-based ranks of a query's ``P`` positives (items ranked before them,
tie rule of :func:`mmgeom.retrieval.topk`):

* ``hit@K = [r_1 < K]`` — at least one positive in the top K (what CLIP papers call R@K);
* ``recall@K = #{t : r_t < K} / P`` — the fraction of the positives in the top K;
* ``precision@K = #{t : r_t < K} / K``;
* ``mrr`` — mean of ``1 / (r_1 + 1)`` over queries (full ranking, no cut-off);
* ``map`` — mean of ``AP = (1/P) sum_t t / (r_t + 1)`` (precision at each positive, full ranking);
* ``ndcg@K = sum_{r_t < K} 1/log2(r_t + 2) / sum_{t < min(P, K)} 1/log2(t + 2)`` (binary gains);
* ``median_rank``, ``mean_rank`` — of the first positive, 1-based (``r_1 + 1``).

Every value is a mean over queries except ``median_rank`` (the median, halfway between the two middle
values for an even count, as ``numpy.median``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._inputs import (
    Embeddings,
    check_chunk_size,
    check_dims,
    check_k,
    check_memory,
    check_scoring,
    chunk_ranges,
    prepare_query,
)
from ._plan import DEFAULT_MEMORY_MB
from .ranks import iter_positive_ranks
from .relevance import Relevance, as_relevance
from .search import topk

#: Names of the per-K metrics; each appears as ``f"{name}@{K}"``.
AT_K = ("hit", "recall", "precision", "ndcg")


def check_ks(ks: object, n_gallery: int) -> tuple[int, ...]:
    """Cut-offs: a non-empty sequence of integers ``1 <= K <= N_g`` (an int is one cut-off)."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (ks,)
    if not isinstance(ks, Sequence) or isinstance(ks, str) or len(ks) == 0:
        raise ValueError(f"ks: expected a non-empty sequence of integers, got {ks!r}")
    return tuple(sorted({check_k(k, n_gallery, "ks") for k in ks}))


def metrics_from_ranks(ranks: Tensor, counts: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Per-query metrics from the 0-based ranks of the positives.

    Args:
        ranks: ``(n, P)`` integer ranks of each query's positives (any order); entries beyond the
            query's count are ignored.
        counts: ``(n,)`` number of positives per query (``>= 1``).
        ks: cut-offs K.

    Returns:
        ``{"hit@K", "recall@K", "precision@K", "ndcg@K", "rr", "ap", "first_rank"}`` → ``(n,)`` float64
        tensors (``rr`` is the reciprocal rank, ``first_rank`` 1-based).

    Example:
        >>> m = metrics_from_ranks(torch.tensor([[0, 2]]), torch.tensor([2]), ks=[1, 2])
        >>> float(m["ap"][0])  # (1/1 + 2/3) / 2
        0.8333333333333333
    """
    width = ranks.shape[1]
    counts = counts.to(torch.long).cpu()
    valid = torch.arange(width)[None, :] < counts[:, None]
    big = torch.iinfo(torch.long).max
    r = torch.where(valid, ranks.cpu().to(torch.long), big).sort(dim=1).values
    rf = r.to(torch.float64)
    p = counts.to(torch.float64)
    first = rf[:, 0]
    out: dict[str, Tensor] = {}
    for k in ks:
        inside = valid & (r < k)
        n_in = inside.sum(dim=1).to(torch.float64)
        out[f"hit@{k}"] = (first < k).to(torch.float64)
        out[f"recall@{k}"] = n_in / p
        out[f"precision@{k}"] = n_in / k
        discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2.0)
        ideal = torch.cumsum(discount, 0)[counts.clamp(max=k) - 1]
        gains = torch.where(inside, 1.0 / torch.log2(rf.clamp(max=k) + 2.0), 0.0).sum(dim=1)
        out[f"ndcg@{k}"] = gains / ideal
    t = torch.arange(1, width + 1, dtype=torch.float64)[None, :]
    out["ap"] = torch.where(valid, t / (rf + 1.0), 0.0).sum(dim=1) / p
    out["rr"] = 1.0 / (first + 1.0)
    out["first_rank"] = first + 1.0
    return out


def retrieval_metrics(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    relevance: Tensor | np.ndarray | Sequence[Sequence[int]] | Relevance,
    ks: Sequence[int] = (1, 5, 10),
    metric: str = "cosine",
    gallery_magnitudes: Tensor | np.ndarray | None = None,
    chunk_size: int | tuple[int, int] | None = None,
    max_memory_mb: float | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Ranking metrics of ``query`` against ``gallery``, chunked over queries.

    Computes, for every query, the rank of each positive (how many gallery items are ranked before it,
    ties by lower gallery index as in :func:`topk`) and reduces them to the metrics in the module
    docstring. Peak memory is one query chunk's score rows (``cq * N_g`` floats, within
    ``max_memory_mb``, default 256); no ``(N_q, N_g)`` matrix is built unless ``relevance`` is one.

    A query without any positive is an error (``ValueError``): it has no rank.

    Reference: Manning, Raghavan & Schütze, "Introduction to Information Retrieval", ch. 8 (2008);
    Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002 (nDCG).

    Args:
        query: ``(N_q, D)`` queries.
        gallery: ``(N_g, D)`` gallery (tensor, numpy array or memmap).
        relevance: ``(N_q,)`` integer gallery index per query, a boolean ``(N_q, N_g)`` matrix, a list of
            index lists, or a :class:`~mmgeom.retrieval.relevance.Relevance` (e.g. from
            :func:`relevance_from_labels`).
        ks: cut-offs for hit/recall/precision/nDCG, each ``1 <= K <= N_g``.
        metric: ``"cosine"`` or ``"dot"``.
        gallery_magnitudes: optional ``(N_g,)`` magnitudes for L2Dir magnitude scoring.
        chunk_size: ``None`` (from the budget), an int, or ``(query_chunk, gallery_chunk)``.
        max_memory_mb: budget for the score rows and buffers.
        progress: show a tqdm progress bar over query chunks.

    Returns:
        ``{"hit@K", "recall@K", "precision@K", "ndcg@K" for each K, "mrr", "map", "median_rank",
        "mean_rank"}`` as floats.

    Example:
        >>> z = torch.randn(50, 16)
        >>> m = retrieval_metrics(z, z, torch.arange(50), ks=(1, 5))
        >>> m["hit@1"], m["median_rank"]
        (1.0, 1.0)
    """
    q_src = Embeddings(query, "query")
    g_src = Embeddings(gallery, "gallery")
    check_dims(q_src, g_src)
    ks = check_ks(ks, g_src.n)
    scoring = check_scoring(metric, gallery_magnitudes, g_src.n)
    rel = as_relevance(relevance, q_src.n, g_src.n)
    chunks = check_chunk_size(chunk_size)
    budget = check_memory(max_memory_mb, DEFAULT_MEMORY_MB)
    if torch.float64 in (q_src.dtype, g_src.dtype):
        q_src.compute_dtype = g_src.compute_dtype = torch.float64
    q = prepare_query(q_src, scoring)
    sums: dict[str, float] = {}
    first_ranks = []
    with torch.inference_mode():
        for _, _, ranks, counts in iter_positive_ranks(
            q_src, q, g_src, rel, scoring, chunks, budget, progress
        ):
            per_query = metrics_from_ranks(ranks, counts, ks)
            first_ranks.append(per_query["first_rank"])
            for name, values in per_query.items():
                sums[name] = sums.get(name, 0.0) + float(values.sum())
    n = q_src.n
    out = {f"{name}@{k}": sums[f"{name}@{k}"] / n for name in AT_K for k in ks}
    out["mrr"] = sums["rr"] / n
    out["map"] = sums["ap"] / n
    firsts = torch.cat(first_ranks).numpy()
    out["median_rank"] = float(np.median(firsts))
    out["mean_rank"] = float(firsts.mean())
    return out


def topk_metrics(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    relevance: Tensor | np.ndarray | Sequence[Sequence[int]] | Relevance,
    ks: Sequence[int] = (1, 5, 10),
    metric: str = "cosine",
    gallery_magnitudes: Tensor | np.ndarray | None = None,
    backend: str = "auto",
    chunk_size: int | tuple[int, int] | None = None,
    max_memory_mb: float | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """The cut-off metrics (hit@K, recall@K, precision@K, nDCG@K) from exact top-``max(ks)`` search.

    Runs :func:`topk` with ``k = max(ks)`` (any backend: their results are identical) and reads each
    query's positives off its result list; the definitions are those of :func:`retrieval_metrics`, with
    the ranks of :func:`topk`'s order (float64 rescored scores). Metrics of the whole ranking (``mrr``,
    ``map``, ``median_rank``, ``mean_rank``) need every positive's rank and are not returned: use
    :func:`retrieval_metrics` for them. Both functions order by the same exact key, so they agree on
    every cut-off metric.

    Args:
        query, gallery, relevance, ks, metric, gallery_magnitudes, chunk_size, max_memory_mb, progress:
            as in :func:`retrieval_metrics`.
        backend: ``"auto"``, ``"torch"`` or ``"faiss"`` (see :func:`topk`).

    Returns:
        ``{"hit@K", "recall@K", "precision@K", "ndcg@K"}`` for each K, as floats.
    """
    q_src = Embeddings(query, "query")
    g_src = Embeddings(gallery, "gallery")
    check_dims(q_src, g_src)
    ks = check_ks(ks, g_src.n)
    rel = as_relevance(relevance, q_src.n, g_src.n)
    kmax = ks[-1]
    _, index = topk(
        query,
        gallery,
        kmax,
        chunk_size=chunk_size,
        backend=backend,
        metric=metric,
        gallery_magnitudes=gallery_magnitudes,
        max_memory_mb=max_memory_mb,
        progress=progress,
    )
    index = index.cpu()
    # one boolean relevance row per query of the chunk: (rows, N_g) within the budget
    rows = max(1, check_memory(max_memory_mb, DEFAULT_MEMORY_MB) // max(1, 2 * g_src.n))
    sums: dict[str, float] = {}
    position = torch.arange(kmax)
    for start, stop in chunk_ranges(q_src.n, rows):
        hit = rel.mask(start, stop).gather(1, index[start:stop])
        # positives found in the list first (their 0-based positions), the others ranked >= kmax
        ranks = torch.where(hit, position, kmax).sort(dim=1).values
        per_query = metrics_from_ranks(ranks, rel.counts(start, stop), ks)
        for name in AT_K:
            for k in ks:
                key = f"{name}@{k}"
                sums[key] = sums.get(key, 0.0) + float(per_query[key].sum())
    return {f"{name}@{k}": sums[f"{name}@{k}"] / q_src.n for name in AT_K for k in ks}
