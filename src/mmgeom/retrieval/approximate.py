"""Approximate (ANN) search with FAISS HNSW or IVF indexes, with its recall measured against exact search."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._validation import check_choice
from ._inputs import (
    Embeddings,
    check_dims,
    check_k,
    check_memory,
    check_scoring,
    chunk_ranges,
    prepare_query,
    scale_gallery_chunk,
)
from ._plan import DEFAULT_MEMORY_MB
from .faiss_backend import as_faiss_array, import_faiss
from .search import topk


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
            as_faiss_array(scale_gallery_chunk(g_src.chunk(a, b), scoring, a))
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
    dist, ids = ann.search(as_faiss_array(q), k)
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
