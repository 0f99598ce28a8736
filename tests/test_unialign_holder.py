"""UniAlign's Hölder options: mean vs sum uniformity, the alignment weight derived from the KDE bandwidth and
M (checked numerically against the Hölder divergence), the tied bandwidth, argument validation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mmgeom import functional as F
from mmgeom.functional.holder import log_gaussian_product_constant
from mmgeom.geometry import holder_divergence
from mmgeom.losses import create_loss

from reference import alignment_loop, uniformity_loop, unit

NAMES = ["a", "b", "c", "d"]


def unit_batch(m: int, n: int = 6, d: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64)) for k in NAMES[:m]}


def pair_scatter(rows: list[torch.Tensor]) -> float:
    """``P = sum_{k<l} ||a_k - a_l||^2`` by a plain double loop."""
    pairs = itertools.combinations(range(len(rows)), 2)
    return sum(float(((rows[i] - rows[j]) ** 2).sum()) for i, j in pairs)


def uniformity_with_diagonal(z: torch.Tensor, t: float) -> float:
    """``log mean_{i,j} exp(-t ||z_i - z_j||^2)`` over every ordered pair, ``i = j`` included."""
    n = z.shape[0]
    rows = [unit(z[i]) for i in range(n)]
    total = sum(math.exp(-t * float(((rows[i] - rows[j]) ** 2).sum())) for i in range(n) for j in range(n))
    return math.log(total / (n * n))


def test_tied_bandwidth_solves_its_equation() -> None:
    for t, m in ((2.0, 2), (2.0, 4), (0.5, 6)):
        s = F.holder_tied_bandwidth(t, m)
        assert (m - 1) / (4 * s * s) == pytest.approx(t, rel=1e-12)
    assert F.holder_tied_bandwidth(2.0, 2) == pytest.approx(math.sqrt(1 / 8), rel=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4, 6])
def test_kappa_is_the_pair_scatter_ratio(m: int) -> None:
    """``P_i = M^2 A_i`` for centroid alignment; ``P_i <= kappa A_i`` for anchor, with equality attained."""
    g = torch.Generator().manual_seed(m)
    s = 0.7
    w_c = F.holder_alignment_weight(s, m, "centroid")
    w_a = F.holder_alignment_weight(s, m, "anchor")
    scale = 1 / (2 * m * s * s)
    for _ in range(20):
        rows = [torch.randn(3, generator=g, dtype=torch.float64) for _ in range(m)]
        mean = sum(rows) / m
        a_centroid = sum(float(((r - mean) ** 2).sum()) for r in rows) / m
        a_anchor = sum(float(((r - rows[0]) ** 2).sum()) for r in rows[1:]) / (m - 1)
        p = pair_scatter(rows)
        assert scale * p == pytest.approx(w_c * a_centroid, rel=1e-12)
        assert scale * p <= w_a * a_anchor * (1 + 1e-12)
    # The anchor constant is attained: deviations from the anchor summing to zero (M >= 3), any at M = 2.
    devs = [torch.randn(3, generator=g, dtype=torch.float64) for _ in range(m - 2)]
    devs.append(-sum(devs) if devs else torch.randn(3, generator=g, dtype=torch.float64))
    anchor = torch.randn(3, generator=g, dtype=torch.float64)
    rows = [anchor] + [anchor + d for d in devs]
    a_anchor = sum(float((d**2).sum()) for d in devs) / (m - 1)
    assert scale * pair_scatter(rows) == pytest.approx(w_a * a_anchor, rel=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_holder_weight_is_the_exact_slope_of_the_divergence(m: int) -> None:
    """Well-separated rows, each modality a translate of one point set: the own terms do not move and only
    the paired tuples count, so ``D_H(delta) - D_H(0) = w * A(delta)`` exactly (``A`` the centroid
    alignment). Checked on :func:`mmgeom.functional.kde_holder_divergence`, which knows nothing of
    UniAlign."""
    s, n, d = 0.1, 4, 4
    base = 5.0 * torch.eye(n, d, dtype=torch.float64)  # rows sqrt(50) apart: cross-row kernels ~ e^-600
    g = torch.Generator().manual_seed(1)
    shifts = [torch.randn(d, generator=g, dtype=torch.float64) for _ in range(m)]
    w = F.holder_alignment_weight(s, m, "centroid")
    d0 = float(F.kde_holder_divergence([base.clone() for _ in range(m)], s))
    for delta in (0.02, 0.05, 0.1):
        sets = [base + delta * v for v in shifts]
        mean = sum(delta * v for v in shifts) / m
        a_centroid = sum(float(((delta * v - mean) ** 2).sum()) for v in shifts) / m
        d_h = float(F.kde_holder_divergence(sets, s))
        assert d_h - d0 == pytest.approx(w * a_centroid, rel=1e-9)


@pytest.mark.parametrize("alignment", ["anchor", "centroid"])
@pytest.mark.parametrize("m", [2, 3, 4])
def test_mean_loss_bounds_the_holder_divergence(m: int, alignment: str) -> None:
    """``D_H <= mean_m Ubar_t(Z^m) + w A + (M - 1) log B`` at the tied bandwidth (``Ubar``: uniformity with
    the ``i = j`` pairs), against :func:`mmgeom.geometry.holder_divergence` (exact path)."""
    t = 2.0
    for seed in range(3):
        b = unit_batch(m, seed=seed)
        n = next(iter(b.values())).shape[0]
        loss = create_loss("unialign", alignment=alignment, align_weight="holder", t=t)
        out = loss(b)
        s = F.holder_tied_bandwidth(t, m)
        w = F.holder_alignment_weight(s, m, alignment)
        assert loss.alignment_weight(m) == pytest.approx(w, rel=1e-12)
        u_bar = [uniformity_with_diagonal(z, t) for z in b.values()]
        # The loss's own (off-diagonal) uniformity is tied to u_bar by exp(Ubar) = (1 - 1/B) exp(U) + 1/B.
        for z, ub in zip(b.values(), u_bar, strict=True):
            u = uniformity_loop(z, t)
            assert math.exp(ub) == pytest.approx((1 - 1 / n) * math.exp(u) + 1 / n, rel=1e-9)
        bound = sum(u_bar) / m + w * float(out.terms["align"]) + (m - 1) * math.log(n)
        d_h = holder_divergence(b, s, method="exact")
        assert 0.0 <= d_h <= bound + 1e-9


def test_m2_own_term_is_the_uniformity_at_the_tied_scale() -> None:
    """For ``M = 2``, ``log int p^2 - log C = Ubar_t`` with ``t = 1 / (4 s^2)``: the bound's first step is an
    equality there."""
    z = unit_batch(1, n=7, seed=3)["a"]
    s = F.holder_tied_bandwidth(2.0, 2)
    own = float(F.kde_log_product_integral([z, z], s)) - log_gaussian_product_constant(2, 4, s)
    assert own == pytest.approx(uniformity_with_diagonal(z, 2.0), rel=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("alignment", ["anchor", "centroid"])
def test_loss_total_with_holder_weight(reduction: str, alignment: str) -> None:
    m = 3
    b = unit_batch(m, seed=5)
    loss = create_loss(
        "unialign",
        alignment=alignment,
        align_weight="holder",
        holder_bandwidth=0.6,
        lambda_align=0.5,
        uniformity_reduction=reduction,
    )
    out = loss(b)
    uni = sum(uniformity_loop(z, 2.0) for z in b.values())
    w = 0.5 * F.holder_alignment_weight(0.6, m, alignment) * (m if reduction == "sum" else 1)
    if alignment == "anchor":
        align = sum(alignment_loop(b["a"], b[k], 2.0) for k in ("b", "c")) / 2
    else:
        align = float(out.terms["align"])  # checked against a loop in test_unialign.py
    expected = (uni / m if reduction == "mean" else uni) + w * align
    assert float(out.total) == pytest.approx(expected, rel=1e-9)
    assert loss.bandwidth(m) == 0.6


def test_sum_reduction_is_m_times_the_mean_loss() -> None:
    """Under the Hölder weight the sum reduction is the mean loss scaled by M: same minimiser."""
    b = unit_batch(4, seed=2)
    mean = create_loss("unialign", align_weight="holder")(b).total
    total = create_loss("unialign", align_weight="holder", uniformity_reduction="sum")(b).total
    assert float(total) == pytest.approx(4 * float(mean), rel=1e-12)


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="uniformity_reduction: expected one of"):
        create_loss("unialign", uniformity_reduction="max")
    with pytest.raises(ValueError, match="align_weight: expected one of"):
        create_loss("unialign", align_weight="auto")
    with pytest.raises(ValueError, match="holder_bandwidth: only used with align_weight='holder'"):
        create_loss("unialign", holder_bandwidth=0.5)
    with pytest.raises(ValueError, match="holder_bandwidth: expected a finite value > 0"):
        create_loss("unialign", align_weight="holder", holder_bandwidth=0.0)
    with pytest.raises(ValueError, match="num_modalities: expected an integer >= 2"):
        F.holder_alignment_weight(0.5, 1)
    with pytest.raises(ValueError, match="num_modalities: expected an integer >= 2"):
        F.holder_tied_bandwidth(2.0, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alignment: expected one of"):
        F.holder_alignment_weight(0.5, 3, "mean")
    with pytest.raises(ValueError, match="bandwidth: expected a finite value > 0"):
        F.holder_alignment_weight(-1.0, 3)


def test_diagnostic_bandwidth_tied_to_t() -> None:
    b = unit_batch(3, seed=4)
    tied = holder_divergence(b, t=1.0, method="exact")
    assert tied == holder_divergence(b, F.holder_tied_bandwidth(1.0, 3), method="exact")
    assert tied != holder_divergence(b, 0.5, method="exact")  # t = 2 would tie to s = 0.5 at M = 3
    with pytest.raises(ValueError, match="bandwidth: give exactly one of bandwidth and t"):
        holder_divergence(b, 0.5, t=2.0)
    with pytest.raises(ValueError, match="bandwidth: give exactly one"):
        holder_divergence(b)
    with pytest.raises(ValueError, match="t: expected a finite value > 0"):
        holder_divergence(b, t=-1.0)
