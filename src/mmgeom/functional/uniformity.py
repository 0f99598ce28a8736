"""Pairwise log-mean-exp potentials: Wang–Isola uniformity and DAGR dispersion."""

from __future__ import annotations

from torch import Tensor

from .._validation import check_embeddings, check_positive
from ._common import check_presence, normalize, normalize_present
from ._pairwise import gaussian_potential_unit


def gaussian_potential(
    z: Tensor, t: float, chunk_size: int | None = None, *, mask: Tensor | None = None
) -> Tensor:
    """``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` of L2-normalised rows (the shared equation).

    Exact at any size: above ~8k rows (fp32) it switches to row blocks recomputed in backward, so peak
    memory stays O(chunk * B); ``chunk_size`` forces a block size.

    ``mask`` (``(B,)`` bool, True = present): the potential of the present rows alone — the same value as
    ``z[mask]`` without selecting rows, so no value is read on the host — and 0 with fewer than two present
    rows. Absent rows get zero gradient whatever they hold.
    """
    check_positive(t, "t")
    if mask is None:
        check_embeddings(z, "z", min_rows=2, normalised=True)
        return gaussian_potential_unit(normalize(z), t, chunk_size)
    check_embeddings(z, "z", min_rows=1, normalised=False)
    check_presence(mask, z, "z")
    return gaussian_potential_unit(normalize_present(z, mask), t, chunk_size, mask)


def uniformity(
    z: Tensor, t: float = 2.0, chunk_size: int | None = None, *, mask: Tensor | None = None
) -> Tensor:
    """Wang–Isola uniformity ``log mean_{i<j} exp(-t ||z_i - z_j||^2)`` on L2-normalised rows.

    Lower is more uniform: about ``-2t`` for many points spread evenly over a high-dimensional sphere,
    ``-4t`` for two antipodal points, 0 for a collapsed batch.

    Reference: Wang & Isola, ICML 2020 (see :func:`alignment`).

    Args:
        z: ``(B, D)`` raw embeddings, ``B >= 2``.
        t: Gaussian-potential scale ``> 0`` (2 in the paper).
        chunk_size: rows per block; ``None`` chooses dense or chunked from the size.
        mask: optional ``(B,)`` bool presence: the uniformity of the present rows (pairs ``i < j`` of
            present rows), 0 with fewer than two (see :func:`gaussian_potential`).

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
        >>> float(uniformity(z, t=2.0))
        -8.0
    """
    return gaussian_potential(z, t, chunk_size, mask=mask)


def dispersion(z: Tensor, tau: float, chunk_size: int | None = None, *, mask: Tensor | None = None) -> Tensor:
    """DAGR's Gaussian dispersion ``log mean_{i != j} exp(-||z_i - z_j||^2 / tau)`` on normalised rows.

    Minimising it spreads one modality's embeddings over the sphere (against low-rank collapse). It is the
    uniformity potential with ``t = 1 / tau``; ``mask`` as in :func:`gaussian_potential`.

    Reference: Xia et al., "Dispersive and Anchoring Geometric Regularizer", arXiv 2601.21670.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
        >>> float(dispersion(z, tau=0.5))
        -8.0
    """
    check_positive(tau, "tau")
    return gaussian_potential(z, 1.0 / tau, chunk_size, mask=mask)
