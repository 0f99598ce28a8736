"""The query-parallel engines of exact retrieval, the count kernel, and the per-CPU tuning cache.

Every fast path is checked against an independent path: the fused top-k against the blocked engine
(explicit ``chunk_size``) and a float64 brute force, the streamed ranks against the chunked rank path
and a plain loop, the count kernel against a naive loop.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from mmgeom.retrieval import _native, _ties, _tune, retrieval_metrics, topk, tune
from mmgeom.retrieval._fused import fused_candidates
from mmgeom.retrieval._inputs import Embeddings, Scoring, check_scoring, prepare_query
from mmgeom.retrieval._plan import Plan
from mmgeom.retrieval.ranks import iter_positive_ranks
from mmgeom.retrieval.relevance import as_relevance, relevance_from_labels

pytestmark = pytest.mark.skipif(
    not _native.available(torch.float32, torch.device("cpu")),
    reason="needs the native kernels (a C compiler)",
)

PLANS = [
    Plan(2, 7, 33, 50),
    Plan(3, 16, 64, 128),
    Plan(1, 1000, 4096, 16384),
    Plan(2, 5, 5, 5),
    Plan(2, 7, 33, 50, gemm="numpy"),
    Plan(1, 16, 64, 128, gemm="numpy"),
]


def data(n_q: int = 40, n_g: int = 301, d: int = 24, dtype: torch.dtype = torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n_q, d, generator=gen, dtype=dtype)
    g = torch.randn(n_g, d, generator=gen, dtype=dtype)
    g[200:206] = g[17]  # exact duplicates: ties settled by index
    g[250] = g[17] * (1 + 1e-7)  # one ulp-scale neighbour
    q[:5] = g[17]
    return q, g


def brute_topk(q: torch.Tensor, g: torch.Tensor, k: int, metric: str) -> torch.Tensor:
    """Indices by the documented key: float64 score rounded to float32, ties by lower index."""
    q64, g64 = q.double(), g.double()
    if metric == "cosine":
        q64, g64 = q64 / q64.norm(dim=1, keepdim=True), g64 / g64.norm(dim=1, keepdim=True)
    s = (q64 @ g64.T).to(q.dtype if q.dtype == torch.float64 else torch.float32)
    return torch.sort(-s, dim=1, stable=True).indices[:, :k]


@pytest.mark.parametrize("plan", PLANS, ids=str)
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_topk_equals_blocked_engine_and_brute_force(
    plan: Plan, metric: str, dtype: torch.dtype
) -> None:
    q, g = data(dtype=dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mmgeom.retrieval.search.plan_for", lambda flops, dt: plan)
        fused_s, fused_i = topk(q, g, 9, metric=metric)
    blocked_s, blocked_i = topk(q, g, 9, metric=metric, chunk_size=(8, 50))
    assert torch.equal(fused_i, blocked_i)
    assert torch.equal(fused_s, blocked_s)
    if dtype == torch.float32:
        assert torch.equal(fused_i, brute_topk(q, g, 9, metric))
    else:  # float64 keys of rows with the same direction differ in the last bit between formulas
        q64, g64 = q, g
        if metric == "cosine":
            q64, g64 = q / q.norm(dim=1, keepdim=True), g / g.norm(dim=1, keepdim=True)
        want = torch.topk(q64 @ g64.T, 9).values
        torch.testing.assert_close(fused_s, want, rtol=0, atol=1e-12)


def test_fused_candidates_hold_the_float32_top_c() -> None:
    """The fast pass alone: each row's candidates are the top-c of the plain float32 score matrix."""
    q, g = data(n_q=23, n_g=500, d=16)
    cands = fused_candidates(q, Embeddings(g, "gallery"), 12, Scoring("dot", None), Plan(2, 4, 37, 90))
    full = q @ g.T
    for i in range(q.shape[0]):
        kth = torch.topk(full[i], 12).values[-1]
        assert set(cands.indices[i].tolist()) >= {j for j in range(500) if full[i, j] > kth + 1e-5}
        assert float(cands.values[i].min()) >= float(kth) - 1e-5


def test_magnitude_scoring_and_thread_count_restored() -> None:
    q, g = data()
    r = torch.rand(g.shape[0]) + 0.5
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mmgeom.retrieval.search.plan_for", lambda flops, dt: Plan(2, 6, 40, 100))
        s, i = topk(q, g, 5, gallery_magnitudes=r)
    assert torch.get_num_threads() == threads
    s2, i2 = topk(q, g, 5, gallery_magnitudes=r, chunk_size=(16, 64))
    assert torch.equal(i, i2) and torch.equal(s, s2)


def count_reference(block: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, set]:
    """Plain loops: entries above each band, and the (row, column, p) triples inside a band."""
    rows, width = block.shape
    above = torch.zeros(lo.shape, dtype=torch.long)
    band = set()
    for r in range(rows):
        for p in range(lo.shape[1]):
            if hi[r, p] == float("inf"):
                continue
            for j in range(width):
                x = float(block[r, j])
                if x > float(hi[r, p]):
                    above[r, p] += 1
                elif x >= float(lo[r, p]):
                    band.add((r, j, p))
    return above, band


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_count_kernel_against_a_plain_loop(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    block = torch.randn(7, 53, generator=gen, dtype=dtype)
    block[2, 10:20] = 0.25
    centre = torch.randn(7, 3, generator=gen, dtype=dtype)
    centre[2, 0] = 0.25
    lo, hi = centre - 0.1, centre + 0.1
    lo[4, 2] = hi[4, 2] = float("inf")  # padding
    above = torch.zeros(7, 3, dtype=torch.long)
    band = torch.empty(400, 3, dtype=torch.long)
    n = _native.count_rows(block, lo.contiguous(), hi.contiguous(), above, band)
    want_above, want_band = count_reference(block, lo, hi)
    assert torch.equal(above, want_above)
    assert n == len(want_band) and {tuple(t) for t in band[:n].tolist()} == want_band
    # a buffer too small reports the total and writes only what fits
    small = torch.empty(2, 3, dtype=torch.long)
    assert _native.count_rows(block, lo.contiguous(), hi.contiguous(), torch.zeros_like(above), small) == n


def positive_ranks(
    q: torch.Tensor, g: torch.Tensor, rel: object, chunks: tuple[int, int] | None
) -> torch.Tensor:
    q_src, g_src = Embeddings(q, "query"), Embeddings(g, "gallery")
    scoring = check_scoring("cosine", None, g_src.n)
    relevance = as_relevance(rel, q_src.n, g_src.n)
    qq = prepare_query(q_src, scoring)
    parts = [r for _, _, r, _ in iter_positive_ranks(q_src, qq, g_src, relevance, scoring, chunks, 1 << 26)]
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=g.shape[0]) for p in parts])


def loop_ranks(q: torch.Tensor, g: torch.Tensor, lists: list[list[int]]) -> torch.Tensor:
    """Rank of each positive by the documented key, one query at a time."""
    order = brute_topk(q, g, g.shape[0], "cosine")
    width = max(len(p) for p in lists)
    out = torch.full((q.shape[0], width), g.shape[0], dtype=torch.long)
    for i, positives in enumerate(lists):
        where = {int(j): r for r, j in enumerate(order[i].tolist())}
        for t, p in enumerate(positives):
            out[i, t] = where[p]
    return out


@pytest.mark.parametrize("plan", PLANS, ids=str)
def test_streamed_ranks_equal_chunked_ranks_and_a_loop(plan: Plan) -> None:
    q, g = data()
    lists = [sorted({i % 301, 17, (7 * i) % 301, 200 + i % 6}) for i in range(q.shape[0])]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mmgeom.retrieval.ranks.plan_for", lambda flops, dt: plan)
        fused = positive_ranks(q, g, lists, None)
    chunked = positive_ranks(q, g, lists, (8, 64))
    assert torch.equal(fused, chunked)
    assert torch.equal(fused, loop_ranks(q, g, lists))


def test_streamed_ranks_band_overflow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """More band entries than the kernel's buffer: the block is settled with tensor operations."""
    q, g = data()
    g[100:180] = g[17]  # 80 duplicates of the positive: a band of 80 entries per query
    lists = [[17]] * q.shape[0]
    monkeypatch.setattr("mmgeom.retrieval._fused_ranks.BAND_CAPACITY", 4)
    monkeypatch.setattr("mmgeom.retrieval._fused_ranks._local", threading.local())  # fresh buffers
    monkeypatch.setattr("mmgeom.retrieval.ranks.plan_for", lambda flops, dt: Plan(2, 8, 64, 128))
    assert torch.equal(positive_ranks(q, g, lists, None), loop_ranks(q, g, lists))


@pytest.mark.parametrize("native", [True, False], ids=["native-settle", "tensor-settle"])
@pytest.mark.parametrize("settle_pairs", [1, 10**9])
def test_streamed_ranks_settle_blocks_at_once_or_together(
    settle_pairs: int, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Band entries settled block by block (1) or all of a task's chunk together (10**9), by the native
    kernel or by tensor operations, with and without the query rows widened to float64: the same ranks
    as the chunked path and a loop."""
    from mmgeom.retrieval import _fused_ranks

    q, g = data()
    g[100:140] = g[17]  # a band of 40 duplicates for the positive 17: many entries in some blocks
    lists = [sorted({17, i % 301, (5 * i) % 301}) for i in range(q.shape[0])]
    monkeypatch.setattr(_fused_ranks, "SETTLE_PAIRS", settle_pairs)
    monkeypatch.setattr(_fused_ranks, "NATIVE_SETTLE", native)
    monkeypatch.setattr("mmgeom.retrieval.ranks.plan_for", lambda flops, dt: Plan(2, 8, 64, 128))
    widened: list[bool] = []
    if native:
        real_settle = _fused_ranks.native_settle

        def spy_settle(*args: Any) -> torch.Tensor:
            widened.append(args[4] is not None)
            return real_settle(*args)

        monkeypatch.setattr(_fused_ranks, "native_settle", spy_settle)
    else:
        real = _ties.ExactKeys.native_keys

        def spy(self: _ties.ExactKeys, rows: torch.Tensor, cols: torch.Tensor, wide: Any = None) -> Any:
            widened.append(wide is not None)
            return real(self, rows, cols, wide)

        monkeypatch.setattr(_ties.ExactKeys, "native_keys", spy)
    fused = positive_ranks(q, g, lists, None)
    assert any(widened)
    assert torch.equal(fused, positive_ranks(q, g, lists, (8, 64)))
    assert torch.equal(fused, loop_ranks(q, g, lists))


def test_metrics_with_labels_match_the_chunked_path() -> None:
    q, g = data(n_q=60, n_g=400)
    gen = torch.Generator().manual_seed(5)
    rel = relevance_from_labels(
        torch.randint(0, 20, (60,), generator=gen), torch.randint(0, 20, (400,), generator=gen)
    )
    fused = retrieval_metrics(q, g, rel)
    chunked = retrieval_metrics(q, g, rel, chunk_size=(16, 100))
    assert fused.keys() == chunked.keys()
    for name in fused:
        assert fused[name] == pytest.approx(chunked[name], rel=1e-12, abs=1e-15), name


# ------------------------------------------------------------------------------------------- tuning


def test_tuning_disabled_gives_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMGEOM_TUNE", "0")
    monkeypatch.setattr(_tune, "measure", lambda *a, **k: pytest.fail("measured although disabled"))
    plan = _tune.plan_for(1e15, torch.float32)
    assert plan.source == "default" and (plan.query_chunk, plan.gallery_chunk) == _tune.DEFAULT_SHAPE


def test_small_searches_do_not_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tune, "measure", lambda *a, **k: pytest.fail("measured a small search"))
    assert _tune.plan_for(_tune.MIN_TUNE_FLOPS / 2, torch.float32).source == "default"


def test_measured_plan_is_cached_and_reread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_measure(threads: int, dtype: torch.dtype) -> Plan:
        calls.append(threads)
        return Plan(threads, 256, 2048, faiss_speedup=0.5, source="measured")

    monkeypatch.setattr(_tune, "measure", fake_measure)
    first = _tune.plan_for(1e15, torch.float32)
    second = _tune.plan_for(1e15, torch.float32)
    assert first.source == "measured" and second.source == "cached" and len(calls) == 1
    assert (second.query_chunk, second.gallery_chunk, second.faiss_speedup) == (256, 2048, 0.5)
    path = _tune.cache_file(torch.float32, torch.get_num_threads())
    assert json.loads(path.read_text())["query_chunk"] == 256


@pytest.mark.parametrize(
    "content", ["{not json", '{"query_chunk": 0, "gallery_chunk": 5}', '{"gallery_chunk": 5}']
)
def test_malformed_cache_is_measured_again(
    content: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path))
    path = _tune.cache_file(torch.float32, torch.get_num_threads())
    path.parent.mkdir(parents=True)
    path.write_text(content)
    monkeypatch.setattr(_tune, "measure", lambda t, d: Plan(t, 128, 1024, source="measured"))
    with caplog.at_level(logging.WARNING):
        plan = _tune.plan_for(1e15, torch.float32)
    assert plan.source == "measured" and str(path) in caplog.text


def test_numpy_blas_is_pinned_to_one_thread_during_a_search_and_restored() -> None:
    from threadpoolctl import threadpool_info

    from mmgeom.retrieval._gemm import single_threaded

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before, torch_before = blas_threads(), torch.get_num_threads()
    with single_threaded("numpy"):
        assert all(n == 1 for n in blas_threads()) and torch.get_num_threads() == 1
    assert blas_threads() == before and torch.get_num_threads() == torch_before


def test_plan_fits_the_memory_budget() -> None:
    plan = Plan(4, 1024, 8192, 16384).fit(n_q=100_000, n_g=1_000_000, d=512, itemsize=4, budget=64 << 20)
    prepared = 3 * plan.prepare_chunk * 512 * 4
    blocks = plan.threads * plan.query_chunk * plan.gallery_chunk * 4
    assert prepared + blocks <= 64 << 20
    assert plan.gallery_chunk <= plan.prepare_chunk


def test_auto_uses_faiss_where_it_was_measured_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faiss")
    from mmgeom.retrieval import faiss_backend

    used = []
    real = faiss_backend.faiss_candidates
    monkeypatch.setattr(faiss_backend, "faiss_candidates", lambda *a: used.append(1) or real(*a))
    q, g = data()
    monkeypatch.setattr("mmgeom.retrieval.search.plan_for", lambda f, d: Plan(2, 8, 64, faiss_speedup=2.0))
    s, i = topk(q, g, 6, backend="auto")
    assert used == [1]
    monkeypatch.setattr("mmgeom.retrieval.search.plan_for", lambda f, d: Plan(2, 8, 64, faiss_speedup=0.5))
    s2, i2 = topk(q, g, 6, backend="auto")
    assert used == [1] and torch.equal(i, i2) and torch.equal(s, s2)


def test_tune_measures_and_reports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real measurement, shrunk: it returns one of the candidate shapes and caches it."""
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_tune, "CANDIDATES", ((16, 64), (32, 128)))
    real = _tune.measure
    monkeypatch.setattr(_tune, "measure", lambda t, d: real(t, d, d=16))
    out = tune()
    assert (out["query_chunk"], out["gallery_chunk"]) in {(16, 64), (32, 128)}
    assert out["gemm"] in ("torch", "numpy")
    assert out["backend_auto"] in ("torch", "faiss") and out["source"] == "measured"
    assert _tune.plan_for(1e15, torch.float32).source == "cached"


def test_rescoring_in_slices_equals_one_slice() -> None:
    """With two threads the candidates are rescored in one slice per thread; one thread: one slice."""
    q, g = data(n_q=300, n_g=500)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        s2, i2 = topk(q, g, 7)
        torch.set_num_threads(1)
        s1, i1 = topk(q, g, 7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(i1, i2) and torch.equal(s1, s2)
    assert torch.equal(i1, brute_topk(q, g, 7, "cosine"))


def test_without_the_native_kernels_nothing_is_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MMGEOM_NATIVE=0: no fused engine to time, so tune() reports the default instead of failing, and
    a large search under backend='auto' runs the blocked engine."""
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MMGEOM_NATIVE", "0")
    _native.reset()
    try:
        monkeypatch.setattr(_tune, "measure", lambda *a, **k: pytest.fail("measured without the kernels"))
        assert tune()["source"] == "default"
        assert _tune.plan_for(1e15, torch.float32).source == "default"
        q, g = data()
        s, i = topk(q, g, 5)
    finally:
        monkeypatch.delenv("MMGEOM_NATIVE")
        _native.reset()
    assert torch.equal(i, topk(q, g, 5)[1]) and torch.equal(s, topk(q, g, 5)[0])


def test_small_searches_take_the_blocked_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under MIN_FUSED_FLOPS the thread hand-offs would cost more than the GEMM: the blocked engine runs
    (identical results); at or above it, the fused one."""
    from mmgeom.retrieval import _fused, _plan

    calls = []
    real = _fused.fused_candidates
    monkeypatch.setattr(_fused, "fused_candidates", lambda *a: calls.append(1) or real(*a))
    q, g = data()
    flops = 2.0 * q.shape[0] * g.shape[0] * q.shape[1]
    monkeypatch.setattr(_plan, "MIN_FUSED_FLOPS", flops * 2)
    small = topk(q, g, 5)
    assert calls == []
    monkeypatch.setattr(_plan, "MIN_FUSED_FLOPS", flops)
    fused = topk(q, g, 5)
    assert calls == [1]
    assert torch.equal(small[1], fused[1]) and torch.equal(small[0], fused[0])


@pytest.mark.parametrize(
    ("n_q", "threads", "chunk"),
    [(10_000, 2, 2048), (10_000, 2, 512), (1, 2, 512), (3, 2, 512), (97, 3, 8), (64, 4, 1000)],
)
def test_plan_tasks_are_balanced_and_cover_every_query(n_q: int, threads: int, chunk: int) -> None:
    tasks = Plan(threads, chunk, 64).tasks(n_q)
    assert tasks[0][0] == 0 and tasks[-1][1] == n_q
    assert all(a < b and b == c for (a, b), (c, _) in itertools.pairwise(tasks))
    sizes = [b - a for a, b in tasks]
    assert max(sizes) <= chunk and max(sizes) - min(sizes) <= 1
    # a multiple of the thread count wherever there are enough queries: no thread is left a task more
    per_round = -(-n_q // (threads * chunk))
    assert len(tasks) == min(n_q, threads * per_round)
    if (n_q, threads, chunk) == (10_000, 2, 2048):
        assert len(tasks) == 6  # not five 2048-row tasks: one thread would run three


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_rescoring_by_native_keys_equals_exact_scores(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """topk's rescoring of float32 inputs in memory (native certified keys, in steps of KEY_ROWS
    queries) against the rescoring by ``exact_scores`` alone (the keys' definition), and against a
    rescoring where the certification is forced to fail on every pair (its fallback)."""
    from mmgeom.retrieval import _ties, search

    q, g = data(n_q=300, n_g=500)
    monkeypatch.setattr(search, "KEY_ROWS", 37)
    keyed = topk(q, g, 7, metric=metric)
    with monkeypatch.context() as mp:
        mp.setattr(_ties, "_float32_matrix", lambda x: None)  # no native path: exact_scores
        plain = topk(q, g, 7, metric=metric)
    with monkeypatch.context() as mp:
        mp.setattr(_ties, "BOUND_SCALE", 1e300)  # nothing certain: every key by exact_scores
        fallback = topk(q, g, 7, metric=metric)
    for s, i in (plain, fallback):
        assert torch.equal(i, keyed[1]) and torch.equal(s, keyed[0])
    assert torch.equal(keyed[1], brute_topk(q, g, 7, metric))
