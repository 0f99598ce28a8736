"""Hölder divergence between Gaussian kernel density estimates, computed in log space.

Each point set ``Z^m`` (``B_m`` rows in ``R^d``) defines the Gaussian KDE
``p_m(x) = (1/B_m) sum_i N(x; z_i^m, s^2 I_d)``. The integral of a product of ``M`` isotropic Gaussians
with a common bandwidth ``s`` is closed form,

    ``int prod_k N(x; a_k, s^2 I) dx = C exp(-P / (2 M s^2))``,  ``P = sum_{k<l} ||a_k - a_l||^2``,
    ``C = (2 pi s^2)^(-(M-1) d / 2) M^(-d / 2)``,

so ``int prod_m p_m`` is the mean of that kernel over the ``prod_m B_m`` tuples taking one row per set.
The tuple kernel factorises over a sequence: adding a point ``c`` to a partial tuple of ``k`` points
with mean ``mu`` and scatter ``W = sum ||a - mu||^2`` adds ``W + k ||mu - c||^2`` to ``P``. Both paths use
this, with the sum over the last set always done exactly (one matrix product per partial tuple):

* ``"exact"``: enumerate every partial tuple of the first ``M - 1`` sets (chunked), ``O(prod_m B_m d)``
  time, ``O(chunk B_M)`` memory.
* ``"mc"``: sequential importance sampling. Draw the first row uniformly (stratified by a random
  permutation), then each next row ``j`` with probability proportional to its kernel increment
  ``exp(-(W + k ||mu - c_j||^2) / (2 M s^2))``; the sample's weight is the product of the increments'
  means, an unbiased estimate of the tuple mean. ``O(n (M - 1) B d)`` time for ``n`` samples,
  ``O(chunk B)`` memory. The log of the averaged weights is biased low by about ``Var(w)/(2 n E[w]^2)``.

Sampling ``x`` from the pooled KDE instead (importance sampling in ``R^d``) has log-weights whose spread
grows like ``(M - 1) sqrt(d / 2)`` from the Gaussian noise alone, which is useless for ``d`` in the tens;
sampling tuples keeps the integral over ``x`` analytic.

Reference: Yin et al., "Towards Uniformity and Alignment for Multimodal Representation Learning",
arXiv 2602.09507 (the Hölder-divergence argument for UniAlign).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._validation import check_choice, check_embeddings, check_positive
from ._common import accum_dtype

#: Elements of one ``(chunk, B)`` block of kernel logits (peak memory of the chunked loops).
BLOCK_ELEMENTS = 1 << 21


def _check_sets(zs: Sequence[Tensor], what: str, min_sets: int) -> list[Tensor]:
    if len(zs) < min_sets:
        raise ValueError(f"{what}: expected at least {min_sets} point sets, got {len(zs)}")
    out = []
    for k, z in enumerate(zs):
        check_embeddings(z, f"z{k}")
        if z.shape[1] != zs[0].shape[1]:
            raise ValueError(
                f"z{k}: expected dimension d = {zs[0].shape[1]} as z0 {tuple(zs[0].shape)}, "
                f"got shape {tuple(z.shape)}"
            )
        out.append(z)
    dtype = torch.float64 if any(accum_dtype(z) == torch.float64 for z in out) else torch.float32
    return [z.to(dtype) for z in out]


def log_gaussian_product_constant(num_factors: int, dim: int, bandwidth: float) -> float:
    """``log C``, ``C = (2 pi s^2)^(-(M-1) d/2) M^(-d/2)``: the Gaussian product integral at ``P = 0``."""
    m, d, s2 = num_factors, dim, bandwidth * bandwidth
    return -0.5 * (m - 1) * d * math.log(2.0 * math.pi * s2) - 0.5 * d * math.log(m)


def _add_point(mu: Tensor, scatter: Tensor, k: int, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Append row ``a`` to partial tuples of ``k`` points: the new mean, the new scatter and the increment.

    The increment ``sum_{l<=k} ||a_l - a||^2 = W + k ||mu - a||^2`` is what ``a`` adds to ``P``.
    (Out of place, so the exact path stays differentiable.)
    """
    d2 = (mu - a).pow(2).sum(dim=1)
    increment = scatter + k * d2
    return mu + (a - mu) / (k + 1), scatter + d2 * (k / (k + 1)), increment


def _increment_logits(
    mu: Tensor, scatter: Tensor, k: int, cand: Tensor, cand_sq: Tensor, scale: float
) -> Tensor:
    """``(n, B)`` log kernel increments ``-scale (W + k ||mu - c_j||^2)`` of every candidate row ``c_j``.

    Expanded as ``-scale (W + k ||mu||^2) - scale k ||c_j||^2 + 2 scale k mu . c_j``: one broadcast add and
    one fused matrix product over the ``(n, B)`` block.
    """
    row = -scale * (scatter + k * (mu * mu).sum(dim=1))
    bias = row[:, None] + (-scale * k) * cand_sq
    return torch.addmm(bias, mu, cand.T, alpha=2.0 * scale * k)


def _log_tuple_mean_exact(sets: list[Tensor], scale: float) -> Tensor:
    """``log mean_{tuples} exp(-scale P)`` by enumerating the partial tuples of all but the last set."""
    first, middle, last = sets[0], sets[1:-1], sets[-1]
    last_sq = (last * last).sum(dim=1)[None, :]
    sizes = [z.shape[0] for z in sets[:-1]]
    n_prefix = math.prod(sizes)
    chunk = max(1, BLOCK_ELEMENTS // last.shape[0])
    parts = []
    for start in range(0, n_prefix, chunk):
        flat = torch.arange(start, min(start + chunk, n_prefix), device=first.device)
        # Row index of set k in the flat prefix index (the last set of the prefix varies fastest).
        digits = []
        for size in reversed(sizes):
            digits.append(flat % size)
            flat = flat // size
        digits.reverse()
        mu = first[digits[0]]
        scatter = mu.new_zeros(mu.shape[0])
        pair_sum = mu.new_zeros(mu.shape[0])
        for k, (z, idx) in enumerate(zip(middle, digits[1:], strict=True), start=1):
            mu, scatter, increment = _add_point(mu, scatter, k, z[idx])
            pair_sum = pair_sum + increment
        logits = _increment_logits(mu, scatter, len(sets) - 1, last, last_sq, scale)
        parts.append(torch.logsumexp(logits, dim=1) - scale * pair_sum)
    total = torch.logsumexp(torch.cat(parts), dim=0)
    return total - sum(math.log(s) for s in [*sizes, last.shape[0]])


@torch.no_grad()
def _log_tuple_mean_mc(
    sets: list[Tensor], scale: float, n_samples: int, generator: torch.Generator
) -> Tensor:
    """Sequential importance-sampling estimate of ``log mean_{tuples} exp(-scale P)``."""
    first, rest = sets[0], sets[1:]
    device = first.device
    # All randomness is drawn up front, so the estimate does not depend on the chunk size.
    perm = torch.randperm(first.shape[0], generator=generator, device=device)
    start_rows = perm[torch.arange(n_samples, device=device) % first.shape[0]]
    uniforms = torch.rand(len(rest), n_samples, generator=generator, device=device, dtype=first.dtype)
    chunk = max(1, BLOCK_ELEMENTS // max(z.shape[0] for z in rest))
    rest_sq = [(z * z).sum(dim=1)[None, :] for z in rest]
    parts = []
    for start in range(0, n_samples, chunk):
        rows = slice(start, min(start + chunk, n_samples))
        mu = first[start_rows[rows]]
        scatter = mu.new_zeros(mu.shape[0])
        log_w = mu.new_zeros(mu.shape[0])
        for k, (z, z_sq) in enumerate(zip(rest, rest_sq, strict=True), start=1):
            logits = _increment_logits(mu, scatter, k, z, z_sq, scale)
            top = logits.amax(dim=1, keepdim=True)
            if k == len(rest):  # the last set is summed exactly: no draw
                log_w = log_w + torch.logsumexp(logits, dim=1) - math.log(z.shape[0])
                break
            cdf = (logits - top).exp_().cumsum_(dim=1)
            # Weight factor: the mean increment over the candidates; the draw is proportional to it.
            log_w = log_w + top[:, 0] + cdf[:, -1].log() - math.log(z.shape[0])
            target = uniforms[k - 1, rows, None] * cdf[:, -1:]
            pick = torch.searchsorted(cdf, target, right=True)[:, 0].clamp_max(z.shape[0] - 1)
            mu, scatter, _ = _add_point(mu, scatter, k, z[pick])
        parts.append(log_w)
    return torch.logsumexp(torch.cat(parts), dim=0) - math.log(n_samples)


def _log_tuple_mean(
    sets: list[Tensor], scale: float, method: str, n_samples: int, generator: torch.Generator | None
) -> Tensor:
    if method == "exact":
        return _log_tuple_mean_exact(sets, scale)
    if generator is None:
        generator = torch.Generator(device=sets[0].device).manual_seed(0)
    return _log_tuple_mean_mc(sets, scale, n_samples, generator)


def kde_log_product_integral(
    zs: Sequence[Tensor],
    bandwidth: float,
    *,
    method: str = "exact",
    n_samples: int = 2048,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``log int prod_m p_m(x) dx`` for Gaussian KDEs ``p_m`` of bandwidth ``s`` on the given points.

    The points are used as given (no normalisation). With the same set repeated ``M`` times this is
    ``log int p^M``. See the module docstring for the two methods and their cost. The exact path is
    differentiable; the Monte-Carlo path returns a value without gradient.

    Args:
        zs: ``M >= 1`` tensors ``(B_m, d)``; the sets may have different sizes but share ``d``.
        bandwidth: kernel standard deviation ``s > 0``.
        method: ``"exact"`` (enumerates ``prod_m B_m`` tuples) or ``"mc"`` (sequential importance sampling).
        n_samples: number of sampled partial tuples for ``"mc"``.
        generator: random generator for ``"mc"`` (default: a fresh one seeded with 0).

    Returns:
        Scalar in the accumulation dtype (float32, or float64 when an input is float64).

    Example:
        >>> z = torch.zeros(1, 1)  # int N(x; 0, 1)^2 dx = 1 / (2 sqrt(pi))
        >>> round(float(kde_log_product_integral([z, z], 1.0).exp()), 6)
        0.282095
    """
    sets = _check_sets(zs, "kde_log_product_integral", 1)
    s = check_positive(bandwidth, "bandwidth")
    check_choice(method, "method", ("exact", "mc"))
    if int(n_samples) < 1:
        raise ValueError(f"n_samples: expected an integer >= 1, got {n_samples!r}")
    m, d = len(sets), sets[0].shape[1]
    if m == 1:
        return sets[0].new_zeros(())  # a KDE integrates to one
    offset = torch.cat(sets).mean(dim=0)
    centred = [z - offset for z in sets]
    scale = 1.0 / (2.0 * m * s * s)
    log_mean = _log_tuple_mean(centred, scale, method, int(n_samples), generator)
    return log_mean + log_gaussian_product_constant(m, d, s)


def kde_holder_divergence(
    zs: Sequence[Tensor],
    bandwidth: float,
    *,
    method: str = "exact",
    n_samples: int = 2048,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hölder divergence ``D_H = -log int prod_m p_m + (1/M) sum_m log int p_m^M`` of Gaussian KDEs.

    By Hölder's inequality ``int prod_m p_m <= prod_m (int p_m^M)^(1/M)``, so ``D_H >= 0`` with equality iff
    all ``p_m`` are equal. The constant ``C`` of the Gaussian product integral cancels between the terms;
    the points are used as given (normalise them first for embeddings on the sphere). For ``M = 2`` this is
    the Cauchy–Schwarz divergence of the two KDEs. Differentiable on the exact path only.

    Reference: Yin et al., arXiv 2602.09507.

    Args:
        zs: ``M >= 2`` tensors ``(B_m, d)``.
        bandwidth: kernel standard deviation ``s > 0``.
        method: ``"exact"`` or ``"mc"`` (see :func:`kde_log_product_integral`).
        n_samples: number of sampled partial tuples per term for ``"mc"``.
        generator: random generator for ``"mc"`` (default: a fresh one seeded with 0).

    Example:
        >>> a = torch.tensor([[0.0], [1.0]])
        >>> float(kde_holder_divergence([a, a.clone()], 0.5))
        0.0
    """
    sets = _check_sets(zs, "kde_holder_divergence", 2)
    s = check_positive(bandwidth, "bandwidth")
    check_choice(method, "method", ("exact", "mc"))
    if int(n_samples) < 1:
        raise ValueError(f"n_samples: expected an integer >= 1, got {n_samples!r}")
    if method == "mc" and generator is None:
        generator = torch.Generator(device=sets[0].device).manual_seed(0)
    m = len(sets)
    # One offset for every term: P only depends on differences, and centring limits cancellation.
    offset = torch.cat(sets).mean(dim=0)
    centred = [z - offset for z in sets]
    scale = 1.0 / (2.0 * m * s * s)
    cross = _log_tuple_mean(centred, scale, method, int(n_samples), generator)
    own = torch.stack([_log_tuple_mean([z] * m, scale, method, int(n_samples), generator) for z in centred])
    return own.mean() - cross


def _check_modalities(num_modalities: int) -> int:
    m = int(num_modalities)
    if isinstance(num_modalities, bool) or m != num_modalities or m < 2:
        raise ValueError(f"num_modalities: expected an integer >= 2, got {num_modalities!r}")
    return m


def holder_tied_bandwidth(t: float, num_modalities: int) -> float:
    """KDE bandwidth ``s`` tied to the uniformity scale ``t``: ``t = (M - 1) / (4 s^2)``.

    With this ``s``, the own term ``log int p_m^M`` of the Hölder divergence is bounded by the Wang–Isola
    uniformity of modality ``m`` at scale ``t`` (generalised Hölder inequality over the ``M(M-1)/2`` pair
    kernels of a tuple; equality for ``M = 2``). Derivation: docs/losses.md, "UniAlign and the Hölder
    divergence".

    Example:
        >>> holder_tied_bandwidth(2.0, 2)  # t = 1 / (4 s^2)
        0.3535533905932738
    """
    check_positive(t, "t")
    m = _check_modalities(num_modalities)
    return math.sqrt((m - 1) / (4.0 * float(t)))


def holder_alignment_weight(bandwidth: float, num_modalities: int, alignment: str = "anchor") -> float:
    """Weight ``kappa_M / (2 M s^2)`` of the alignment term in the UniAlign upper bound of ``D_H``.

    The cross term of the Hölder divergence satisfies
    ``-log int prod_m p_m <= -log C + (M - 1) log B + mean_i P_i / (2 M s^2)`` (keep only the ``B`` tuples
    of paired rows, then Jensen), with ``P_i = sum_{k<l} ||z_i^k - z_i^l||^2`` the pair scatter of row
    ``i``'s tuple, and ``P_i <= kappa_M A_i`` for the per-row alignment ``A_i`` of the loss:

    * ``"centroid"`` (``A_i = (1/M) sum_m ||z_i^m - c_i||^2``): ``P_i = M^2 A_i`` exactly, ``kappa = M^2``;
    * ``"anchor"`` (``A_i = 1/(M-1) sum_{n != a} ||z_i^n - z_i^a||^2``): ``P_i = M sum_m ||z_i^m - c_i||^2
      <= M sum_m ||z_i^m - z_i^a||^2``, so ``kappa = M (M - 1)``, the smallest constant for ``M >= 3``
      (equality when the deviations from the anchor sum to zero); for ``M = 2``, ``P_i = A_i``, ``kappa = 1``.

    With the 1/M-weighted (mean) uniformity this makes the loss an upper bound of ``D_H`` up to the
    constant ``(M - 1) log B`` (docs/losses.md).

    Args:
        bandwidth: KDE bandwidth ``s > 0``.
        num_modalities: ``M >= 2``.
        alignment: ``"anchor"`` or ``"centroid"``.

    Example:
        >>> holder_alignment_weight(0.5, 2, "anchor")  # 1 / (4 s^2)
        1.0
    """
    s = check_positive(bandwidth, "bandwidth")
    m = _check_modalities(num_modalities)
    check_choice(alignment, "alignment", ("anchor", "centroid"))
    if alignment == "centroid":
        kappa = m * m
    elif m == 2:
        kappa = 1
    else:
        kappa = m * (m - 1)
    return kappa / (2.0 * m * s * s)
