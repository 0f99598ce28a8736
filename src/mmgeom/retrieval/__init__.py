"""Exact chunked top-k retrieval, an optional FAISS backend and retrieval metrics.

* :func:`topk` — exact top-k by blocked matrix multiply (torch or FAISS ``IndexFlatIP``), cosine, dot or
  L2Dir magnitude scoring, deterministic ties (equal scores: lower gallery index first);
* :func:`retrieval_metrics` — hit@K (CLIP's R@K), recall@K, precision@K, MRR, mAP, nDCG@K, median and
  mean rank of the first positive, from the ranks of the positives, chunked over queries;
  :func:`topk_metrics` — the cut-off metrics from :func:`topk`'s lists (either backend);
* relevance helpers — :func:`relevance_from_labels`, :func:`as_relevance`;
* :func:`approximate_topk` — FAISS IVF/HNSW search that reports its recall@k against exact search;
* :func:`tune` — measure (and cache) this CPU's block shapes and which exact engine ``backend="auto"``
  uses;
* :func:`native_status` — whether :func:`topk` merges score blocks with its compiled C kernel, or why not.
"""

from ._native import native_status
from ._tune import tune
from .approximate import ApproximateResult, approximate_topk
from .faiss_backend import import_faiss
from .metrics import metrics_from_ranks, retrieval_metrics, topk_metrics
from .relevance import (
    IndexRelevance,
    LabelRelevance,
    MaskRelevance,
    Relevance,
    as_relevance,
    relevance_from_labels,
)
from .rescore import RESCORE_MARGIN
from .search import topk

__all__ = [
    "RESCORE_MARGIN",
    "ApproximateResult",
    "IndexRelevance",
    "LabelRelevance",
    "MaskRelevance",
    "Relevance",
    "approximate_topk",
    "as_relevance",
    "import_faiss",
    "metrics_from_ranks",
    "native_status",
    "relevance_from_labels",
    "retrieval_metrics",
    "topk",
    "topk_metrics",
    "tune",
]
