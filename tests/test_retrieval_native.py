"""The native running top-k merge (``_merge.c``) against a plain-loop reference and the torch merge."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from mmgeom.retrieval import _native, topk
from mmgeom.retrieval import _select as sel


@pytest.fixture
def native(monkeypatch):
    """The kernel loaded fresh (skips where this machine has no C compiler)."""
    monkeypatch.setenv("MMGEOM_NATIVE", "1")
    _native.reset()
    if not _native.available(torch.float32, torch.device("cpu")):
        pytest.skip(f"native merge {_native.native_status()}")
    yield _native
    _native.reset()


@pytest.fixture
def reset_after():
    yield
    _native.reset()


def loop_topk(blocks: list[torch.Tensor], c: int) -> tuple[list[list[float]], list[list[int]]]:
    """Per row: every (score, gallery index) of the blocks, sorted by score desc then index asc, first c."""
    full = torch.cat(blocks, 1).tolist()
    values, indices = [], []
    for row in full:
        pairs = sorted(
            ((v, j) for j, v in enumerate(row) if v == v),  # NaN never enters
            key=lambda p: (-p[0], p[1]),
        )[:c]
        values.append([v for v, _ in pairs])
        indices.append([j for _, j in pairs])
    return values, indices


def empty_run(r: int, c: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((r, c), float("-inf"), dtype=dtype), (sel.SENTINEL + torch.arange(c)).expand(
        r, c
    ).clone()


def ordered(values: torch.Tensor, index: torch.Tensor) -> tuple[list[list[float]], list[list[int]]]:
    v, i = sel.order_by_score_then_index(values, index)
    return v.tolist(), i.tolist()


def blocks_for(
    kind: str, r: int, widths: list[int], dtype: torch.dtype, gen: torch.Generator
) -> list[torch.Tensor]:
    if kind == "random":
        return [torch.randn(r, w, generator=gen, dtype=dtype) for w in widths]
    if kind == "ties":  # few distinct values: ties inside blocks, across blocks and with the running k-th
        return [torch.randint(0, 4, (r, w), generator=gen).to(dtype) for w in widths]
    if kind == "rising":  # every element beats the running k-th: the heap is replaced all the time
        out, start = [], 0.0
        for w in widths:
            out.append(torch.linspace(start, start + 1, w, dtype=dtype).expand(r, w).clone())
            start += 1
        return out
    raise AssertionError(kind)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["random", "ties", "rising"])
@pytest.mark.parametrize(
    ("r", "c", "widths"), [(1, 1, [1, 5]), (17, 5, [31, 32, 33, 64]), (70, 18, [203, 97, 1])]
)
def test_native_merge_equals_plain_loop(native, dtype, kind, r, c, widths):
    gen = torch.Generator().manual_seed(r * 100 + c)
    blocks = blocks_for(kind, r, widths, dtype, gen)
    run_v, run_i = empty_run(r, c, dtype)
    offset = 0
    for b in blocks:
        native.merge_into(b, offset, run_v, run_i)
        offset += b.shape[1]
    ref_v, ref_i = loop_topk(blocks, c)
    got_v, got_i = ordered(run_v, run_i)
    n_real = min(c, offset)
    assert [row[:n_real] for row in got_i] == ref_i
    assert [row[:n_real] for row in got_v] == ref_v
    assert all(x >= sel.SENTINEL for row in got_i for x in row[n_real:])  # unfilled slots stay empty


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_merge_equals_torch_merge_block_threaded(native, monkeypatch, dtype):
    monkeypatch.setattr(native, "MIN_PARALLEL_ELEMENTS", 0)  # several threads even on a small block
    monkeypatch.setattr(native, "MIN_ROWS_PER_THREAD", 3)
    gen = torch.Generator().manual_seed(3)
    r, c = 41, 7
    blocks = blocks_for("random", r, [300, 300, 77], dtype, gen) + blocks_for(
        "ties", r, [128, 200], dtype, gen
    )
    nv, ni = empty_run(r, c, dtype)
    tv, ti = empty_run(r, c, dtype)
    offset = 0
    for b in blocks:
        native.merge_into(b, offset, nv, ni)
        tv, ti = sel.merge_block(b, offset, tv, ti, c, group=8)
        offset += b.shape[1]
    assert ordered(nv, ni) == ordered(tv, ti)


def test_native_merge_reads_strided_rows_and_skips_nan(native):
    gen = torch.Generator().manual_seed(4)
    wide = torch.randn(9, 100, generator=gen)
    wide[2, 10:40] = float("nan")  # a whole group of NaN and a group that starts with NaN
    wide[5, 32] = float("nan")
    block = wide[:, 3:80]  # rows 100 apart in memory, 77 columns used
    run_v, run_i = empty_run(9, 6, torch.float32)
    native.merge_into(block, 1000, run_v, run_i)
    ref_v, ref_i = loop_topk([block], 6)
    got_v, got_i = ordered(run_v, run_i)
    assert got_v == ref_v
    assert got_i == [[1000 + j for j in row] for row in ref_i]


def test_native_merge_rejects_mismatched_tensors(native):
    run_v, run_i = empty_run(4, 3, torch.float32)
    with pytest.raises(ValueError, match="row-contiguous block"):
        native.merge_into(torch.randn(4, 10, dtype=torch.float64), 0, run_v, run_i)
    with pytest.raises(ValueError, match="row-contiguous block"):
        native.merge_into(torch.randn(10, 4).T, 0, run_v, run_i)
    with pytest.raises(ValueError, match="row-contiguous block"):
        native.merge_into(torch.randn(5, 10), 0, run_v, run_i)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [None, 7, (5, 64)])
def test_topk_with_and_without_the_kernel_is_identical(native, monkeypatch, dtype, chunk):
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(900, 24, generator=gen, dtype=dtype)
    g[500:520] = g[100]  # duplicated rows: ties the rescoring must resolve by index
    q = torch.cat([torch.randn(40, 24, generator=gen, dtype=dtype), g[100:101]])
    with_kernel = topk(q, g, 10, chunk_size=chunk)
    monkeypatch.setenv("MMGEOM_NATIVE", "0")
    _native.reset()
    assert not _native.available(dtype, torch.device("cpu"))
    without = topk(q, g, 10, chunk_size=chunk)
    # bit-identical by design: both merges only select candidates; the final scores of both come from
    # the same exact float64 rescoring (rescore.exact_scores) of the same rows.
    assert torch.equal(with_kernel[0], without[0])
    assert torch.equal(with_kernel[1], without[1])
    assert with_kernel[1][-1, :1].tolist() == [100]


def test_disabled_by_environment(monkeypatch, reset_after):
    from mmgeom.retrieval import native_status

    monkeypatch.setenv("MMGEOM_NATIVE", "0")
    _native.reset()
    assert native_status() == "disabled by MMGEOM_NATIVE"
    with pytest.raises(RuntimeError, match="disabled"):
        _native.merge_into(torch.zeros(1, 1), 0, *empty_run(1, 1, torch.float32))


def test_no_compiler_falls_back_to_the_torch_merge(monkeypatch, reset_after):
    monkeypatch.setenv("MMGEOM_NATIVE", "1")
    monkeypatch.setattr(_native.shutil, "which", lambda name: None)
    _native.reset()
    assert _native.native_status().startswith("unavailable: no C compiler")
    q, g = torch.randn(6, 5), torch.randn(50, 5)
    full = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).T
    # float32 GEMM reference (another kernel): the items' reference scores must be the top-3 scores,
    # within float32 rounding, rather than the very same indices (near-ties may swap on another CPU).
    got = topk(q, g, 3, chunk_size=16)[1]
    torch.testing.assert_close(full.gather(1, got), torch.topk(full, 3).values, atol=1e-6, rtol=0)


def test_failing_compiler_is_reported_and_nothing_is_cached(monkeypatch, tmp_path, reset_after):
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fakecc: no such target' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("MMGEOM_NATIVE", "1")
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path / "cache"))
    _native.reset()
    status = _native.native_status()
    assert status.startswith("unavailable: RuntimeError") and "no such target" in status
    assert not any((tmp_path / "cache" / "native").iterdir())  # no half-written kernel left behind


def test_kernel_is_built_once_into_the_cache(native, monkeypatch, tmp_path):
    monkeypatch.setenv("MMGEOM_CACHE_DIR", str(tmp_path))
    native.reset()
    assert native.native_status().startswith(f"loaded {tmp_path}")
    built = list((tmp_path / "native").glob("merge-*.so"))
    assert len(built) == 1
    mtime = os.stat(built[0]).st_mtime_ns
    native.reset()
    native.native_status()
    assert os.stat(built[0]).st_mtime_ns == mtime
