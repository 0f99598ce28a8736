"""The L2Dir study's measurements: retrieval with cosine or magnitude scoring, magnitude vs relevance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...retrieval import retrieval_metrics
from .data import TaskData
from .model import FrozenFeatureModel
from .settings import METRICS, SCORES


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (ascending), ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], xs.size]
    ranks = np.empty(xs.size, dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(new) - 1]
    return ranks


def magnitude_auc(magnitudes: np.ndarray, relevant: np.ndarray) -> float:
    """``P(r_rel > r_non) + ½ P(tie)``: AUC of the magnitude for relevant vs non-relevant documents.

    NaN when either group is empty (Mann–Whitney U / (P · N), from average ranks).
    """
    p = int(relevant.sum())
    n = relevant.size - p
    if p == 0 or n == 0:
        return float("nan")
    ranks = average_ranks(magnitudes)
    return float((ranks[relevant].sum() - p * (p + 1) / 2) / (p * n))


def cohens_d(magnitudes: np.ndarray, relevant: np.ndarray) -> float:
    """``(mean_rel - mean_non) / pooled std`` (pooled with ``n - 1`` weights; NaN if undefined)."""
    a, b = magnitudes[relevant], magnitudes[~relevant]
    if a.size == 0 or b.size == 0 or a.size + b.size < 3:
        return float("nan")
    var = (((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (a.size + b.size - 2)
    return float((a.mean() - b.mean()) / math.sqrt(var)) if var > 0 else float("nan")


def _row_stats(r: np.ndarray, rel: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row AUC and Cohen's d of magnitudes ``r`` (n, m) for ``rel`` (n, m), given per-row average
    ranks of ``r``; NaN where a row lacks relevant or non-relevant entries (vectorised
    :func:`magnitude_auc` / :func:`cohens_d`)."""
    relf = rel.astype(np.float64)
    p = relf.sum(axis=1)
    n = rel.shape[1] - p
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((relf * ranks).sum(axis=1) - p * (p + 1) / 2) / (p * n)
        s1, s2 = (relf * r).sum(axis=1), (relf * r * r).sum(axis=1)
        t1, t2 = (r.sum(axis=1) - s1), ((r * r).sum(axis=1) - s2)
        m_pos, m_neg = s1 / p, t1 / n
        var = (s2 - p * m_pos**2 + t2 - n * m_neg**2) / (p + n - 2)
        d = np.where(var > 0, (m_pos - m_neg) / np.sqrt(np.maximum(var, 0)), np.nan)
    bad = (p == 0) | (n == 0)
    return np.where(bad, np.nan, auc), np.where(bad | (p + n < 3), np.nan, d)


def magnitude_relevance(
    query: Tensor, gallery: Tensor, magnitudes: Tensor, relevant: Tensor
) -> dict[str, float]:
    """How document magnitude relates to relevance, averaged over queries.

    * ``auc`` / ``cohen_d`` — over the whole gallery (:func:`magnitude_auc`, :func:`cohens_d`);
    * ``auc_top`` / ``cohen_d_top`` — among the query's top ``K = max(20, 2P)`` documents by cosine
      (``P`` = its number of relevant documents): the candidates whose order magnitude can change;
      queries whose top K is all relevant or all non-relevant are skipped (``top_queries`` counts the
      others);
    * ``cv`` — coefficient of variation of the gallery magnitudes (0: magnitude scoring = cosine).

    Args:
        query: ``(N_q, D)`` query embeddings.
        gallery: ``(N_g, D)`` gallery embeddings.
        magnitudes: ``(N_g,)`` document magnitudes.
        relevant: ``(N_q, N_g)`` boolean relevance.
    """
    r = magnitudes.double().numpy()
    rel = relevant.numpy()
    nq = rel.shape[0]
    whole_auc, whole_d = _row_stats(np.broadcast_to(r, rel.shape), rel, average_ranks(r)[None, :])
    cos = nn.functional.normalize(query.double(), dim=1) @ nn.functional.normalize(gallery.double(), dim=1).T
    ks = np.minimum(r.size, np.maximum(20, 2 * rel.sum(axis=1)))
    top_auc, top_d = np.full(nq, np.nan), np.full(nq, np.nan)
    for k in np.unique(ks):  # queries with the same K in one block
        rows = np.flatnonzero(ks == k)
        top = torch.topk(cos[rows], int(k), dim=1).indices.numpy()
        rt, relt = r[top], np.take_along_axis(rel[rows], top, axis=1)
        ranks = np.stack([average_ranks(x) for x in rt])
        top_auc[rows], top_d[rows] = _row_stats(rt, relt, ranks)

    def mean(xs: np.ndarray) -> float:
        vals = xs[np.isfinite(xs)]
        return float(vals.mean()) if vals.size else float("nan")

    return {
        "auc": mean(whole_auc),
        "cohen_d": mean(whole_d),
        "auc_top": mean(top_auc),
        "cohen_d_top": mean(top_d),
        "top_queries": float(np.isfinite(top_auc).sum()),
        "cv": float(r.std() / r.mean()) if r.mean() > 0 else float("nan"),
    }


def pair_gap(query_magnitudes: Tensor, doc_magnitudes: Tensor, relevant: Tensor) -> float:
    """Mean over relevant (query, document) pairs of ``|r_q - r_d| / (r_q + r_d)``: 0 = norms aligned."""
    rq, rd = query_magnitudes.double()[:, None], doc_magnitudes.double()[None, :]
    gap = (rq - rd).abs() / (rq + rd)
    return float(gap[relevant].mean())


def score_retrieval(
    query: Tensor, gallery: Tensor, relevant: Tensor, score: str, magnitudes: Tensor | None
) -> dict[str, float]:
    """Retrieval metrics under ``score="cosine"`` or ``"magnitude"`` (``<ẑ_q, r_d ẑ_d>``)."""
    if score not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
    mags = magnitudes if score == "magnitude" else None
    m = retrieval_metrics(query, gallery, relevant, ks=(1, 5, 10), metric="cosine", gallery_magnitudes=mags)
    return {k: float(m[k]) for k in (*METRICS, "mrr")}


def evaluate(model: FrozenFeatureModel, data: TaskData, split: str = "test") -> dict[str, Any]:
    """Both scorings and (on ``split="test"``) the magnitude-relevance statistics, averaged over the task's
    directions. ``split="val"`` scores the validation rows (retrieval metrics only: what chooses the
    hyper-parameters).

    Raises:
        ValueError: ``split`` is not ``"test"`` or ``"val"``, or the task has no validation rows.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split: expected 'test' or 'val', got {split!r}")
    feats, labels = (data.test, data.test_labels) if split == "test" else (data.val, data.val_labels)
    if not feats:
        raise ValueError(f"split: task {data.name!r} has no validation rows")
    with torch.no_grad():
        emb, _ = model(feats)
    per_direction: dict[str, dict[str, float]] = {}
    for q, g in data.directions:
        relevant = labels[q][:, None] == labels[g][None, :]
        if data.instance:  # instance retrieval: only the same row (digit) is relevant
            relevant = torch.eye(len(labels[q]), dtype=torch.bool)
        mags = model.document_magnitudes(g, feats[g], emb[g])
        row: dict[str, float] = {}
        for score in SCORES:
            row.update(
                {f"{score}/{k}": v for k, v in score_retrieval(emb[q], emb[g], relevant, score, mags).items()}
            )
        if split == "val":
            per_direction[f"{q}->{g}"] = row
            continue
        query_mags = model.document_magnitudes(q, feats[q], emb[q])
        row["mag/pair_gap"] = pair_gap(query_mags, mags, relevant)
        row.update({f"mag/{k}": v for k, v in magnitude_relevance(emb[q], emb[g], mags, relevant).items()})
        per_direction[f"{q}->{g}"] = row
    keys = next(iter(per_direction.values())).keys()
    mean = {k: float(np.mean([r[k] for r in per_direction.values()])) for k in keys}
    return {"mean": mean, "directions": per_direction}
