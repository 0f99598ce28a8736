"""Exact top-k retrieval by blocked matrix multiply with a running top-k merge."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._validation import check_choice
from . import _native, _plan
from ._candidates import Candidates, torch_candidates
from ._inputs import (
    BACKENDS,
    Embeddings,
    Scoring,
    check_chunk_size,
    check_dims,
    check_k,
    check_memory,
    check_scoring,
    chunk_ranges,
    prepare_query,
)
from ._plan import DEFAULT_MEMORY_MB
from ._select import order_by_score_then_index
from ._threads import limited_threads, one_thread_here
from ._ties import ExactKeys
from ._tune import plan_for
from .rescore import (
    candidate_count,
    refine_uncertain,
    rescore_candidates,
    rounding_bound,
    uncertain_queries,
)


def topk(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    k: int,
    chunk_size: int | tuple[int, int] | None = None,
    backend: str = "auto",
    metric: str = "cosine",
    gallery_magnitudes: Tensor | np.ndarray | None = None,
    max_memory_mb: float | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` gallery items for every query.

    Scores are ``<q/|q|, g/|g|>`` (``metric="cosine"``), ``<q, g>`` (``"dot"``) or L2Dir's magnitude
    scoring ``<q/|q|, r_d g/|g|>`` when ``gallery_magnitudes`` ``r`` is given (cosine only; only the
    candidate's magnitude can change a ranking, the query's cannot).

    The gallery is streamed in chunks (numpy memmaps are converted chunk by chunk, never whole). Each
    (query chunk, gallery chunk) block is one float32 matrix multiply (float64 for float64 inputs;
    fp16/bf16 rows are converted to float32 first), merged into a running top-``(k + 8)``. The
    candidates are then rescored exactly (float64 accumulation, see :mod:`mmgeom.retrieval.rescore`)
    and ordered.

    Tie rule: results are sorted by the returned score, descending; equal scores are ordered by
    gallery index, lower first (exact duplicate gallery rows come out in index order). The ``torch`` and
    ``faiss`` backends return identical scores and indices. The search is exact in float64 unless more
    than 8 gallery items lie within float32 rounding (~1e-7 relative) of the k-th score.

    Memory: about ``max_memory_mb`` (default 256) for the blocks, plus the float32 query matrix and the
    ``(N_q, k + 8)`` running top-k; see ``docs/retrieval.md``.

    Args:
        query: ``(N_q, D)`` query embeddings (tensor or numpy array).
        gallery: ``(N_g, D)`` gallery embeddings (tensor, numpy array or memmap).
        k: results per query, ``1 <= k <= N_g``.
        chunk_size: ``None`` (from the memory budget), an int (query and gallery chunk length) or a
            ``(query_chunk, gallery_chunk)`` pair.
        backend: ``"auto"`` (the faster exact engine on this CPU, measured once and cached: FAISS only
            when it is installed and was measured faster), ``"torch"`` or ``"faiss"`` (needs
            ``pip install 'mmgeom[faiss]'``). All three return identical results.
        metric: ``"cosine"`` or ``"dot"``.
        gallery_magnitudes: optional ``(N_g,)`` non-negative magnitudes ``r_d`` (magnitude scoring).
        max_memory_mb: budget for the chunk buffers when ``chunk_size`` is None.
        progress: show a tqdm progress bar over gallery chunks.

    Returns:
        ``(scores, indices)``, each ``(N_q, k)``: float32 scores (float64 for float64 inputs) and int64
        gallery indices, on the query's device.

    Example:
        >>> g = torch.randn(1000, 64)
        >>> scores, idx = topk(g[:5], g, k=3)
        >>> idx[:, 0].tolist()
        [0, 1, 2, 3, 4]
    """
    check_choice(backend, "backend", BACKENDS)
    q_src = Embeddings(query, "query")
    g_src = Embeddings(gallery, "gallery")
    check_dims(q_src, g_src)
    k = check_k(k, g_src.n)
    scoring = check_scoring(metric, gallery_magnitudes, g_src.n)
    chunks = check_chunk_size(chunk_size)
    budget = check_memory(max_memory_mb, DEFAULT_MEMORY_MB)
    out_dtype = torch.float64 if torch.float64 in (q_src.dtype, g_src.dtype) else torch.float32
    # Mixed float64/float32 inputs compute in float64 throughout.
    if out_dtype == torch.float64:
        q_src.compute_dtype = g_src.compute_dtype = torch.float64
    q = prepare_query(q_src, scoring)
    c = candidate_count(k, g_src.n)
    with torch.inference_mode():
        fast = _candidates(q, g_src, c, scoring, chunks, budget, progress, backend)
        scores, indices = _rescore(q_src, g_src, fast.indices, k, scoring, out_dtype, budget)
        tau = rounding_bound(q_src.d, fast.values.dtype, q.norm(dim=1).cpu(), fast.gallery_norm_max)
        theta = fast.values.amin(dim=1).cpu()
        unsure = uncertain_queries(scores, theta, tau, c, g_src.n)
        if unsure.numel():
            # float64 blocks of ``group x chunk`` scores, both sized from the budget
            chunk = max(1, min(g_src.n, budget // (4 * 8 * g_src.d)))
            group = max(1, budget // (4 * 8 * chunk))
            for start in range(0, unsure.numel(), group):
                rows = unsure[start : start + group].to(indices.device)
                current, kth = indices[rows], scores[rows, -1]
                v, i = refine_uncertain(rows.cpu(), q_src, g_src, current, kth, scoring, out_dtype, chunk)
                scores[rows], indices[rows] = v.to(scores.device), i.to(indices.device)
        return scores, indices


def _faiss_installed() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _candidates(
    q: Tensor,
    g_src: Embeddings,
    c: int,
    scoring: Scoring,
    chunks: tuple[int, int] | None,
    budget: int,
    progress: bool,
    backend: str,
) -> Candidates:
    """The fast pass of the chosen engine: FAISS, the query-parallel fused engine, or the blocked one.

    The fused engine needs the native merge (CPU, float32/float64); explicit ``chunk_size`` keeps the
    blocked engine, whose blocks are exactly the requested shape.
    """
    flops = 2.0 * q.shape[0] * g_src.n * q.shape[1]
    fused = (
        backend != "faiss"
        and chunks is None
        and flops >= _plan.MIN_FUSED_FLOPS
        and _native.available(q.dtype, q.device)
    )
    # FAISS was measured against the fused engine, on CPU: GPU tensors stay with torch under "auto"
    plan = plan_for(flops, q.dtype) if fused else None
    if backend == "faiss" or (
        backend == "auto" and plan is not None and plan.prefers_faiss() and _faiss_installed()
    ):
        from .faiss_backend import faiss_candidates

        return faiss_candidates(q, g_src, c, scoring, chunks, budget, progress)
    if fused and plan is not None:
        from ._fused import fused_candidates

        fitted = plan.fit(q.shape[0], g_src.n, q.shape[1], q.element_size(), budget)
        return fused_candidates(q, g_src, c, scoring, fitted, progress)
    return torch_candidates(q, g_src, c, scoring, chunks, budget, progress)


def _rescore(
    q_src: Embeddings,
    g_src: Embeddings,
    candidates: Tensor,
    k: int,
    scoring: Scoring,
    out_dtype: torch.dtype,
    budget: int,
) -> tuple[Tensor, Tensor]:
    """:func:`rescore_candidates`, in one slice of queries per torch thread on CPU (each slice is
    independent; single-threaded, it was 3% of a 10k x 100k search on two cores).

    For float32 matrices in memory the scores come from the native certified keys of
    :class:`~mmgeom.retrieval._ties.ExactKeys` instead: the same float32 values (the float64 score
    rounded, certified to be what ``exact_scores`` gives, or computed by it), without gathering float64
    copies of the candidate rows.
    """
    n_q, threads = candidates.shape[0], torch.get_num_threads()
    keys = ExactKeys(q_src, g_src, scoring, out_dtype) if candidates.device.type == "cpu" else None
    if keys is not None and keys.native is None:
        keys = None
    if candidates.device.type != "cpu" or threads < 2 or n_q < 64 * threads:
        if keys is not None:
            return _rescore_by_keys(keys, candidates, k, out_dtype, 0)
        return rescore_candidates(q_src, g_src, candidates, k, scoring, out_dtype, budget)
    pool = _native.executor(threads)
    slices = chunk_ranges(n_q, -(-n_q // threads))

    def rescore(a: int, b: int) -> tuple[Tensor, Tensor]:
        one_thread_here()
        if keys is not None:
            return _rescore_by_keys(keys, candidates[a:b], k, out_dtype, a)
        return rescore_candidates(q_src, g_src, candidates[a:b], k, scoring, out_dtype, budget // threads, a)

    with limited_threads(1):
        parts = [f.result() for f in [pool.submit(rescore, a, b) for a, b in slices]]
    return torch.cat([v for v, _ in parts]), torch.cat([i for _, i in parts])


#: Queries whose candidates are keyed at a time (their float64 rows: 4 MB at D = 512).
KEY_ROWS = 1024


def _rescore_by_keys(
    keys: ExactKeys, candidates: Tensor, k: int, out_dtype: torch.dtype, q0: int
) -> tuple[Tensor, Tensor]:
    """The best ``k`` of the ``(r, c)`` candidates of queries ``q0..``, ordered by their exact keys."""
    r, c = candidates.shape
    scores = torch.empty(r, k, dtype=out_dtype)
    indices = torch.empty(r, k, dtype=torch.long)
    wide = torch.empty(min(r, KEY_ROWS) * keys.query.d, dtype=torch.float64)
    with torch.inference_mode():  # (a pool thread does not inherit the caller's mode)
        for a, b in chunk_ranges(r, KEY_ROWS):
            rows = torch.arange(q0 + a, q0 + b).repeat_interleave(c)
            cand = candidates[a:b]
            # pairs grouped by query: its row, widened once, stays in cache for its c candidates
            exact = keys(rows, cand.reshape(-1), True, keys.widened(q0 + a, q0 + b, wide))
            v, i = order_by_score_then_index(exact.view(b - a, c).to(out_dtype), cand)
            scores[a:b], indices[a:b] = v[:, :k], i[:, :k]
    return scores, indices
