"""FAISS backend: identical to the torch backend, approximate search reports its recall, clear errors."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
import torch

from mmgeom.retrieval import approximate_topk, topk

faiss = pytest.importorskip("faiss")


@pytest.mark.parametrize(
    ("n_q", "n_g", "d", "k", "chunk"),
    [(37, 101, 8, 5, 16), (60, 2000, 32, 10, None), (10, 300, 5, 300, (4, 64))],
)
@pytest.mark.parametrize("metric", ["cosine", "dot", "magnitude"])
def test_faiss_backend_identical_to_torch(n_q, n_g, d, k, chunk, metric):
    gen = torch.Generator().manual_seed(n_g + k)
    q, g = torch.randn(n_q, d, generator=gen), torch.randn(n_g, d, generator=gen)
    mags = torch.rand(n_g, generator=gen) + 0.5 if metric == "magnitude" else None
    m = "cosine" if metric == "magnitude" else metric
    s_t, i_t = topk(q, g, k, chunk_size=chunk, metric=m, gallery_magnitudes=mags)
    s_f, i_f = topk(q, g, k, chunk_size=chunk, metric=m, gallery_magnitudes=mags, backend="faiss")
    # bit-identical by design: both backends only propose candidates; the final scores come from the
    # same exact float64 rescoring of the same rows (rescore.exact_scores)
    assert torch.equal(i_t, i_f)
    assert torch.equal(s_t, s_f)


def test_faiss_backend_ties_in_index_order():
    gen = torch.Generator().manual_seed(11)
    base = torch.randn(30, 6, generator=gen)
    g = torch.cat([base] * 4)  # every row four times, 30 apart
    q = torch.randn(12, 6, generator=gen)
    s_t, i_t = topk(q, g, 12, chunk_size=(5, 37))
    s_f, i_f = topk(q, g, 12, chunk_size=(5, 37), backend="faiss")
    assert torch.equal(i_t, i_f)
    assert torch.equal(s_t, s_f)
    first = i_f[:, 0] % 30
    assert torch.equal(i_f[:, :4], first[:, None] + torch.tensor([0, 30, 60, 90]))


def test_faiss_backend_matches_direct_index_flat_ip():
    gen = np.random.default_rng(12)
    q = gen.standard_normal((25, 16)).astype(np.float32)
    g = gen.standard_normal((500, 16)).astype(np.float32)
    index = faiss.IndexFlatIP(16)
    index.add(g)
    ref_v, ref = index.search(q, 5)
    _, idx = topk(q, g, 5, metric="dot", backend="faiss")
    # FAISS scores in float32 (its own kernel), mmgeom rescores exactly: indices must agree wherever
    # FAISS's top-5 scores are not within float32 rounding of each other; the scores always.
    exact = q.astype(np.float64) @ g.astype(np.float64).T
    np.testing.assert_allclose(np.take_along_axis(exact, idx.numpy(), 1), ref_v, atol=1e-4, rtol=0)
    gaps = np.abs(np.diff(ref_v, axis=1)) > 1e-4
    clear = np.concatenate([gaps[:, :1], gaps[:, :-1] & gaps[:, 1:], gaps[:, -1:]], axis=1)
    assert np.array_equal(idx.numpy()[clear], ref[clear])


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_search_reports_recall(kind):
    gen = torch.Generator().manual_seed(13)
    g = torch.randn(3000, 16, generator=gen)
    q = g[:200] + 0.05 * torch.randn(200, 16, generator=gen)
    res = approximate_topk(q, g, 10, index=kind, recall_queries=200)
    assert res.indices.shape == res.scores.shape == (200, 10)
    assert res.recall_queries == 200
    _, exact = topk(q, g, 10)
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(res.indices, exact, strict=True))
    assert res.recall == pytest.approx(hits / 2000)
    assert 0.5 < res.recall <= 1.0


def test_missing_faiss_gives_install_command(monkeypatch):
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match=r"pip install 'mmgeom\[faiss\]'"):
        topk(torch.randn(3, 4), torch.randn(10, 4), 2, backend="faiss")
