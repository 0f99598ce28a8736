"""The native settling of one score block's band entries (not public API).

:class:`mmgeom.retrieval._fused_ranks._Settler` settles the band entries of each block with tensor
operations: the pairs' exact keys (:class:`~mmgeom.retrieval._ties.ExactKeys`), a comparison with the
positives' keys and a scatter-add, a few dozen operations per block. ``mmgeom_settle_f32`` in
``_merge.c`` does the same in one pass, pair by pair, for float32 keys computed natively; the certification
is the arithmetic of :meth:`ExactKeys.native_keys` (tests compare the two), and the pairs it cannot
certify come back for ``exact_scores``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import _native, _ties
from ._inputs import EPS


def _kernel() -> Any:
    lib = _native._library()
    if lib is None:
        raise RuntimeError(f"the native kernels are {_native.native_status()}")
    return lib.mmgeom_settle_f32


def native_settle(
    keys: _ties.ExactKeys,
    hits: Tensor,
    q0: int,
    c0: int,
    widened: tuple[Tensor, int] | None,
    pos: Tensor,
    key_p: Tensor,
    above: Tensor,
    mags: Tensor | None = None,
) -> Tensor:
    """Settle ``hits`` (``(n, 3)`` int64: block row, block column, p) of the block at query ``q0`` and
    gallery row ``c0``: adds to ``above`` (``(N_q, P)`` int64) the entries whose exact key puts them
    before their positive, and returns the indices (into ``hits``) of the entries left uncertain.

    ``keys`` must compute float32 keys natively (``keys.native`` set); ``pos`` and ``key_p`` are the
    positives' gallery indices and exact keys, ``(N_q, P)``; ``mags`` the scoring's magnitudes as a
    contiguous float64 CPU tensor (:func:`magnitudes64`), for magnitude scoring.
    """
    assert keys.native is not None and keys.out_dtype == torch.float32
    qm, gm = keys.native
    hits = hits.contiguous()
    n = hits.shape[0]
    unsure = torch.empty(n, dtype=torch.int64)
    if n == 0:
        return unsure
    if not (
        hits.dtype == pos.dtype == above.dtype == torch.int64
        and key_p.dtype == torch.float64
        and pos.is_contiguous()
        and key_p.is_contiguous()
        and above.is_contiguous()
        and pos.shape == key_p.shape == above.shape
        and hits.dim() == 2
        and hits.shape[1] == 3
    ):
        raise ValueError("native_settle: mismatched band entries, positives, keys or counts")
    scoring = keys.scoring
    assert (mags is not None) == (scoring.magnitudes is not None)
    qsq = keys.query_sq
    if scoring.normalise:
        assert qsq is not None
    # the constant of _ties.key_error_bound (times sum |q g| for dot, times r_d for magnitudes)
    d = qm.shape[1]
    bound = (16.0 if scoring.normalise else 4.0) * (d + 4) * _ties.U64 * _ties.BOUND_SCALE
    q64, first = widened if widened is not None else (None, 0)
    count: int = _kernel()(
        qm.data_ptr(),
        qm.stride(0),
        None if q64 is None else q64.data_ptr(),
        0 if q64 is None else q64.stride(0),
        first,
        gm.data_ptr(),
        gm.stride(0),
        d,
        hits.data_ptr(),
        n,
        q0,
        c0,
        pos.data_ptr(),
        key_p.data_ptr(),
        pos.shape[1],
        above.data_ptr(),
        int(scoring.normalise),
        None if qsq is None else qsq.data_ptr(),
        None if mags is None else mags.data_ptr(),
        bound,
        2 * EPS,
        unsure.data_ptr(),
    )
    return unsure[:count]


def magnitudes64(keys: _ties.ExactKeys) -> Tensor | None:
    """The scoring's magnitudes as :func:`native_settle` reads them (float32 ones convert exactly)."""
    mags = keys.scoring.magnitudes
    return None if mags is None else mags.detach().to(device="cpu", dtype=torch.float64).contiguous()
