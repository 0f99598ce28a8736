"""Ranks that do not depend on where a row sits in a GEMM block: near-ties settled by exact scores.

The fast score of a (query, item) pair comes from a float32 (float64 for float64 inputs) BLAS block
whose rounding depends on the library, the CPU's kernel and the item's position inside the block: two
identical gallery rows can be one ulp apart. Ranks are therefore defined on the *exact* key of
:mod:`mmgeom.retrieval.rescore` — the float64-accumulated score rounded to the output dtype, ties by
lower gallery index — the same order :func:`mmgeom.retrieval.topk` returns.

The fast scores decide everything they can decide: with ``tau`` a bound on ``|fast - exact|``
(:func:`~mmgeom.retrieval.rescore.rounding_bound`), an item whose fast score is above
``hi = s_p + 2 tau + 4 ulp(s_p)`` is before the positive ``p`` under the exact key, and one below
``lo = s_p - 2 tau - 4 ulp(s_p)`` is after it. Only the items in ``[lo, hi]`` (a handful, unless the
gallery holds many near-duplicates) are rescored exactly and compared with the positive's exact key.
Where the positive's exact key ``k_p`` is computed first (the streamed ranks of :mod:`._fused_ranks`),
the band is ``k_p -+ (tau + 4 ulp)``: only the item's fast score errs, and half as many items need keys.

With positives in the dense middle of the score distribution that is millions of pairs, and gathering
float64 copies of their rows (:func:`~mmgeom.retrieval.rescore.exact_scores`) dominated the run. For
float32 matrices held in memory the keys are therefore computed by the native ``pair_dots`` kernel
(float64 sums of the float32 rows read in place) and *certified*: the kernel sums in another order than
torch, so its score ``s`` may differ from torch's by rounding, but by at most a bound ``eps`` (derived at
:func:`key_error_bound`); when every value of ``[s - eps, s + eps]`` rounds to the same float32, that
float32 is the key. The few pairs where it does not go through ``exact_scores`` itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from . import _native
from ._inputs import EPS, Embeddings, Scoring, chunk_ranges
from .rescore import exact_scores

#: Pairs rescored per step by ``exact_scores`` (each holds a float64 row of ``D`` values).
PAIRS_PER_STEP = 4096
#: Pairs certified per step by the native path (a few float64 values each).
CERTIFY_STEP = 1 << 18
#: Unit roundoff of float64.
U64 = 2.0**-53
#: Multiplies the certification bound (1: the derived bound; tests raise it to force the fallback).
BOUND_SCALE = 1.0


def tie_band(s: Tensor, tau: Tensor, valid: Tensor, errors: int = 2) -> tuple[Tensor, Tensor]:
    """``(lo, hi)`` thresholds, in the dtype of ``s``, around each positive's score.

    Args:
        s: ``(r, P)`` scores of the positives: fast scores (``errors=2``: the band covers the error of
            the positive's score and of the item's), or the positives' exact keys (``errors=1``: only the
            item's fast score errs, so the band is half as wide and holds half as many items).
        tau: ``(r,)`` float64 bound on each query's fast-score error.
        valid: ``(r, P)`` which entries are real positives (padding gets ``lo = hi = +inf``: never in a
            band, never counted above).
        errors: how many fast scores' errors the band must cover (1 or 2).
    """
    inf = torch.full_like(s, float("inf"))
    s = torch.where(valid, s, torch.zeros_like(s))
    ulp = torch.maximum(torch.nextafter(s, inf) - s, s - torch.nextafter(s, -inf)).to(torch.float64)
    band = float(errors) * tau.to(torch.float64)[:, None] + 4.0 * ulp
    s64 = s.to(torch.float64)
    # rounding the float64 thresholds to the block dtype may move them inwards: step one ulp outwards
    hi = torch.nextafter((s64 + band).to(s.dtype), inf)
    lo = torch.nextafter((s64 - band).to(s.dtype), -inf)
    return torch.where(valid, lo, inf), torch.where(valid, hi, inf)


def key_error_bound(d: int, normalise: bool, absdot: Tensor | None, magnitudes: Tensor | None) -> Tensor:
    """Bound on ``|native score - torch score|`` of a pair, before rounding to float32.

    Every product of two float32 values is exact in float64, so both computations differ from the exact
    score only by the rounding of their own summation, whatever its order: at most
    ``gamma_{D-1} sum_k |q_k g_k|`` each (Higham, "Accuracy and Stability of Numerical Algorithms",
    2002, §4.2; ``gamma_n = n u / (1 - n u)``, ``u = 2^-53``). Hence:

    * dot: ``|s_native - s_torch| <= 2 gamma_{D-1} A <= 2 (D + 4) u A'``, with ``A'`` the native sum of
      ``|q_k g_k|`` (``A <= A' (1 + gamma_{D-1})``); doubled here for margin: ``4 (D + 4) u A'``.
    * cosine: each norm ``sqrt(sum g_k^2)`` is within ``nu ~ (D/2 + 1) u`` relatively, their product
      within ``2 nu + u``, the division adds ``u``; with ``A / (|q| |g|) <= 1`` and ``|cos| <= 1`` the two
      computations differ by at most ``2 (D - 1) u + 4 (2 nu + u) + 2 u ~ (4 D + 10) u``; the bound used,
      ``16 (D + 4) u``, holds even for norms 3.5 D u off (whatever torch's norm reduction does).
    * magnitude scoring multiplies the cosine by ``r_d >= 0`` (one more rounding ``u`` on each side):
      ``16 (D + 4) u r_d``.

    Args:
        d: the dimension ``D``.
        normalise: cosine (or magnitude) scoring.
        absdot: ``(n,)`` native ``sum_k |q_k g_k|`` (dot scoring).
        magnitudes: ``(n,)`` ``r_d`` of each pair's gallery item, or None.
    """
    if not normalise:
        assert absdot is not None
        return (4.0 * (d + 4) * U64 * BOUND_SCALE) * absdot
    bound = torch.tensor(16.0 * (d + 4) * U64 * BOUND_SCALE, dtype=torch.float64)
    return bound * magnitudes if magnitudes is not None else bound


def certified_float32(s: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """``(key, certain)``: ``s`` rounded to float32, and whether all of ``[s - eps, s + eps]`` rounds to it.

    Rounding to the nearest float32 is monotone, so two ends that round to the same float32 (same bits:
    ``-0.0`` and ``+0.0`` count as different) enclose only values that do too. The ends are moved one
    float64 ulp outwards, since ``s -+ eps`` itself rounds. NaN or infinite ``s`` is never certain.
    """
    lo = torch.nextafter(s - eps, torch.tensor(float("-inf"), dtype=torch.float64)).to(torch.float32)
    hi = torch.nextafter(s + eps, torch.tensor(float("inf"), dtype=torch.float64)).to(torch.float32)
    certain = (lo.view(torch.int32) == hi.view(torch.int32)) & torch.isfinite(s) & torch.isfinite(eps)
    return s.to(torch.float32), certain


def _float32_matrix(x: Embeddings) -> Tensor | None:
    """The matrix as a row-contiguous CPU float32 tensor sharing its memory, or None (memmaps, other
    dtypes or devices, non-contiguous arrays: those keep the ``exact_scores`` path)."""
    data = x.data
    if isinstance(data, np.ndarray):
        if isinstance(data, np.memmap) or data.dtype != np.float32 or not data.flags.c_contiguous:
            return None
        with warnings.catch_warnings():
            # read-only arrays: the kernel only reads them
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(data)
    if data.dtype != torch.float32 or data.device.type != "cpu" or (data.stride(1) != 1 and x.d > 1):
        return None
    return data.detach()


class ExactKeys:
    """Exact ordering keys of (query, gallery item) pairs: float64 score rounded to ``out_dtype``.

    Args:
        query: the original query matrix (not the prepared one: the key is that of :func:`topk`).
        gallery: the gallery matrix.
        scoring: metric and optional magnitudes.
        out_dtype: the dtype the key is rounded to (float32, or float64 for float64 inputs).
    """

    def __init__(self, query: Embeddings, gallery: Embeddings, scoring: Scoring, out_dtype: torch.dtype):
        self.query, self.gallery, self.scoring, self.out_dtype = query, gallery, scoring, out_dtype
        # the native path certifies float32 keys only (a float64 key would need torch's exact summation)
        self.native: tuple[Tensor, Tensor] | None = None
        self.query_sq: Tensor | None = None
        qm = _float32_matrix(query) if out_dtype == torch.float32 else None
        gm = _float32_matrix(gallery) if qm is not None else None
        # (the kernel is only built, at first use, for inputs it can serve)
        if qm is not None and gm is not None and _native.available(torch.float32, torch.device("cpu")):
            self.native = (qm, gm)
            if scoring.normalise:  # sum_k q_k^2 of every query row, once (a pair of the row with itself)
                every = torch.arange(qm.shape[0])
                self.query_sq = _native.pair_dots(qm, qm, every, every, absdot=False, norms=False)[0]

    def widened(self, q0: int, q1: int, out: Tensor) -> tuple[Tensor, int] | None:
        """Query rows ``q0:q1`` widened to float64 into ``out`` (at least ``(q1 - q0) * D`` elements), for
        :meth:`__call__` on pairs of those rows only; None when the keys are not computed natively."""
        if self.native is None:
            return None
        qm = self.native[0]
        rows = out[: (q1 - q0) * qm.shape[1]].view(q1 - q0, qm.shape[1])
        rows.copy_(qm[q0:q1])
        return rows, q0

    def __call__(
        self, rows: Tensor, cols: Tensor, in_order: bool = False, widened: tuple[Tensor, int] | None = None
    ) -> Tensor:
        """``(n,)`` float64 keys of the pairs ``(rows[i], cols[i])`` (query and gallery indices).

        Pairs spread over the whole gallery are computed in gallery order (each row read once);
        ``in_order=True`` keeps the given order, for pairs whose rows are already in cache (one block's).
        ``widened``: the query rows of every pair, from :meth:`widened` (same keys, computed faster).
        """
        rows, cols = rows.cpu(), cols.cpu()
        if self.native is None or rows.numel() == 0:
            return self.torch_keys(rows, cols)
        rows, cols = rows.to(torch.long), cols.to(torch.long)
        order: Tensor | None = None
        if not in_order and rows.numel() > 1 and not bool((cols[1:] >= cols[:-1]).all()):
            # in gallery order: each gallery row comes from memory once, for all of its pairs, and the
            # (smaller) query matrix stays in cache; measured 2-4x faster than pairs grouped by query row
            # (random 2 KB gathers from a 200 MB gallery) at 10^3-10^4 x 10^5 x 512
            order = torch.argsort(cols * self.query.n + rows)
            rows, cols = rows[order], cols[order]
        if rows.numel() <= CERTIFY_STEP:
            out, certain = self.native_keys(rows, cols, widened)
        else:
            out = torch.empty(rows.numel(), dtype=torch.float64)
            certain = torch.empty(rows.numel(), dtype=torch.bool)
            for a, b in chunk_ranges(rows.numel(), CERTIFY_STEP):
                out[a:b], certain[a:b] = self.native_keys(rows[a:b], cols[a:b], widened)
        if not bool(certain.all()):
            unsure = (~certain).nonzero().flatten()
            out[unsure] = self.torch_keys(rows[unsure], cols[unsure])
        if order is None:
            return out
        unsorted = torch.empty_like(out)
        unsorted[order] = out
        return unsorted

    def native_keys(
        self, rows: Tensor, cols: Tensor, widened: tuple[Tensor, int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(keys, certain)`` of the pairs from the native float64 sums (float32 keys only)."""
        assert self.native is not None
        qm, gm = self.native
        normalise = self.scoring.normalise
        q, q_rows = (qm, rows) if widened is None else (widened[0], rows - widened[1])
        dot, absdot, gsq = _native.pair_dots(q, gm, q_rows, cols, absdot=not normalise, norms=normalise)
        mags = self.scoring.magnitudes[cols] if self.scoring.magnitudes is not None else None
        s, ok = dot, None
        if normalise:
            assert gsq is not None and self.query_sq is not None
            den = gsq.sqrt_().mul_(self.query_sq[rows].sqrt())  # as exact_scores: |g| |q|, then the division
            ok = den > 2 * EPS  # near the EPS clamp (zero rows): leave the pair to exact_scores
            s = dot.div_(den)
            if mags is not None:
                s = s.mul_(mags)
        key, certain = certified_float32(s, key_error_bound(qm.shape[1], normalise, absdot, mags))
        if ok is not None:
            certain &= ok
        return key.to(torch.float64), certain

    def torch_keys(self, rows: Tensor, cols: Tensor) -> Tensor:
        """The keys by definition: :func:`~mmgeom.retrieval.rescore.exact_scores`, rounded."""
        out = torch.empty(rows.numel(), dtype=torch.float64)
        for a, b in chunk_ranges(rows.numel(), PAIRS_PER_STEP):
            q = self.query.rows(rows[a:b])
            g = self.gallery.rows(cols[a:b]).to(q.device)
            s = exact_scores(q, g[:, None, :], self.scoring, cols[a:b, None])[:, 0]
            out[a:b] = s.to(self.out_dtype).to(torch.float64).cpu()
        return out


def exact_before(key_j: Tensor, j: Tensor, key_p: Tensor, p: Tensor) -> Tensor:
    """Whether item ``j`` is ranked before item ``p``: higher key, or equal key and lower index."""
    return (key_j > key_p) | ((key_j == key_p) & (j < p))
