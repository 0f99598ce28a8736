"""Retrieval metrics against torchmetrics, hand-computed cases, relevance forms and the tie rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchmetrics.functional.retrieval as tmr

from mmgeom.retrieval import (
    as_relevance,
    metrics_from_ranks,
    relevance_from_labels,
    retrieval_metrics,
    topk,
    topk_metrics,
)
from mmgeom.retrieval import ranks as ranks_module


def scores_matrix(q, g, metric, mags=None):
    q, g = q.double(), g.double()
    if metric == "cosine":
        q = q / q.norm(dim=1, keepdim=True)
        g = g / g.norm(dim=1, keepdim=True)
    s = q @ g.T
    return s * mags.double()[None, :] if mags is not None else s


def torchmetrics_reference(scores, lists, ks):
    """Per-query loop over torchmetrics' functional metrics, averaged.

    torchmetrics ignores positives whose prediction is <= 0 (``target = where(preds > 0, target, 0)``),
    so every row is shifted to be positive first; that does not change the ranking.
    """
    out: dict[str, list[float]] = {}
    n_g = scores.shape[1]
    for i, positives in enumerate(lists):
        preds = scores[i] - scores[i].min() + 1.0
        target = torch.zeros(n_g, dtype=torch.bool)
        target[positives] = True
        for k in ks:
            out.setdefault(f"hit@{k}", []).append(float(tmr.retrieval_hit_rate(preds, target, top_k=k)))
            out.setdefault(f"recall@{k}", []).append(float(tmr.retrieval_recall(preds, target, top_k=k)))
            out.setdefault(f"precision@{k}", []).append(
                float(tmr.retrieval_precision(preds, target, top_k=k))
            )
            out.setdefault(f"ndcg@{k}", []).append(
                float(tmr.retrieval_normalized_dcg(preds, target, top_k=k))
            )
        out.setdefault("mrr", []).append(float(tmr.retrieval_reciprocal_rank(preds, target)))
        out.setdefault("map", []).append(float(tmr.retrieval_average_precision(preds, target)))
        first = int((preds > preds[positives].max()).sum()) + 1  # no ties in random data
        out.setdefault("rank", []).append(first)
    ref = {name: float(np.mean(v)) for name, v in out.items() if name != "rank"}
    ref["median_rank"] = float(np.median(out["rank"]))
    ref["mean_rank"] = float(np.mean(out["rank"]))
    return ref


@pytest.mark.parametrize("metric", ["cosine", "dot", "magnitude"])
def test_metrics_match_torchmetrics_multi_positive(metric):
    gen = torch.Generator().manual_seed(21)
    n_q, n_g, d = 30, 150, 8
    q, g = torch.randn(n_q, d, generator=gen).double(), torch.randn(n_g, d, generator=gen).double()
    mags = torch.rand(n_g, generator=gen) + 0.5 if metric == "magnitude" else None
    m = "cosine" if metric == "magnitude" else metric
    lists = [
        torch.randperm(n_g, generator=gen)[: int(torch.randint(1, 7, (), generator=gen))].tolist()
        for _ in range(n_q)
    ]
    ks = (1, 5, 50)
    ref = torchmetrics_reference(scores_matrix(q, g, m, mags), lists, ks)
    for chunk in [None, 7, (5, 33)]:  # ragged query and gallery chunks
        got = retrieval_metrics(q, g, lists, ks=ks, metric=m, gallery_magnitudes=mags, chunk_size=chunk)
        assert set(got) == set(ref)
        for name, value in ref.items():
            # torchmetrics computes nDCG in float32
            assert got[name] == pytest.approx(value, abs=1e-6), (name, chunk)


def test_metrics_match_torchmetrics_float32_single_positive():
    gen = torch.Generator().manual_seed(22)
    q, g = torch.randn(30, 16, generator=gen), torch.randn(400, 16, generator=gen)
    target = torch.randint(0, 400, (30,), generator=gen)
    got = retrieval_metrics(q, g, target, ks=(1, 5, 10))
    ref = torchmetrics_reference(scores_matrix(q, g, "cosine"), [[int(t)] for t in target], (1, 5, 10))
    for name, value in ref.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


def test_hand_computed_single_query():
    # One query, D = 1, dot scores equal to the gallery values:
    #   gallery  0:0.9  1:0.1  2:0.5  3:0.7  4:0.3  5:0.8   -> ranking 0, 5, 3, 2, 4, 1
    #   positives {1, 2, 5} sit at 0-based ranks 1 (item 5), 3 (item 2), 5 (item 1).
    #   hit@1 = 0, hit@2 = 1; recall@2 = 1/3, recall@4 = 2/3; precision@2 = 1/2, precision@4 = 2/4
    #   MRR = 1/2;  AP = (1/2 + 2/4 + 3/6) / 3 = 1/2
    #   nDCG@4 = (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3) + 1/log2(4))
    #   first positive at rank 2 (1-based): median = mean = 2
    q = torch.tensor([[1.0]])
    g = torch.tensor([[0.9], [0.1], [0.5], [0.7], [0.3], [0.8]])
    m = retrieval_metrics(q, g, [[1, 2, 5]], ks=(1, 2, 4), metric="dot")
    assert m["hit@1"] == 0.0
    assert m["hit@2"] == 1.0
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["recall@4"] == pytest.approx(2 / 3)
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["precision@4"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx(0.5)
    ndcg4 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert m["ndcg@4"] == pytest.approx(ndcg4)
    assert m["ndcg@1"] == 0.0
    assert m["median_rank"] == m["mean_rank"] == 2.0


def test_hand_computed_two_queries_median_and_ties():
    # Query 0 scores all five items 0.5 (exact ties): the tie rule ranks by index, so positive 3 has
    # 0-based rank 3 (items 0, 1, 2 before it). Query 1 scores -0.1 ... -0.5: its positive 4 comes last.
    # First ranks (1-based) 4 and 5: median 4.5, mean 4.5, hit@4 = 1/2, MRR = (1/4 + 1/5) / 2.
    q = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    g = torch.tensor([[0.1, 0.5], [0.2, 0.5], [0.3, 0.5], [0.4, 0.5], [0.5, 0.5]])
    m = retrieval_metrics(q, g, torch.tensor([3, 4]), ks=(1, 4), metric="dot")
    assert m["median_rank"] == 4.5
    assert m["mean_rank"] == 4.5
    assert m["hit@4"] == 0.5
    assert m["mrr"] == pytest.approx((1 / 4 + 1 / 5) / 2)


@pytest.mark.parametrize("force_sort", [False, True])
def test_tie_rule_for_ranks_with_duplicate_rows(force_sort, monkeypatch):
    if force_sort:
        monkeypatch.setattr(ranks_module, "MAX_COMPARE_POSITIVES", 0)
    gen = torch.Generator().manual_seed(23)
    base = torch.randn(10, 4, generator=gen)
    g = torch.cat([base, base, base])  # item j == j + 10 == j + 20
    q = torch.randn(6, 4, generator=gen)
    s = scores_matrix(q, g, "cosine")
    for pos in (0, 10, 25):  # a copy with 0, 1 or 2 duplicates before it
        got = retrieval_metrics(q, g, torch.full((6,), pos), ks=(1,), chunk_size=(4, 7))
        ranks = []
        for i in range(6):
            si = s[i]
            v = si[pos % 10]  # identical rows have identical exact scores
            ranks.append(int((si > v + 1e-12).sum()) + pos // 10 + 1)
        assert got["mean_rank"] == pytest.approx(np.mean(ranks))


def test_sort_path_equals_comparison_path(monkeypatch):
    gen = torch.Generator().manual_seed(24)
    q, g = torch.randn(30, 8, generator=gen), torch.randn(200, 8, generator=gen)
    lists = [torch.randperm(200, generator=gen)[:5].tolist() for _ in range(30)]
    a = retrieval_metrics(q, g, lists, chunk_size=(8, 64))
    monkeypatch.setattr(ranks_module, "MAX_COMPARE_POSITIVES", 0)
    b = retrieval_metrics(q, g, lists, chunk_size=(8, 64))
    assert a == b


def test_relevance_forms_agree():
    gen = torch.Generator().manual_seed(25)
    q, g = torch.randn(25, 6, generator=gen), torch.randn(90, 6, generator=gen)
    ql, gl = torch.randint(0, 4, (25,), generator=gen), torch.randint(0, 4, (90,), generator=gen)
    dense = ql[:, None] == gl[None, :]
    lists = [dense[i].nonzero().flatten().tolist() for i in range(25)]
    a = retrieval_metrics(q, g, relevance_from_labels(ql, gl), chunk_size=(6, 20))
    b = retrieval_metrics(q, g, dense, chunk_size=(6, 20))
    c = retrieval_metrics(q, g, lists, chunk_size=(6, 20))
    d = retrieval_metrics(q, g, dense.numpy())
    for name in a:
        assert a[name] == pytest.approx(b[name], abs=1e-12)
        assert a[name] == pytest.approx(c[name], abs=1e-12)
        assert a[name] == pytest.approx(d[name], abs=1e-12)


def test_same_class_many_positives_matches_torchmetrics():
    gen = torch.Generator().manual_seed(26)
    q, g = torch.randn(20, 8, generator=gen).double(), torch.randn(300, 8, generator=gen).double()
    ql, gl = torch.randint(0, 3, (20,), generator=gen), torch.randint(0, 3, (300,), generator=gen)
    got = retrieval_metrics(q, g, relevance_from_labels(ql, gl), ks=(1, 10, 100))  # ~100 positives: sort
    lists = [(gl == ql[i]).nonzero().flatten().tolist() for i in range(20)]
    ref = torchmetrics_reference(scores_matrix(q, g, "cosine"), lists, (1, 10, 100))
    for name, value in ref.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


def test_five_captions_per_image_via_labels():
    gen = torch.Generator().manual_seed(27)
    images = torch.randn(12, 8, generator=gen)
    caption_image = torch.arange(12).repeat_interleave(5)
    captions = images[caption_image] + 0.3 * torch.randn(60, 8, generator=gen)
    i2t = retrieval_metrics(images, captions, relevance_from_labels(torch.arange(12), caption_image))
    t2i = retrieval_metrics(captions, images, caption_image)
    assert i2t["hit@1"] == 1.0
    assert i2t["recall@5"] == pytest.approx(1.0)
    assert t2i["hit@1"] == 1.0


def test_hit_at_k_consistent_with_topk():
    gen = torch.Generator().manual_seed(28)
    q, g = torch.randn(50, 8, generator=gen).double(), torch.randn(300, 8, generator=gen).double()
    target = torch.randint(0, 300, (50,), generator=gen)
    m = retrieval_metrics(q, g, target, ks=(1, 5))
    _, idx = topk(q, g, 5)
    assert m["hit@5"] == pytest.approx(float((idx == target[:, None]).any(1).double().mean()))
    assert m["hit@1"] == pytest.approx(float((idx[:, 0] == target).double().mean()))


@pytest.mark.parametrize("metric", ["cosine", "magnitude"])
def test_topk_metrics_match_torchmetrics(metric):
    gen = torch.Generator().manual_seed(29)
    q, g = torch.randn(40, 8, generator=gen).double(), torch.randn(200, 8, generator=gen).double()
    mags = torch.rand(200, generator=gen) + 0.5 if metric == "magnitude" else None
    ql, gl = torch.randint(0, 4, (40,), generator=gen), torch.randint(0, 4, (200,), generator=gen)
    lists = [(gl == ql[i]).nonzero().flatten().tolist() for i in range(40)]  # ~50 positives each
    ks = (1, 5, 20)
    ref = torchmetrics_reference(scores_matrix(q, g, "cosine", mags), lists, ks)
    for relevance in (relevance_from_labels(ql, gl), lists):
        got = topk_metrics(q, g, relevance, ks=ks, gallery_magnitudes=mags, max_memory_mb=0.01)
        assert set(got) == {f"{n}@{k}" for n in ("hit", "recall", "precision", "ndcg") for k in ks}
        for name, value in got.items():
            assert value == pytest.approx(ref[name], abs=1e-6), name
    single = torch.randint(0, 200, (40,), generator=gen)  # one positive: equal to the rank metrics
    full = retrieval_metrics(q, g, single, ks=ks)
    for name, value in topk_metrics(q, g, single, ks=ks).items():
        assert value == pytest.approx(full[name], abs=1e-12), name


def test_topk_metrics_faiss_backend_identical():
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(30)
    q, g = torch.randn(30, 16, generator=gen), torch.randn(500, 16, generator=gen)
    g[250:] = g[:250]  # duplicated rows: exact ties, settled by index in both backends
    target = torch.randint(0, 500, (30,), generator=gen)
    assert topk_metrics(q, g, target, backend="faiss") == topk_metrics(q, g, target)


def test_metrics_from_ranks_directly():
    ranks = torch.tensor([[0, 2, 99], [4, 99, 99]])
    counts = torch.tensor([2, 1])
    m = metrics_from_ranks(ranks, counts, ks=[1, 3])
    assert m["hit@1"].tolist() == [1.0, 0.0]
    assert m["recall@3"].tolist() == [1.0, 0.0]
    assert m["ap"].tolist() == pytest.approx([(1 + 2 / 3) / 2, 1 / 5])
    assert m["first_rank"].tolist() == [1.0, 5.0]


def test_query_without_positive_is_an_error():
    q, g = torch.randn(3, 4), torch.randn(10, 4)
    with pytest.raises(ValueError, match="no positive"):
        retrieval_metrics(q, g, [[1], [], [2]])
    with pytest.raises(ValueError, match="no positive"):
        retrieval_metrics(q, g, torch.zeros(3, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="no positive"):
        retrieval_metrics(
            q, g, relevance_from_labels(torch.tensor([0, 1, 9]), torch.zeros(10, dtype=torch.long))
        )


def test_as_relevance_padded_and_mask():
    rel = as_relevance([[3, 1], [0], [2, 2, 4]], 3, 5)
    assert rel.padded(0, 3).tolist() == [[1, 3], [0, -1], [2, 4]]
    assert rel.mask(1, 3).tolist() == [[True, False, False, False, False], [False, False, True, False, True]]
    assert rel.counts(0, 3).tolist() == [2, 1, 2]
