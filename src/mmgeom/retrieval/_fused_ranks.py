"""Ranks of few positives per query, query-parallel and streamed over the gallery (not public API).

The chunked path of :mod:`mmgeom.retrieval.ranks` keeps full score rows of a query chunk and counts
with tensor operations on one thread. For up to :data:`~mmgeom.retrieval.ranks.MAX_COMPARE_POSITIVES`
positives per query on CPU this module does the same counting the way :mod:`._fused` does top-k: each
worker thread runs a single-threaded GEMM of its queries against a gallery sub-chunk and counts that
block at once with the native kernel (``mmgeom_count_*`` in ``_merge.c``), while the block is in its
cache. The gallery is read once, whatever the number of queries.

What changes is what the band is centred on: the positive's *exact* key ``k_p``, computed up front for
every positive, instead of its fast score read from the block. Every block score lies within ``tau``
(:func:`~mmgeom.retrieval.rescore.rounding_bound`) of its exact score, so an item whose fast score is
above ``k_p + tau + 4 ulp`` is exactly before the positive and one below ``k_p - tau - 4 ulp`` after it
(:func:`~mmgeom.retrieval._ties.tie_band` with ``errors=1``): half the width of the chunked path's band
``s_p -+ (2 tau + 4 ulp)``, whose centre is itself a fast score. Items inside a band (the positive itself
among them, excluded by index) are settled by their exact keys, as in the chunked path; so the ranks are
the same exact ranks. With positives in the dense middle of the score distribution the band holds
hundreds of items per positive, and halving it halves the exact keys to compute.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from . import _native
from ._fused import ChunkSlots, stream_chunks, thread_buffer
from ._gemm import block_scores
from ._inputs import Embeddings, chunk_ranges
from ._plan import Plan
from ._settle import magnitudes64, native_settle
from ._threads import one_thread_here
from ._ties import ExactKeys, exact_before, tie_band
from .relevance import Relevance

#: Band entries a worker can hold per block before that block is settled with tensor operations.
BAND_CAPACITY = 1 << 14
#: Band entries a worker collects before settling them (see ``_scan``).
SETTLE_PAIRS = 2048
#: Settle with the native kernel where the keys are native float32 ones (tests switch it off to
#: compare with the tensor operations).
NATIVE_SETTLE = True

_local = threading.local()


def _band_by_tensors(block: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``(n, 3)`` (row, column, p) of the entries inside a band: the overflow path of the kernel."""
    inside = (block[:, None, :] >= lo[:, :, None]) & (block[:, None, :] <= hi[:, :, None])
    rows, ps, cols = inside.nonzero(as_tuple=True)
    return torch.stack([rows, cols, ps], dim=1)


class _Settler:
    """Settles band entries on the worker that found them: a full block's at once, small ones together.

    Each (query, item) pair inside a positive's band gets its exact key (:class:`ExactKeys`, native
    and certified for float32 matrices in memory: then the whole settling runs in the native kernel of
    :mod:`._settle`) and is compared with the positive's exact key, computed up front for every
    positive. Settling as the blocks come keeps the pairs' rows in cache, spreads the work over the
    workers and never holds more than a few blocks' band entries: collecting every block's entries
    first (millions of pairs with positives in the dense middle of the score distribution) cost
    845 MiB and a serial tail of sorting and gathering.
    """

    def __init__(self, keys: ExactKeys, pos: Tensor, key_p: Tensor, above: Tensor) -> None:
        self.keys, self.pos, self.key_p, self.above = keys, pos, key_p, above
        # float32 keys computed natively: the whole settling runs in the native kernel (_settle.py)
        self.native = NATIVE_SETTLE and keys.native is not None and keys.out_dtype == torch.float32
        self.mags = magnitudes64(keys) if self.native else None

    def __call__(self, hits: Tensor, q0: int, c0: int, widened: tuple[Tensor, int] | None = None) -> None:
        """Count the band entries ``hits`` (``(n, 3)`` row, column, p, numbered from query ``q0`` and
        gallery row ``c0``) that are exactly before their positive (``widened``: the task's query rows
        from :meth:`ExactKeys.widened`)."""
        by_definition = False
        if self.native:
            unsure = native_settle(
                self.keys, hits, q0, c0, widened, self.pos, self.key_p, self.above, self.mags
            )
            if unsure.numel() == 0:
                return
            hits, by_definition = hits[unsure], True  # the kernel could not certify these keys
        rows, cols = hits[:, 0] + q0, hits[:, 1] + c0
        flat = rows * self.pos.shape[1] + hits[:, 2]  # (row, p) as one index into the (N_q, P) tables
        p_items = self.pos.view(-1)[flat]
        other = cols != p_items
        if not bool(other.all()):
            rows, cols, flat, p_items = rows[other], cols[other], flat[other], p_items[other]
        if rows.numel() == 0:
            return
        key = self.keys.torch_keys(rows, cols) if by_definition else self.keys(rows, cols, True, widened)
        before = exact_before(key, cols, self.key_p.view(-1)[flat], p_items)
        # each task owns its query rows: no other thread writes these counts
        # (worker threads do not inherit the caller's inference mode, under which ``above`` was made)
        with torch.inference_mode():
            self.above.view(-1).index_add_(0, flat, before.to(torch.long))


def _scan(
    q: Tensor,
    g: Tensor,
    offset: int,
    q0: int,
    q1: int,
    cg: int,
    lo: Tensor,
    hi: Tensor,
    above: Tensor,
    settle: _Settler,
    gemm: str = "torch",
) -> None:
    one_thread_here()
    rows = q1 - q0
    buf = thread_buffer(_local, "block", rows * min(cg, g.shape[0]), q.dtype)
    band = thread_buffer(_local, "band", 3 * BAND_CAPACITY, torch.long)[: 3 * BAND_CAPACITY].view(-1, 3)
    qs, lo_r, hi_r, above_r = q[q0:q1], lo[q0:q1], hi[q0:q1], above[q0:q1]
    # Band entries wait (in gallery coordinates) until SETTLE_PAIRS have come or the task's chunk ends:
    # a block with many is settled while its rows are in cache, a few are settled together (with one
    # positive per query a block holds a few dozen, and each settling costs tens of tensor operations).
    pending: list[Tensor] = []
    waiting = 0
    widened: tuple[Tensor, int] | None = None

    def flush() -> None:
        nonlocal waiting, widened
        hits = pending[0] if len(pending) == 1 else torch.cat(pending)
        pending.clear()
        waiting = 0
        if widened is None and hits.shape[0] >= rows // 4:
            # the task's query rows in float64, once: it pays when the pairs reuse them
            wide = thread_buffer(_local, "widened", rows * q.shape[1], torch.float64)
            widened = settle.keys.widened(q0, q1, wide)
        settle(hits, q0, 0, widened)

    for c0, c1 in chunk_ranges(g.shape[0], cg):
        block = buf[: rows * (c1 - c0)].view(rows, c1 - c0)
        block_scores(gemm, qs, g[c0:c1], block)
        n = _native.count_rows(block, lo_r, hi_r, above_r, band)
        if n:
            hits = band[:n].clone() if n <= band.shape[0] else _band_by_tensors(block, lo_r, hi_r)
            hits[:, 1] += offset + c0
            pending.append(hits)
            waiting += n
            if waiting >= SETTLE_PAIRS:
                flush()
    if pending:
        flush()


def fused_ranks(
    keys: ExactKeys,
    q: Tensor,
    gallery: Embeddings,
    relevance: Relevance,
    scale: Tensor | None,
    tau: Tensor,
    plan: Plan,
    progress: bool = False,
) -> Tensor:
    """``(N_q, P)`` exact 0-based ranks of every query's positives (``N_g`` for padding).

    Args:
        keys: exact keys of (query, item) pairs.
        q: ``(N_q, D)`` prepared queries on CPU.
        gallery: the gallery source (already validated by the scale pass).
        relevance: positives, at most ``MAX_COMPARE_POSITIVES`` per query.
        scale: per-gallery-row score scale (cosine / magnitude), or None for dot.
        tau: ``(N_q,)`` float64 bound on the fast scores' error.
        plan: threads and block shapes (:mod:`._tune`).
        progress: progress bar over gallery chunks.
    """
    n_q, n_g = q.shape[0], gallery.n
    padded = relevance.padded(0, n_q).cpu()
    valid = padded >= 0
    pos = padded.clamp(min=0)
    key_p = torch.zeros(pos.shape, dtype=torch.float64)  # (padding: never read, its band is +inf)
    v_rows, v_ps = valid.nonzero(as_tuple=True)
    key_p[v_rows, v_ps] = keys(v_rows, pos[v_rows, v_ps])
    # a key rounded to the output dtype is exact in the block dtype (float32 keys of float32 blocks)
    lo, hi = tie_band(key_p.to(q.dtype), tau, valid, errors=1)
    lo, hi = lo.contiguous(), hi.contiguous()
    above = torch.zeros(pos.shape, dtype=torch.long)
    settle = _Settler(keys, pos, key_p, above)
    slots = ChunkSlots(q.dtype)

    def prepare(g0: int, g1: int, j: int) -> Tensor:
        g = gallery.chunk(g0, g1, check=False).to(q.dtype)
        if scale is None:
            return g.contiguous()
        return torch.mul(g, scale[g0:g1, None], out=slots.take(j, g.shape))

    def scan(g: Tensor, g0: int, a: int, b: int) -> None:
        _scan(q, g, g0, a, b, plan.gallery_chunk, lo, hi, above, settle, plan.gemm)

    stream_chunks(n_g, plan, n_q, prepare, scan, "ranks", progress)
    return torch.where(valid, above, n_g)
