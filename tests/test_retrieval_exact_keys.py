"""The native exact keys of (query, item) pairs: bit-identical to the keys of ``exact_scores``.

The key of a pair is defined as torch's float64 computation in :func:`mmgeom.retrieval.rescore.exact_scores`
rounded to float32. The native path sums in another order and certifies its rounding; these tests check
its keys bit for bit against that definition (random rows, duplicated rows, rows one ulp apart, every
scoring), the fallback for uncertain pairs, the kernel against a plain loop, and whole rank computations
against the chunked path and a plain-loop reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from mmgeom.retrieval import _native, _ties, retrieval_metrics
from mmgeom.retrieval._inputs import Embeddings, check_scoring, prepare_query
from mmgeom.retrieval._ties import ExactKeys, certified_float32
from mmgeom.retrieval.ranks import iter_positive_ranks
from mmgeom.retrieval.relevance import as_relevance

pytestmark = pytest.mark.skipif(
    not _native.available(torch.float32, torch.device("cpu")),
    reason="needs the native kernels (a C compiler)",
)

SCORINGS = ["dot", "cosine", "magnitude"]


def make_keys(q: object, g: object, scoring: str, seed: int = 0) -> ExactKeys:
    n_g = int(g.shape[0])  # type: ignore[attr-defined]
    mags = None
    if scoring == "magnitude":
        mags = torch.rand(n_g, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
        mags[:3] = 0.0  # zero magnitudes: keys of +-0
    metric = "dot" if scoring == "dot" else "cosine"
    return ExactKeys(
        Embeddings(q, "query"), Embeddings(g, "gallery"), check_scoring(metric, mags, n_g), torch.float32
    )


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int64)


def tricky_data(
    n_q: int = 30, n_g: int = 200, d: int = 67, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rows plus duplicated rows, rows one float32 ulp apart and queries equal to gallery rows."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n_q, d, generator=gen)
    g = torch.randn(n_g, d, generator=gen)
    g[100:110] = g[7]  # duplicates
    g[110] = torch.nextafter(g[7], torch.full_like(g[7], float("inf")))  # every entry one ulp up
    g[111] = g[7].clone()
    g[111, 5] = torch.nextafter(g[7, 5], torch.tensor(float("inf")))  # one entry one ulp up
    g[112] = -g[7]
    g[113, :] = 0.0
    g[113, 0] = 1.0  # a basis vector: exactly representable scores
    q[:4] = g[7]
    q[4] = -g[7]
    q[5] = torch.round(q[5] * 4)  # small integers: exact sums, exact ties
    g[114:120] = torch.round(g[114:120] * 4)
    return q, g


def all_pairs(n_q: int, n_g: int, shuffle_seed: int | None = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.arange(n_q).repeat_interleave(n_g)
    cols = torch.arange(n_g).repeat(n_q)
    if shuffle_seed is not None:  # unsorted rows: exercises the sort and the scatter back
        perm = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(shuffle_seed))
        rows, cols = rows[perm], cols[perm]
    return rows, cols


@pytest.mark.parametrize("scoring", SCORINGS)
@pytest.mark.parametrize("d", [1, 7, 16, 67, 512])
def test_native_keys_equal_torch_keys_bit_for_bit(scoring: str, d: int) -> None:
    q, g = (
        tricky_data(d=max(d, 1))
        if d >= 8
        else tuple(torch.randn(n, d, generator=torch.Generator().manual_seed(n)) for n in (20, 150))
    )
    keys = make_keys(q, g, scoring)
    assert keys.native is not None
    rows, cols = all_pairs(q.shape[0], g.shape[0])
    fast = keys(rows, cols)
    assert torch.equal(bits(fast), bits(keys.torch_keys(rows, cols)))
    by_col = torch.argsort(cols * q.shape[0] + rows)  # already in gallery order: no sort inside
    assert torch.equal(bits(keys(rows[by_col], cols[by_col])), bits(fast[by_col]))
    # the certification must not be vacuous: almost every pair is settled natively
    _, certain = keys.native_keys(rows, cols)
    assert float(certain.float().mean()) > 0.95


@pytest.mark.parametrize("scoring", SCORINGS)
def test_forced_uncertainty_takes_the_fallback_and_still_matches(
    scoring: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, g = tricky_data()
    keys = make_keys(q, g, scoring)
    rows, cols = all_pairs(q.shape[0], g.shape[0])
    want = keys.torch_keys(rows, cols)
    monkeypatch.setattr(_ties, "BOUND_SCALE", 1e30)
    _, certain = keys.native_keys(rows, cols)
    assert not bool(certain.any())  # every pair now goes through exact_scores
    calls: list[int] = []
    original = ExactKeys.torch_keys

    def counted(self: ExactKeys, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        calls.append(r.numel())
        return original(self, r, c)

    monkeypatch.setattr(ExactKeys, "torch_keys", counted)
    assert torch.equal(bits(keys(rows, cols)), bits(want))
    assert sum(calls) == rows.numel()


def test_certification_against_hand_picked_values() -> None:
    one = torch.tensor([1.0], dtype=torch.float64)
    half_ulp = 2.0**-24  # half a float32 ulp at 1.0 (upwards)
    # clearly inside one float32's rounding interval
    key, ok = certified_float32(one, torch.tensor([1e-12], dtype=torch.float64))
    assert bool(ok) and float(key) == 1.0
    # the interval straddles a rounding boundary: 1 + half_ulp is a tie between two float32 values
    key, ok = certified_float32(one + half_ulp, torch.tensor([1e-12], dtype=torch.float64))
    assert not bool(ok)
    # zero with any width may round to -0.0 or +0.0: never certain
    _, ok = certified_float32(
        torch.zeros(1, dtype=torch.float64), torch.tensor([1e-300], dtype=torch.float64)
    )
    assert not bool(ok)
    _, ok = certified_float32(
        torch.tensor([float("nan")], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    )
    assert not bool(ok)
    # a zero width still moves one float64 ulp outwards: certain unless s is a float32 rounding tie
    key, ok = certified_float32(torch.tensor([0.1], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    assert bool(ok) and float(key) == float(np.float32(0.1))


def test_pair_dots_kernel_against_a_plain_loop() -> None:
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(9, 37, generator=gen)
    g_wide = torch.randn(14, 50, generator=gen)
    g = g_wide[:, :37]  # rows with a leading dimension larger than D
    rows = torch.randint(0, 9, (40,), generator=gen)
    cols = torch.randint(0, 14, (40,), generator=gen)
    dot, absdot, gsq = _native.pair_dots(q, g, rows, cols, absdot=True, norms=True)
    assert absdot is not None and gsq is not None
    for i in range(40):
        a = [float(x) for x in q[int(rows[i])]]
        b = [float(x) for x in g[int(cols[i])]]
        # float32 * float32 is exact in float64, math.fsum the correctly rounded sum; any summation
        # order is within gamma_{D-1} sum |x_k y_k| of it (Higham 2002, §4.2)
        exact_abs = math.fsum(abs(x * y) for x, y in zip(a, b, strict=True))
        bound = 36 * 2.0**-53 / (1 - 36 * 2.0**-53) * exact_abs
        assert abs(float(dot[i]) - math.fsum(x * y for x, y in zip(a, b, strict=True))) <= bound
        assert absdot[i] == pytest.approx(exact_abs, rel=1e-14)
        assert gsq[i] == pytest.approx(math.fsum(y * y for y in b), rel=1e-14)
    only_dot = _native.pair_dots(q, g, rows, cols, absdot=False, norms=False)
    assert torch.equal(only_dot[0], dot) and only_dot[1:] == (None, None)
    # query rows widened to float64 first (the settling of one block): the same bits, every output
    widened = _native.pair_dots(q.double(), g, rows, cols, absdot=True, norms=True)
    for got, want in zip(widened, (dot, absdot, gsq), strict=True):
        assert got is not None and torch.equal(got, want)


def test_pair_dots_rejects_bad_arguments() -> None:
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    rows, cols = torch.tensor([0, 2]), torch.tensor([4, 5])
    with pytest.raises(ValueError, match=r"cols must lie in \[0, 5\)"):
        _native.pair_dots(q, g, rows, cols, absdot=True, norms=False)
    with pytest.raises(ValueError, match="float32"):
        _native.pair_dots(q, g.double(), rows, cols - 1, absdot=True, norms=False)
    with pytest.raises(ValueError, match="float32"):
        _native.pair_dots(q.half(), g, rows, cols - 1, absdot=True, norms=False)


def test_native_path_is_used_only_where_it_applies(tmp_path: object) -> None:
    q, g = tricky_data()
    assert make_keys(q, g, "dot").native is not None
    assert make_keys(q.numpy(), g.numpy(), "dot").native is not None  # numpy arrays share the memory
    assert make_keys(q, g.T.contiguous().T, "dot").native is None  # column-major: old path
    assert make_keys(q.half(), g.half(), "dot").native is None
    mm = np.lib.format.open_memmap(f"{tmp_path}/g.npy", mode="w+", dtype=np.float32, shape=tuple(g.shape))
    mm[:] = g.numpy()
    assert make_keys(q, mm, "dot").native is None
    k64 = ExactKeys(
        Embeddings(q.double(), "query"),
        Embeddings(g.double(), "gallery"),
        check_scoring("dot", None, g.shape[0]),
        torch.float64,
    )
    assert k64.native is None
    # numpy input gives the same keys as the tensor input
    rows, cols = all_pairs(q.shape[0], g.shape[0])
    assert torch.equal(
        make_keys(q.numpy(), g.numpy(), "cosine")(rows, cols), make_keys(q, g, "cosine")(rows, cols)
    )


def loop_ranks_cosine(q: torch.Tensor, g: torch.Tensor, lists: list[list[int]]) -> torch.Tensor:
    """Rank of each positive by the documented key (float64 cosine rounded to float32, ties by index)."""
    q64 = q.double() / q.double().norm(dim=1, keepdim=True)
    g64 = g.double() / g.double().norm(dim=1, keepdim=True)
    key = (q64 @ g64.T).float()
    order = torch.sort(-key, dim=1, stable=True).indices
    out = torch.full((q.shape[0], max(len(p) for p in lists)), g.shape[0], dtype=torch.long)
    for i, positives in enumerate(lists):
        where = {int(j): r for r, j in enumerate(order[i].tolist())}
        for t, p in enumerate(positives):
            out[i, t] = where[p]
    return out


def streamed_or_chunked_ranks(
    q: torch.Tensor,
    g: torch.Tensor,
    lists: list[list[int]],
    metric: str,
    chunks: tuple[int, int] | None,
    magnitudes: torch.Tensor | None = None,
) -> torch.Tensor:
    q_src, g_src = Embeddings(q, "query"), Embeddings(g, "gallery")
    scoring = check_scoring(metric, magnitudes, g_src.n)
    relevance = as_relevance(lists, q_src.n, g_src.n)
    qq = prepare_query(q_src, scoring)
    parts = [r for _, _, r, _ in iter_positive_ranks(q_src, qq, g_src, relevance, scoring, chunks, 1 << 26)]
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=g.shape[0]) for p in parts])


def random_positives(
    n_q: int, n_g: int, d: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Noisy copies of a target plus four random positives (the dense middle of the scores) and
    duplicated gallery rows inside the bands."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n_g, d, generator=gen)
    g[n_g - 60 : n_g - 10] = g[5]
    g[n_g - 10] = g[5] * (1 + 1e-7)
    target = torch.randint(0, n_g, (n_q,), generator=gen)
    q = g[target] + 0.8 * torch.randn(n_q, d, generator=gen)
    q[:3] = g[5]
    extra = torch.randint(0, n_g, (n_q, 4), generator=gen)
    lists = [sorted({int(target[i]), 5, n_g - 30, *extra[i].tolist()}) for i in range(n_q)]
    return q, g, lists


@pytest.mark.parametrize("native_settle", [True, False], ids=["native-settle", "tensor-settle"])
@pytest.mark.parametrize("metric", ["dot", "cosine", "magnitude"])
def test_ranks_with_random_positives_match_the_chunked_path_and_the_old_keys(
    metric: str, native_settle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed ranks (band entries settled by the native kernel or by tensor operations on native
    keys) against the chunked path and against the keys by definition (``exact_scores`` only)."""
    from mmgeom.retrieval import _fused_ranks

    q, g, lists = random_positives(64, 3000, 32, seed=11)
    mags = None
    if metric == "magnitude":
        metric, mags = "cosine", 0.5 + torch.rand(3000, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(_fused_ranks, "NATIVE_SETTLE", native_settle)
    native_pairs: list[int] = []  # pairs keyed by ExactKeys.native_keys: the positives, then the band's
    band_pairs: list[int] = []  # band pairs (the positive itself left out) handed to the settling kernel
    original, original_settle = ExactKeys.native_keys, _fused_ranks.native_settle

    def counted(
        self: ExactKeys, r: torch.Tensor, c: torch.Tensor, *rest: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        native_pairs.append(r.numel())
        return original(self, r, c, *rest)

    def counted_settle(keys: ExactKeys, hits: torch.Tensor, *rest: Any) -> torch.Tensor:
        q0, c0, _, pos = rest[:4]
        own = pos[hits[:, 0] + q0, hits[:, 2]]  # each positive lies in its own band: not a pair to settle
        band_pairs.append(int((hits[:, 1] + c0 != own).sum()))
        return original_settle(keys, hits, *rest)

    with monkeypatch.context() as mp:
        mp.setattr(ExactKeys, "native_keys", counted)
        mp.setattr(_fused_ranks, "native_settle", counted_settle)
        streamed = streamed_or_chunked_ranks(q, g, lists, metric, None, mags)
    # the bands hold many items (fewer under the magnitudes' spread), and the native path settles them
    settled = sum(band_pairs) if native_settle else sum(native_pairs[1:])
    assert settled > (1000 if mags is None else 10)
    chunked = streamed_or_chunked_ranks(q, g, lists, metric, (16, 700), mags)
    metrics_streamed = retrieval_metrics(q, g, lists, metric=metric, gallery_magnitudes=mags)

    def by_definition(self: ExactKeys, rows: torch.Tensor, cols: torch.Tensor, *rest: Any) -> torch.Tensor:
        return self.torch_keys(rows, cols)

    monkeypatch.setattr(ExactKeys, "__call__", by_definition)  # the keys by definition only
    monkeypatch.setattr(_fused_ranks, "NATIVE_SETTLE", False)
    old = streamed_or_chunked_ranks(q, g, lists, metric, None, mags)
    assert torch.equal(streamed, chunked)
    assert torch.equal(streamed, old)
    metrics_old = retrieval_metrics(q, g, lists, metric=metric, gallery_magnitudes=mags)
    assert metrics_streamed == metrics_old


def test_native_settle_falls_back_where_it_cannot_certify(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bound forced huge: the kernel certifies nothing and returns every entry, settled by
    ``exact_scores``: the same ranks."""
    q, g, lists = random_positives(32, 2000, 16, seed=5)
    want = streamed_or_chunked_ranks(q, g, lists, "dot", (16, 700))
    monkeypatch.setattr(_ties, "BOUND_SCALE", 1e300)
    assert torch.equal(streamed_or_chunked_ranks(q, g, lists, "dot", None), want)


def test_streamed_ranks_with_random_positives_equal_a_plain_loop() -> None:
    q, g, lists = random_positives(40, 1500, 24, seed=4)
    assert torch.equal(streamed_or_chunked_ranks(q, g, lists, "cosine", None), loop_ranks_cosine(q, g, lists))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [16, 31, 200, 4133])  # 4133: segments of 2048 and a tail
def test_count_kernel_group_skipping_against_a_plain_loop(dtype: torch.dtype, width: int) -> None:
    """Narrow bands (most groups of entries skipped by the vector test), entries exactly on the band
    edges at every lane position, six positives per row and a padding band."""
    gen = torch.Generator().manual_seed(width)
    rows, npos = 9, 6
    block = torch.randn(rows, width, generator=gen, dtype=dtype)
    centre = block[:, torch.randint(0, width, (npos,), generator=gen)].clone()
    lo, hi = centre - 1e-3, centre + 1e-3
    for j in range(0, width, 3):  # edges hit exactly, at varying lanes
        block[j % rows, j] = lo[j % rows, j % npos] if j % 2 else hi[j % rows, j % npos]
    lo[3, 5] = hi[3, 5] = float("inf")
    above = torch.zeros(rows, npos, dtype=torch.long)
    band = torch.empty(rows * width * npos, 3, dtype=torch.long)
    n = _native.count_rows(block, lo.contiguous(), hi.contiguous(), above, band)
    want_above = torch.zeros(rows, npos, dtype=torch.long)
    want_band = set()
    for r in range(rows):
        for p in range(npos):
            if hi[r, p] == float("inf"):
                continue
            for j in range(width):
                x = float(block[r, j])
                if x > float(hi[r, p]):
                    want_above[r, p] += 1
                elif x >= float(lo[r, p]):
                    want_band.add((r, j, p))
    assert torch.equal(above, want_above)
    assert n == len(want_band) and {tuple(t) for t in band[:n].tolist()} == want_band
    assert len(want_band) > rows  # not vacuous: bands hold entries besides the centres
