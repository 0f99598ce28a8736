"""FAISS backends: exact ``IndexFlatIP`` candidates for :func:`topk`, and approximate search.

FAISS is imported lazily; without it a clear error names the install command. The exact backend builds
one ``IndexFlatIP`` per gallery chunk (the gallery is never copied whole), keeps ``k + 8`` candidates per
query across chunks and hands them to the same exact rescoring as the torch backend, so both backends
return identical scores and indices (FAISS's own float32 scores and its order among ties are not used).
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._validation import check_choice
from ._inputs import (
    Embeddings,
    Scoring,
    check_dims,
    check_k,
    check_memory,
    check_scoring,
    chunk_ranges,
    prepare_query,
    scale_gallery_chunk,
    scaled_norm_max,
)
from ._plan import DEFAULT_MEMORY_MB
from ._select import SENTINEL, select
from ._threads import limited_threads
from .search import Candidates, topk

INSTALL_HINT = "pip install 'mmgeom[faiss]'"


def import_faiss() -> ModuleType:
    """Import FAISS or raise ``ImportError`` with the install command."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            f"backend='faiss' needs the faiss package, which is not installed; install it with {INSTALL_HINT}"
        ) from err
    return faiss


def _as_faiss(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def faiss_candidates(
    q: Tensor,
    gallery: Embeddings,
    c: int,
    scoring: Scoring,
    chunks: tuple[int, int] | None,
    budget: int,
    progress: bool = False,
) -> Candidates:
    """Each query's top-``c`` (values, gallery indices) by FAISS ``IndexFlatIP`` per gallery chunk.

    FAISS computes in float32 whatever the input dtype. ``chunks[1]`` (or the budget) sets the gallery
    chunk; FAISS blocks the queries itself.
    """
    faiss = import_faiss()
    n_q, d = q.shape
    cg = chunks[1] if chunks is not None else max(1, budget // (3 * 4 * d))
    cg = min(cg, gallery.n)
    xq = _as_faiss(q)
    run_values = torch.full((n_q, c), float("-inf"), dtype=torch.float32)
    run_index = (SENTINEL + torch.arange(c)).expand(n_q, c).clone()
    norm_max = 0.0
    ranges = chunk_ranges(gallery.n, cg)
    for g0, g1 in tqdm(ranges, desc="topk[faiss]", unit="chunk", disable=not progress, leave=False):
        scaled = scale_gallery_chunk(gallery.chunk(g0, g1), scoring, g0)
        norm_max = max(norm_max, scaled_norm_max(scaled, scoring, g0))
        g = _as_faiss(scaled)
        index = faiss.IndexFlatIP(d)
        index.add(g)
        kk = min(c, g1 - g0)
        dist, ids = index.search(xq, kk)
        v = torch.from_numpy(dist)
        i = torch.from_numpy(ids).to(torch.long) + g0
        with limited_threads():
            run_values, run_index = select(torch.cat([run_values, v], 1), torch.cat([run_index, i], 1), c)
    return Candidates(run_values, run_index.to(q.device), norm_max)


class ApproximateResult(NamedTuple):
    """Result of :func:`approximate_topk`: the ANN top-k and its measured recall against exact search."""

    scores: Tensor
    indices: Tensor
    recall: float
    recall_queries: int


def approximate_topk(
    query: Tensor | np.ndarray,
    gallery: Tensor | np.ndarray,
    k: int,
    index: str = "hnsw",
    metric: str = "cosine",
    gallery_magnitudes: Tensor | np.ndarray | None = None,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    recall_queries: int = 256,
    seed: int = 0,
) -> ApproximateResult:
    """Approximate top-``k`` with a FAISS IVF or HNSW index, with its recall@k measured against exact.

    The recall is never left implicit: ``recall`` is the mean fraction of the exact top-``k`` (torch
    backend of :func:`mmgeom.retrieval.topk`) found by the index, over ``recall_queries`` queries drawn
    at random (``seed``); pass ``recall_queries >= N_q`` to measure it on every query. Scores are FAISS's
    float32 inner products; ties are in FAISS's order. The index holds a float32 copy of the gallery.

    Args:
        query: ``(N_q, D)`` queries.
        gallery: ``(N_g, D)`` gallery.
        k: results per query.
        index: ``"hnsw"`` (``IndexHNSWFlat``) or ``"ivf"`` (``IndexIVFFlat`` trained on the gallery).
        metric: ``"cosine"`` or ``"dot"``.
        gallery_magnitudes: optional ``(N_g,)`` magnitudes (magnitude scoring).
        nlist: IVF cells (default ``4 * sqrt(N_g)``).
        nprobe: IVF cells visited per query.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth.
        recall_queries: how many queries the recall is measured on.
        seed: sampling seed for those queries.

    Example:
        >>> g = torch.randn(2000, 32)
        >>> res = approximate_topk(g[:100], g, k=5, index="hnsw")  # doctest: +SKIP
        >>> res.recall > 0.9  # doctest: +SKIP
        True
    """
    faiss = import_faiss()
    check_choice(index, "index", ("hnsw", "ivf"))
    q_src, g_src = Embeddings(query, "query"), Embeddings(gallery, "gallery")
    check_dims(q_src, g_src)
    k = check_k(k, g_src.n)
    scoring = check_scoring(metric, gallery_magnitudes, g_src.n)
    if recall_queries < 1:
        raise ValueError(f"recall_queries: expected >= 1, got {recall_queries}")
    budget = check_memory(None, DEFAULT_MEMORY_MB)
    q = prepare_query(q_src, scoring)
    d = q_src.d
    xb = np.concatenate(
        [
            _as_faiss(scale_gallery_chunk(g_src.chunk(a, b), scoring, a))
            for a, b in chunk_ranges(g_src.n, max(1, budget // (4 * d)))
        ]
    )
    if index == "hnsw":
        ann = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efSearch = max(ef_search, k)
        ann.add(xb)
    else:
        cells = nlist if nlist is not None else max(1, min(g_src.n // 39, int(4 * np.sqrt(g_src.n))))
        quantizer = faiss.IndexFlatIP(d)
        ann = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        ann.train(xb)
        ann.add(xb)
        ann.nprobe = min(nprobe, cells)
    dist, ids = ann.search(_as_faiss(q), k)
    scores = torch.from_numpy(dist).to(q.device)
    indices = torch.from_numpy(ids).to(torch.long).to(q.device)

    gen = torch.Generator().manual_seed(seed)
    m = min(recall_queries, q_src.n)
    sample = torch.randperm(q_src.n, generator=gen)[:m].sort().values
    q_sample = q_src.data[sample.numpy()] if isinstance(q_src.data, np.ndarray) else q_src.data[sample]
    _, exact = topk(q_sample, gallery, k, metric=metric, gallery_magnitudes=gallery_magnitudes)
    found = indices[sample.to(indices.device)]
    hits = (found[:, :, None] == exact.to(found.device)[:, None, :]).any(dim=2).sum()
    recall = float(hits) / float(m * k)
    return ApproximateResult(scores, indices, recall, m)
