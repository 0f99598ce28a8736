"""Exact chunked top-k against dense references, naive loops and the documented tie rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmgeom.retrieval import _select as sel
from mmgeom.retrieval import topk
from mmgeom.retrieval._inputs import Embeddings


def dense_scores(q: torch.Tensor, g: torch.Tensor, metric: str, mags: torch.Tensor | None = None):
    """float64 score matrix straight from the definition."""
    q, g = q.double(), g.double()
    if metric == "cosine":
        q = q / q.norm(dim=1, keepdim=True)
        g = g / g.norm(dim=1, keepdim=True)
    s = q @ g.T
    if mags is not None:
        s = s * mags.double()[None, :]
    return s


def pairwise_scores(q: torch.Tensor, g: torch.Tensor, metric: str) -> torch.Tensor:
    """float64 scores, each pair reduced on its own (no GEMM): identical rows give identical scores
    wherever they sit, on any CPU. ``q @ g.T`` does not promise that (a row's rounding may depend on its
    place in a BLAS block), so a tie-rule reference with duplicated rows must not use it."""
    q, g = q.double(), g.double()
    if metric == "cosine":
        q = q / q.norm(dim=1, keepdim=True)
        g = g / g.norm(dim=1, keepdim=True)
    return torch.stack([(g * row).sum(dim=1) for row in q])


def assert_same_ranking(idx: torch.Tensor, full: torch.Tensor, k: int, tol: float) -> None:
    """``idx`` is the top-``k`` of ``full`` (``(N_q, N_g)`` reference scores from another code path).

    Where the reference has no near-tie (two scores within ``tol``: the rounding of a different kernel
    could swap them) the index must match exactly; everywhere, the returned items' reference scores must
    equal the reference top-k scores within ``tol``.
    """
    ref_v, ref_i = torch.topk(full, k, dim=1)
    torch.testing.assert_close(full.gather(1, idx), ref_v, atol=tol, rtol=0)
    for i in range(full.shape[0]):
        for pos in range(k):
            near = int(((full[i] - ref_v[i, pos]).abs() <= tol).sum())
            if near == 1:
                assert int(idx[i, pos]) == int(ref_i[i, pos]), (i, pos)


def reference_topk(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: sort by (score desc, index asc) with numpy's lexsort — the documented tie rule."""
    s = scores.numpy()
    idx = np.stack([np.lexsort((np.arange(s.shape[1]), -row))[:k] for row in s])
    return np.take_along_axis(s, idx, 1), idx


CASES = [
    # (N_q, N_g, D, k, chunk_size)
    (37, 101, 8, 5, 16),  # ragged last chunks on both sides
    (50, 1000, 16, 10, (7, 100)),
    (64, 700, 12, 1, (64, 96)),
    (200, 3000, 32, 10, None),  # automatic chunks
    (9, 40, 4, 40, 13),  # k = N_g
    (5, 333, 6, 7, (2, 333)),
]


@pytest.mark.parametrize(("n_q", "n_g", "d", "k", "chunk"), CASES)
@pytest.mark.parametrize("metric", ["cosine", "dot", "magnitude"])
def test_chunked_equals_dense_topk(n_q, n_g, d, k, chunk, metric):
    gen = torch.Generator().manual_seed(n_q * 1000 + n_g)
    q = torch.randn(n_q, d, generator=gen)
    g = torch.randn(n_g, d, generator=gen)
    mags = torch.rand(n_g, generator=gen) * 3 if metric == "magnitude" else None
    m = "cosine" if metric == "magnitude" else metric
    scores, idx = topk(q, g, k, chunk_size=chunk, metric=m, gallery_magnitudes=mags)
    assert scores.shape == idx.shape == (n_q, k)
    assert scores.dtype == torch.float32 and idx.dtype == torch.int64
    full = dense_scores(q, g, m, mags)
    ref_v, _ = torch.topk(full, k, dim=1)  # dense reference: another kernel (GEMM), so near-ties may swap
    assert_same_ranking(idx, full, k, tol=1e-12)
    torch.testing.assert_close(scores.double(), ref_v, atol=2e-7, rtol=1e-6)


@pytest.mark.parametrize("chunk", [None, 8, (3, 50)])
def test_float64_inputs_stay_float64(chunk):
    gen = torch.Generator().manual_seed(1)
    q, g = torch.randn(20, 10, generator=gen).double(), torch.randn(300, 10, generator=gen).double()
    scores, idx = topk(q, g, 6, chunk_size=chunk, metric="dot")
    ref_v, _ = torch.topk(q @ g.T, 6, dim=1)
    assert scores.dtype == torch.float64
    assert_same_ranking(idx, q @ g.T, 6, tol=1e-12)
    torch.testing.assert_close(scores, ref_v, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_accumulate_in_float32(dtype):
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(30, 64, generator=gen).to(dtype)
    g = torch.randn(500, 64, generator=gen).to(dtype)
    scores, idx = topk(q, g, 5, chunk_size=(8, 64))
    assert scores.dtype == torch.float32
    full = dense_scores(q, g, "cosine")  # the half values, upcast exactly
    ref_v, _ = torch.topk(full, 5, dim=1)
    assert_same_ranking(idx, full, 5, tol=1e-12)
    torch.testing.assert_close(scores.double(), ref_v, atol=2e-7, rtol=1e-6)


def test_numpy_and_memmap_gallery_streamed_in_chunks(tmp_path, monkeypatch):
    gen = np.random.default_rng(3)
    g = gen.standard_normal((1000, 16)).astype(np.float16)
    path = tmp_path / "gallery.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=g.shape)
    mm[:] = g
    mm.flush()
    ro = np.memmap(path, dtype=np.float16, mode="r", shape=g.shape)
    q = gen.standard_normal((40, 16)).astype(np.float32)

    seen: list[int] = []
    original = Embeddings.chunk

    def spy(self, start, stop, *, check=True):
        if self.name == "gallery":
            seen.append(stop - start)
        return original(self, start, stop, check=check)

    monkeypatch.setattr(Embeddings, "chunk", spy)
    s_mm, i_mm = topk(q, ro, 10, chunk_size=(16, 128))
    assert max(seen) <= 128  # never the whole gallery at once
    s_t, i_t = topk(torch.from_numpy(q), torch.from_numpy(g), 10, chunk_size=(16, 128))
    # Exact by construction: the same float16 values, the same chunks, the same kernels; only where the
    # rows are read from differs.
    assert torch.equal(i_mm, i_t)
    assert torch.equal(s_mm, s_t)


def test_duplicate_gallery_rows_come_out_in_index_order():
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(20, 8, generator=gen)
    g = torch.cat([base, base, base])  # row j == row j + 20 == row j + 40, in different chunks
    q = base[:6] + 0.01 * torch.randn(6, 8, generator=gen)
    scores, idx = topk(q, g, 6, chunk_size=(4, 7))
    for i in range(6):
        best = int(idx[i, 0]) % 20
        assert idx[i, :3].tolist() == [best, best + 20, best + 40]
        assert scores[i, 0] == scores[i, 1] == scores[i, 2]
    # and the full result is the lexsort reference on exact scores (pairwise: duplicates tie exactly)
    _, ref_i = reference_topk(pairwise_scores(q, g, "cosine"), 6)
    assert np.array_equal(idx.numpy(), ref_i)


def test_all_equal_scores_give_the_lowest_indices():
    g = torch.ones(500, 4)
    q = torch.randn(10, 4).abs() + 0.1
    for backend_chunk in [(3, 64), (10, 500), (1, 7)]:
        scores, idx = topk(q, g, 5, chunk_size=backend_chunk, metric="dot")
        assert idx.tolist() == [[0, 1, 2, 3, 4]] * 10
        assert bool((scores == scores[:, :1]).all())
    # a tiny budget re-searches the tied queries a few rows and gallery rows at a time
    _, idx = topk(q, g, 5, metric="dot", max_memory_mb=0.05)
    assert idx.tolist() == [[0, 1, 2, 3, 4]] * 10


def test_exactly_representable_ties_across_blocks():
    # Small integers: every dot product is exact, so distinct rows tie exactly.
    gen = torch.Generator().manual_seed(5)
    g = torch.randint(-3, 4, (400, 5), generator=gen).float()
    q = torch.randint(-3, 4, (25, 5), generator=gen).float()
    full = (q.double() @ g.double().T).numpy()
    ref_v, ref_i = reference_topk(torch.from_numpy(full), 30)
    for chunk in [(5, 32), (25, 400), (7, 33)]:
        scores, idx = topk(q, g, 30, chunk_size=chunk, metric="dot")
        assert np.array_equal(idx.numpy(), ref_i)
        assert np.array_equal(scores.double().numpy(), ref_v)


def test_magnitude_scoring_equals_naive_loop():
    gen = torch.Generator().manual_seed(6)
    q = torch.randn(7, 5, generator=gen) * 3
    g = torch.randn(60, 5, generator=gen)
    r = torch.rand(60, generator=gen) * 2
    scores, idx = topk(q, g, 8, chunk_size=(3, 16), gallery_magnitudes=r)
    for i in range(q.shape[0]):
        qi = [float(x) for x in q[i]]
        qn = math.sqrt(sum(x * x for x in qi))
        naive = []
        for d in range(g.shape[0]):
            gd = [float(x) for x in g[d]]
            gn = math.sqrt(sum(x * x for x in gd))
            naive.append(float(r[d]) * sum(a / qn * b / gn for a, b in zip(qi, gd, strict=True)))
        order = sorted(range(len(naive)), key=lambda d: (-naive[d], d))[:8]
        assert idx[i].tolist() == order
        assert scores[i].tolist() == pytest.approx([naive[d] for d in order], abs=1e-6)


finite = st.floats(-8, 8, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    g=arrays(np.float64, st.tuples(st.integers(2, 25), st.just(4)), elements=finite),
    q=arrays(np.float64, (4,), elements=finite),
    mags=st.lists(st.floats(0, 5, allow_nan=False, width=64), min_size=25, max_size=25),
    scale=st.floats(1e-3, 1e3, allow_nan=False),
    k=st.integers(1, 25),
)
def test_query_magnitude_never_changes_magnitude_ranking(g, q, mags, scale, k):
    n = g.shape[0]
    k = min(k, n)
    assume(np.abs(q).max() > 1e-3 and (np.abs(g).max(axis=1) > 1e-3).all())
    r = torch.tensor(mags[:n], dtype=torch.float64)
    gt, qt = torch.from_numpy(g), torch.from_numpy(q)[None, :]
    s1, i1 = topk(qt, gt, k, gallery_magnitudes=r, chunk_size=(1, 3))
    s2, i2 = topk(qt * scale, gt, k, gallery_magnitudes=r, chunk_size=(1, 3))
    ref = dense_scores(qt, gt, "cosine", r)[0]
    # Same ranking: the same score sequence, and the same item wherever its score is not (nearly) tied.
    torch.testing.assert_close(s1, s2, atol=1e-9, rtol=0)
    for pos in range(k):
        near = int(((ref - ref[i1[0, pos]]).abs() < 1e-9).sum())
        if near == 1:
            assert int(i1[0, pos]) == int(i2[0, pos])


def test_merge_block_sparse_and_dense_paths_agree_with_reference():
    gen = torch.Generator().manual_seed(7)
    r, c, group = 16, 9, 8
    run_v = torch.full((r, c), float("-inf"))
    run_i = (sel.SENTINEL + torch.arange(c)).expand(r, c).clone()
    blocks = [torch.randn(r, 203, generator=gen) for _ in range(5)]
    # a block of rising scores forces the dense path after warm-up; a constant block forces group ties
    blocks.append(torch.linspace(3, 4, 203).expand(r, 203).clone())
    blocks.append(torch.full((r, 203), 3.5))
    offset = 0
    for b in blocks:
        run_v, run_i = sel.merge_block(b, offset, run_v, run_i, c, group=group)
        offset += b.shape[1]
    full = torch.cat(blocks, 1).double()
    ref_v, ref_i = reference_topk(full, c)
    got_v, got_i = sel.order_by_score_then_index(run_v, run_i)
    # Exact by construction: merging only selects and moves the given float32 values (no arithmetic).
    assert np.array_equal(got_i.numpy(), ref_i)
    assert np.array_equal(got_v.double().numpy(), ref_v)


def test_progress_bar_gives_the_same_result():
    q, g = torch.randn(4, 3), torch.randn(50, 3)
    # Exact by construction: the same call with the same chunks; the bar only reports progress.
    assert torch.equal(topk(q, g, 2, chunk_size=8, progress=True)[1], topk(q, g, 2, chunk_size=8)[1])


def test_default_budget_on_wide_gallery_uses_several_chunks():
    gen = torch.Generator().manual_seed(8)
    q, g = torch.randn(3, 64, generator=gen), torch.randn(3000, 64, generator=gen)
    s_small, i_small = topk(q, g, 4, max_memory_mb=0.5)  # forces ~8-row gallery chunks... and more
    s_big, i_big = topk(q, g, 4)
    # The library's guarantee under test: final scores come from exact float64 rescoring, one reduction
    # per pair done the same way whatever the chunking (rescore.exact_scores), so they are bit-identical.
    assert torch.equal(i_small, i_big)
    assert torch.equal(s_small, s_big)


def test_rescoring_blocks_and_chunks_do_not_change_the_result(monkeypatch):
    from mmgeom.retrieval import rescore

    gen = torch.Generator().manual_seed(9)
    q, g = torch.randn(40, 12, generator=gen), torch.randn(300, 12, generator=gen)
    g[150:] = g[:150]  # duplicated rows: exact ties settled by index
    mags = torch.rand(300, generator=gen) + 0.5
    for kwargs in ({}, {"gallery_magnitudes": mags}, {"metric": "dot"}):
        want = topk(q, g, 7, **kwargs)
        # pairwise (not GEMM): the duplicated rows must tie exactly in the reference on any CPU
        dense = pairwise_scores(q, g, kwargs.get("metric", "cosine"))
        if kwargs.get("gallery_magnitudes") is not None:
            dense = dense * kwargs["gallery_magnitudes"].double()[None, :]
        _, ref_i = reference_topk(dense, 7)
        assert np.array_equal(want[1].numpy(), ref_i)
        with monkeypatch.context() as m:
            m.setattr(rescore, "ORDER_ROWS", 6)  # ragged ordering blocks
            m.setattr(rescore, "RESCORE_CHUNK_BYTES", 1)  # one query per rescoring chunk
            for gallery in (g, g.numpy()):  # tensor: gathered into a buffer; numpy: read row by row
                got = topk(q, gallery, 7, **kwargs)
                # bit-identical: the guarantee under test (exact rescoring independent of blocking)
                assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize(
    "env",
    [{"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}],
    ids=["aten-default", "aten-avx2-mkl-avx2"],
)
def test_references_hold_under_other_cpu_kernels(env):
    """The tie and near-tie tests above rerun in a subprocess with other torch/MKL kernels, so one CPU
    exercises several code paths (a test that only passes on one kernel would fail here)."""
    import os
    import subprocess
    import sys

    tests = "duplicate or rescoring_blocks or chunked_equals_dense or float64_inputs or half_precision"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", tests],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
