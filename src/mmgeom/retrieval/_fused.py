"""The query-parallel fast pass of exact top-k: each thread multiplies and merges its own blocks.

The first engine (:func:`mmgeom.retrieval._candidates.torch_candidates`) alternates one multi-threaded
GEMM per block with a merge of that block. On a 2-core AMD EPYC (Zen 4) it reached 77-78% of the sgemm
roofline where this engine reaches 92-95% (benchmarks/results/retrieval/amd-epyc-avx512.md): every block
ends with an OpenMP barrier, the threads that finish early spin while the merge runs, and the merge reads
a 16 MB block back from memory after the GEMM wrote it. Here each worker thread takes a slice of queries
and, for it, runs a *single-threaded* GEMM against a gallery sub-chunk followed at once by the native
merge of that block, while the block is still in its cache. Threads never wait for each other inside a
gallery chunk; they meet once per gallery chunk (which keeps every query's blocks in gallery order, as
the merge needs), and the calling thread prepares the next chunk meanwhile. The block shapes and the
thread count come from :mod:`mmgeom.retrieval._tune` (measured once per CPU and cached).

Same results as the first engine: the candidates only feed the exact rescoring of
:mod:`mmgeom.retrieval.rescore`, which does not depend on how the scores were blocked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import _native
from ._candidates import Candidates
from ._gemm import block_scores, single_threaded
from ._inputs import Embeddings, Scoring, chunk_ranges, scale_gallery_chunk, scaled_norm_max
from ._plan import Plan
from ._select import SENTINEL
from ._threads import one_thread_here

_local = threading.local()


def thread_buffer(local: threading.local, name: str, n: int, dtype: torch.dtype) -> Tensor:
    """A flat buffer of at least ``n`` elements kept on ``local`` under ``name``: each worker thread
    reuses its own across blocks and calls (no multi-MB allocation per block)."""
    buf: Tensor | None = getattr(local, name, None)
    if buf is None or buf.numel() < n or buf.dtype != dtype:
        buf = torch.empty(n, dtype=dtype)
        setattr(local, name, buf)
    return buf


class ChunkSlots:
    """Two flat buffers used in turn for the prepared gallery chunks: one is scanned by the workers
    while the next is prepared into the other (a fresh 32 MB result per 16k x 512 chunk cost more in page
    faults than the arithmetic)."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.slots = [torch.empty(0, dtype=dtype), torch.empty(0, dtype=dtype)]

    def take(self, j: int, shape: torch.Size) -> Tensor:
        """The buffer of chunk ``j`` viewed as ``shape`` (grown when too small)."""
        n = shape.numel()
        if self.slots[j % 2].numel() < n:
            self.slots[j % 2] = torch.empty(n, dtype=self.dtype)
        return self.slots[j % 2][:n].view(shape)


def stream_chunks(
    gallery_n: int,
    plan: Plan,
    n_q: int,
    prepare: Callable[[int, int, int], Tensor],
    scan: Callable[[Tensor, int, int, int], None],
    desc: str,
    progress: bool,
) -> None:
    """The fused engines' schedule: ``scan(chunk, offset, q0, q1)`` of every query task
    (:meth:`Plan.tasks`) on the worker pool, one prepared gallery chunk after another, while the calling
    thread runs ``prepare(g0, g1, j)`` for the next chunk. The workers meet once per chunk, which keeps
    every query's blocks in gallery order. Every GEMM runs single-threaded inside its worker: the
    parallelism is across workers."""
    tasks = plan.tasks(n_q)
    g_ranges = chunk_ranges(gallery_n, plan.prepare_chunk)
    pool = _native.executor(plan.threads)
    with single_threaded(plan.gemm):
        nxt = prepare(*g_ranges[0], 0)
        bar = tqdm(g_ranges, desc=desc, unit="chunk", disable=not progress, leave=False)
        for j, (g0, _) in enumerate(bar):
            g = nxt
            futures: list[Future[None]] = [pool.submit(scan, g, g0, a, b) for a, b in tasks]
            if j + 1 < len(g_ranges):
                nxt = prepare(*g_ranges[j + 1], j + 1)
            for f in futures:
                f.result()


def scan_rows(
    q: Tensor,
    g: Tensor,
    offset: int,
    q0: int,
    q1: int,
    cg: int,
    run_values: Tensor,
    run_index: Tensor,
    gemm: str = "torch",
) -> None:
    """Merge the scores of queries ``q0:q1`` against the prepared gallery chunk ``g`` (rows ``offset..``).

    Runs on the calling thread: one GEMM per ``cg``-wide sub-chunk, merged straight after.
    """
    one_thread_here()
    rows = q1 - q0
    buf = thread_buffer(_local, "block", rows * min(cg, g.shape[0]), q.dtype)
    qs, rv, ri = q[q0:q1], run_values[q0:q1], run_index[q0:q1]
    for c0, c1 in chunk_ranges(g.shape[0], cg):
        block = buf[: rows * (c1 - c0)].view(rows, c1 - c0)
        block_scores(gemm, qs, g[c0:c1], block)
        _native.merge_rows(block, offset + c0, rv, ri)


def fused_candidates(
    q: Tensor,
    gallery: Embeddings,
    c: int,
    scoring: Scoring,
    plan: Plan,
    progress: bool = False,
) -> Candidates:
    """Each query's top-``c`` under the float32 (float64) block scores, query-parallel on CPU threads.

    Args:
        q: ``(N_q, D)`` prepared queries (compute dtype, normalised for cosine), on CPU.
        gallery: the gallery source.
        c: candidates per query.
        scoring: metric and optional magnitudes.
        plan: block shapes and thread count (``plan.query_chunk`` rows per task, ``plan.gallery_chunk``
            columns per GEMM, ``plan.prepare_chunk`` gallery rows prepared at a time).
        progress: show a progress bar over prepared gallery chunks.
    """
    n_q = q.shape[0]
    run_values = torch.full((n_q, c), float("-inf"), dtype=q.dtype)
    run_index = (SENTINEL + torch.arange(c)).expand(n_q, c).clone()
    norm_max = 0.0
    slots = ChunkSlots(q.dtype) if scoring.normalise else None

    def prepare(g0: int, g1: int, j: int) -> Tensor:
        nonlocal norm_max
        raw = gallery.chunk(g0, g1).to(q.device)
        out = slots.take(j, raw.shape) if slots is not None else None
        g = scale_gallery_chunk(raw, scoring, g0, out=out).contiguous()
        norm_max = max(norm_max, scaled_norm_max(g, scoring, g0))
        return g

    def scan(g: Tensor, g0: int, a: int, b: int) -> None:
        scan_rows(q, g, g0, a, b, plan.gallery_chunk, run_values, run_index, plan.gemm)

    stream_chunks(gallery.n, plan, n_q, prepare, scan, "topk", progress)
    return Candidates(run_values, run_index, norm_max)
