"""Hölder divergence between the modalities' Gaussian KDEs on the unit sphere (UniAlign's theory)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .._validation import check_choice, check_positive
from ..functional import normalize
from ..functional.holder import holder_tied_bandwidth, kde_holder_divergence
from ._batch import present_rows, select_rows, split_batch

#: Default kernel bandwidth on the unit sphere (squared distances lie in ``[0, 4]``).
DEFAULT_BANDWIDTH = 0.5

#: Default largest number of ``B^M`` tuples that ``method="auto"`` enumerates exactly.
MAX_TUPLES = 1 << 22

#: Default number of sampled tuples per term of the Monte-Carlo estimator.
N_SAMPLES = 2048


def holder_method(rows: int, modalities: int, method: str = "auto", max_tuples: int = MAX_TUPLES) -> str:
    """Path of :func:`holder_divergence`: ``"exact"`` if ``M = 2`` or ``B^M <= max_tuples``, else ``"mc"``."""
    check_choice(method, "method", ("auto", "exact", "mc"))
    if method != "auto":
        return method
    if modalities == 2 or rows**modalities <= max_tuples:  # Python integers: exact
        return "exact"
    return "mc"


@torch.no_grad()
def holder_divergence(
    batch: Mapping[str, Tensor],
    bandwidth: float | None = None,
    *,
    t: float | None = None,
    method: str = "auto",
    max_tuples: int = MAX_TUPLES,
    n_samples: int = N_SAMPLES,
    seed: int = 0,
) -> float:
    """Hölder divergence ``D_H = -log int prod_m p_m + (1/M) sum_m log int p_m^M`` between modality KDEs.

    ``p_m(x) = (1/B) sum_i N(x; z_i^m, s^2 I_d)`` is the Gaussian KDE of modality ``m``'s L2-normalised rows
    in ``R^d``. ``D_H >= 0`` by Hölder's inequality, ``= 0`` iff all the KDEs are equal (e.g. identical
    modalities); it grows as the modalities' distributions move apart. Everything is computed in log space
    from the closed form of Gaussian product integrals (:mod:`mmgeom.functional.holder`).

    Paths and cost (``B`` rows, ``M`` modalities, ``d`` dimensions, ``n = n_samples``):

    * ``"exact"``: every one of the ``B^M`` tuples, ``O(M B^M d)`` time; with ``M = 2`` it is the exact
      ``O(B^2 d)`` pairwise sum (the Cauchy–Schwarz divergence).
    * ``"mc"``: sequential importance sampling of tuples, ``O(M^2 n B d)`` time; the log of an unbiased
      estimate, so ``D_H`` can come out slightly negative when the KDEs are nearly equal.
    * ``"auto"``: exact when ``M = 2`` or ``B^M <= max_tuples``, Monte Carlo otherwise.

    Memory is ``O(B d + chunk B)`` on every path (chunks of ``2^21`` kernel values). The Monte-Carlo draws
    come from a generator seeded with ``seed``: the same inputs give the same value.

    Reference: Yin et al., "Towards Uniformity and Alignment for Multimodal Representation Learning",
    arXiv 2602.09507.

    Args:
        batch: ``{modality: (B, D)}`` raw embeddings, ``M >= 2``; with a ``"mask"``, only rows where every
            modality is present are used.
        bandwidth: kernel standard deviation ``s > 0`` (``0.5`` is a reasonable scale on the sphere).
        t: instead of ``bandwidth``, the uniformity scale of a UniAlign loss: the bandwidth is then tied to
            it, ``s = sqrt((M - 1) / (4 t))`` (:func:`mmgeom.functional.holder_tied_bandwidth`), the
            bandwidth at which that loss bounds ``D_H`` (docs/losses.md). Give exactly one of the two.
        method: ``"auto"``, ``"exact"`` or ``"mc"``.
        max_tuples: the ``"auto"`` budget of exactly enumerated tuples.
        n_samples: sampled tuples per term for ``"mc"``.
        seed: seed of the Monte-Carlo generator.

    Example:
        >>> z = torch.randn(16, 8)
        >>> holder_divergence({"a": z, "b": 2 * z}, bandwidth=0.5)
        0.0
    """
    mods, mask = split_batch(batch, min_rows=1)
    names = list(mods)
    mods = select_rows(mods, names, present_rows(mask, names), min_rows=1, what="holder_divergence")
    if (bandwidth is None) == (t is None):
        raise ValueError(
            "bandwidth: give exactly one of bandwidth and t (the tied bandwidth), "
            f"got bandwidth={bandwidth!r}, t={t!r}"
        )
    if t is not None:
        s = holder_tied_bandwidth(t, len(names))
    else:
        s = check_positive(float(bandwidth), "bandwidth")  # type: ignore[arg-type]
    if int(max_tuples) < 1:
        raise ValueError(f"max_tuples: expected an integer >= 1, got {max_tuples!r}")
    if int(n_samples) < 1:
        raise ValueError(f"n_samples: expected an integer >= 1, got {n_samples!r}")
    zs = [normalize(z) for z in mods.values()]
    path = holder_method(zs[0].shape[0], len(zs), method, int(max_tuples))
    generator = None
    if path == "mc":
        generator = torch.Generator(device=zs[0].device).manual_seed(int(seed))
    value = kde_holder_divergence(zs, s, method=path, n_samples=int(n_samples), generator=generator)
    return float(value)
