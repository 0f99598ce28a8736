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
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import Embeddings, Scoring, chunk_ranges
from .rescore import exact_scores

#: Pairs rescored per step (each holds a float64 row of ``D`` values).
PAIRS_PER_STEP = 4096


def tie_band(s: Tensor, tau: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """``(lo, hi)`` thresholds, in the dtype of ``s``, around each positive's fast score.

    Args:
        s: ``(r, P)`` fast scores of the positives.
        tau: ``(r,)`` float64 bound on each query's fast-score error.
        valid: ``(r, P)`` which entries are real positives (padding gets ``lo = hi = +inf``: never in a
            band, never counted above).
    """
    inf = torch.full_like(s, float("inf"))
    s = torch.where(valid, s, torch.zeros_like(s))
    ulp = torch.maximum(torch.nextafter(s, inf) - s, s - torch.nextafter(s, -inf)).to(torch.float64)
    band = 2.0 * tau.to(torch.float64)[:, None] + 4.0 * ulp
    s64 = s.to(torch.float64)
    # rounding the float64 thresholds to the block dtype may move them inwards: step one ulp outwards
    hi = torch.nextafter((s64 + band).to(s.dtype), inf)
    lo = torch.nextafter((s64 - band).to(s.dtype), -inf)
    return torch.where(valid, lo, inf), torch.where(valid, hi, inf)


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

    def __call__(self, rows: Tensor, cols: Tensor) -> Tensor:
        """``(n,)`` float64 keys of the pairs ``(rows[i], cols[i])`` (query and gallery indices)."""
        rows, cols = rows.cpu(), cols.cpu()
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
