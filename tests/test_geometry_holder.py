"""Hölder divergence of Gaussian KDEs: numerical integration, brute-force tuples, properties, validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from mmgeom import geometry
from mmgeom.functional import holder as fh

# ---------------------------------------------------------------------------------------------- references


def kde(points: np.ndarray, sigma: float):
    """``p(x) = (1/B) sum_i N(x; points_i, sigma^2 I)`` for x of shape (..., d), straight from the formula."""
    b, d = points.shape

    def p(x: np.ndarray) -> np.ndarray:
        diff = x[..., None, :] - points  # (..., B, d)
        sq = (diff**2).sum(-1)
        return np.exp(-sq / (2 * sigma**2)).sum(-1) / (b * (2 * math.pi * sigma**2) ** (d / 2))

    return p


def holder_by_quad_1d(sets: list[np.ndarray], sigma: float) -> tuple[float, float]:
    """(log int prod p_m, D_H) in d = 1 by adaptive quadrature of the KDE formula."""
    ps = [kde(s, sigma) for s in sets]
    m = len(sets)
    lo = min(s.min() for s in sets) - 12 * sigma
    hi = max(s.max() for s in sets) + 12 * sigma

    def quad(f):
        def g(x: float) -> float:
            return float(f(np.array([[x]]))[0])

        return integrate.quad(g, lo, hi, epsabs=0, epsrel=1e-11, limit=400)[0]

    cross = quad(lambda x: np.prod([p(x) for p in ps], axis=0))
    own = [quad(lambda x, p=p: p(x) ** m) for p in ps]
    return math.log(cross), -math.log(cross) + sum(math.log(v) for v in own) / m


def holder_by_grid_2d(sets: list[np.ndarray], sigma: float, h: float = 0.02) -> tuple[float, float]:
    """(log int prod p_m, D_H) in d = 2 by a fine uniform grid (spectrally accurate for Gaussians)."""
    allp = np.concatenate(sets)
    lo, hi = allp.min(0) - 10 * sigma, allp.max(0) + 10 * sigma
    xs = np.arange(lo[0], hi[0], h)
    ys = np.arange(lo[1], hi[1], h)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1)
    dens = [kde(s, sigma)(grid) for s in sets]
    m = len(sets)
    cross = np.prod(dens, axis=0).sum() * h * h
    own = [(p**m).sum() * h * h for p in dens]
    return math.log(cross), -math.log(cross) + sum(math.log(v) for v in own) / m


def log_product_integral_bruteforce(sets: list[torch.Tensor], sigma: float) -> float:
    """Mean over every tuple of the closed-form Gaussian product integral, plain Python in fp64."""
    m, d = len(sets), sets[0].shape[1]
    log_c = -0.5 * (m - 1) * d * math.log(2 * math.pi * sigma**2) - 0.5 * d * math.log(m)
    vals = []
    for tup in itertools.product(*[range(s.shape[0]) for s in sets]):
        a = [sets[k][i].double() for k, i in enumerate(tup)]
        p = sum(float(((a[k] - a[j]) ** 2).sum()) for k in range(m) for j in range(k + 1, m))
        vals.append(-p / (2 * m * sigma**2))
    top = max(vals)
    return log_c + top + math.log(sum(math.exp(v - top) for v in vals) / len(vals))


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sphere_batch(b: int, m: int, d: int, seed: int, spread: float = 0.8, shift: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, d, generator=g, dtype=torch.float64)
    return {
        f"m{k}": base
        + spread * torch.randn(b, d, generator=g, dtype=torch.float64)
        + shift * torch.randn(1, d, generator=g, dtype=torch.float64)
        for k in range(m)
    }


# ----------------------------------------------------------------------------------- numerical integration


@pytest.mark.parametrize(("m", "b"), [(2, 4), (3, 3)])
def test_matches_quadrature_in_1d_raw_points(m: int, b: int) -> None:
    rng = np.random.default_rng(m)
    sets = [rng.normal(0.4 * k, 1.0, size=(b, 1)) for k in range(m)]
    sigma = 0.6
    ref_log, ref_dh = holder_by_quad_1d(sets, sigma)
    zs = [torch.from_numpy(s) for s in sets]
    assert float(fh.kde_log_product_integral(zs, sigma)) == pytest.approx(ref_log, abs=1e-8)
    assert float(fh.kde_holder_divergence(zs, sigma)) == pytest.approx(ref_dh, abs=1e-8)
    assert ref_dh > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("m", "b"), [(2, 5), (3, 4)])
def test_matches_grid_integral_in_2d_on_the_circle(m: int, b: int, dtype: torch.dtype) -> None:
    rng = np.random.default_rng(10 + m)
    raw = [rng.normal(0, 1, size=(b, 2)) + np.array([1.5, 0.5 * k]) for k in range(m)]
    sigma = 0.4
    # The diagnostic normalises rows, so the reference integrates the KDEs of the unit vectors.
    _, ref = holder_by_grid_2d([unit_rows(r) for r in raw], sigma)
    batch = {f"m{k}": torch.from_numpy(r).to(dtype) for k, r in enumerate(raw)}
    tol = 1e-7 if dtype == torch.float64 else 2e-4
    assert geometry.holder_divergence(batch, sigma, method="exact") == pytest.approx(ref, abs=tol, rel=tol)


def test_matches_grid_log_integral_in_2d_raw_points() -> None:
    rng = np.random.default_rng(7)
    sets = [rng.normal(0, 0.7, size=(4, 2)) + 0.3 * k for k in range(3)]
    ref_log, _ = holder_by_grid_2d(sets, 0.5)
    got = float(fh.kde_log_product_integral([torch.from_numpy(s) for s in sets], 0.5))
    assert got == pytest.approx(ref_log, abs=1e-8)


def test_matches_quadrature_in_1d_normalised() -> None:
    # In d = 1 a normalised row is +-1: the KDEs differ only in how many points sit at each sign.
    batch = {
        "a": torch.tensor([[2.0], [-0.5], [1.0], [3.0]], dtype=torch.float64),
        "b": torch.tensor([[-1.0], [-2.0], [0.1], [-4.0]], dtype=torch.float64),
    }
    ref_sets = [np.sign(v.numpy()) for v in batch.values()]
    _, ref = holder_by_quad_1d(ref_sets, 0.7)
    assert geometry.holder_divergence(batch, 0.7) == pytest.approx(ref, abs=1e-8)


# --------------------------------------------------------------------------------------- brute-force tuples


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_exact_enumeration_matches_bruteforce(m: int, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(m)
    sets = [torch.randn(3 + k, 5, generator=g, dtype=torch.float64) for k in range(m)]  # unequal sizes
    ref = log_product_integral_bruteforce(sets, 0.8)
    assert float(fh.kde_log_product_integral(sets, 0.8)) == pytest.approx(ref, abs=1e-10)
    monkeypatch.setattr(fh, "BLOCK_ELEMENTS", 7)  # many small chunks: same value
    assert float(fh.kde_log_product_integral(sets, 0.8)) == pytest.approx(ref, abs=1e-10)


def test_gaussian_product_constant_single_pair() -> None:
    # int N(x; 0, s^2) N(x; a, s^2) dx = N(a; 0, 2 s^2) in d = 1.
    s, a = 0.7, 1.3
    z0, z1 = torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), a, dtype=torch.float64)
    ref = -0.5 * math.log(2 * math.pi * 2 * s * s) - a * a / (4 * s * s)
    assert float(fh.kde_log_product_integral([z0, z1], s)) == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("m", [2, 3, 4])
def test_identical_modalities_give_zero(m: int) -> None:
    z = torch.randn(7, 6)
    batch = {f"m{k}": z * (k + 1) for k in range(m)}  # positive scaling: the same normalised rows
    assert geometry.holder_divergence(batch, 0.5, method="exact") == pytest.approx(0.0, abs=1e-6)


def test_mc_on_identical_modalities_is_near_zero() -> None:
    z = torch.randn(40, 8, dtype=torch.float64)
    value = geometry.holder_divergence({"a": z, "b": z, "c": z, "d": z}, 0.5, method="mc", n_samples=2048)
    assert abs(value) < 0.02


def test_grows_monotonically_with_translation() -> None:
    g = torch.Generator().manual_seed(0)
    base = [torch.randn(5, 2, generator=g, dtype=torch.float64) for _ in range(3)]
    values = []
    for shift in [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]:
        moved = [base[0], base[1], base[2] + torch.tensor([shift, 0.0], dtype=torch.float64)]
        values.append(float(fh.kde_holder_divergence(moved, 0.5)))
    assert all(b > a for a, b in itertools.pairwise(values))
    assert values[0] > 0  # three different samples already differ


def test_grows_monotonically_with_rotation_on_the_sphere() -> None:
    g = torch.Generator().manual_seed(1)
    angles = 0.3 * torch.randn(8, generator=g, dtype=torch.float64)
    values = []
    for theta in [0.0, 0.2, 0.4, 0.8, 1.6]:
        a = torch.stack([angles.cos(), angles.sin()], 1)
        b = torch.stack([(angles + theta).cos(), (angles + theta).sin()], 1)
        values.append(geometry.holder_divergence({"a": a, "b": b, "c": a}, 0.3))
    assert values[0] == pytest.approx(0.0, abs=1e-10)
    assert all(b > a for a, b in itertools.pairwise(values))


def test_invariant_to_modality_and_row_order() -> None:
    batch = sphere_batch(6, 3, 4, seed=2)
    ref = geometry.holder_divergence(batch, 0.5, method="exact")
    swapped = {"m2": batch["m2"], "m0": batch["m0"], "m1": batch["m1"]}
    assert geometry.holder_divergence(swapped, 0.5, method="exact") == pytest.approx(ref, abs=1e-10)
    # Each KDE is a function of its point set only, so rows may be permuted independently per modality.
    shuffled = {k: v[torch.randperm(6)] for k, v in batch.items()}
    assert geometry.holder_divergence(shuffled, 0.5, method="exact") == pytest.approx(ref, abs=1e-10)


def test_two_modalities_is_the_cauchy_schwarz_divergence() -> None:
    batch = sphere_batch(9, 2, 5, seed=4)
    a, b = (torch.nn.functional.normalize(v, dim=1) for v in batch.values())
    s = 0.6

    def log_mean_kernel(x: torch.Tensor, y: torch.Tensor) -> float:
        total = 0.0
        for i in range(x.shape[0]):
            for j in range(y.shape[0]):
                total += math.exp(-float(((x[i] - y[j]) ** 2).sum()) / (4 * s * s))
        return math.log(total / (x.shape[0] * y.shape[0]))

    ref = -log_mean_kernel(a, b) + 0.5 * (log_mean_kernel(a, a) + log_mean_kernel(b, b))
    assert geometry.holder_divergence(batch, s) == pytest.approx(ref, abs=1e-10)


# ------------------------------------------------------------------------------------------------ MC vs exact


def test_mc_agrees_with_exact() -> None:
    # B^M = 1728 tuples, exact and MC both run. Over 40 seeds the MC error had std ~0.005 here (n = 2048);
    # the stated tolerance is 0.05 for one seed and 0.02 for the mean of eight.
    batch = sphere_batch(12, 3, 8, seed=3)
    exact = geometry.holder_divergence(batch, 0.5, method="exact")
    mcs = [geometry.holder_divergence(batch, 0.5, method="mc", n_samples=2048, seed=s) for s in range(8)]
    assert exact > 0.5
    assert all(abs(v - exact) < 0.05 for v in mcs)
    assert abs(sum(mcs) / len(mcs) - exact) < 0.02


def test_mc_is_deterministic_and_chunk_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = sphere_batch(20, 4, 6, seed=5)
    a = geometry.holder_divergence(batch, 0.5, method="mc", n_samples=300, seed=7)
    assert geometry.holder_divergence(batch, 0.5, method="mc", n_samples=300, seed=7) == a
    monkeypatch.setattr(fh, "BLOCK_ELEMENTS", 64)
    assert geometry.holder_divergence(batch, 0.5, method="mc", n_samples=300, seed=7) == pytest.approx(
        a, abs=1e-12
    )
    assert geometry.holder_divergence(batch, 0.5, method="mc", n_samples=300, seed=8) != a


def test_mc_finds_aligned_tuples_at_small_bandwidth() -> None:
    # Small bandwidth: the integral is dominated by the few aligned tuples; sequential sampling finds them.
    batch = sphere_batch(10, 3, 16, seed=6, spread=0.2, shift=0.1)
    exact = geometry.holder_divergence(batch, 0.15, method="exact")
    mc = geometry.holder_divergence(batch, 0.15, method="mc", n_samples=2048)
    assert mc == pytest.approx(exact, rel=0.05)


def test_auto_method_choice() -> None:
    assert geometry.holder_method(4096, 2) == "exact"  # M = 2 is always exact
    assert geometry.holder_method(16, 3, max_tuples=4096) == "exact"
    assert geometry.holder_method(17, 3, max_tuples=4096) == "mc"
    assert geometry.holder_method(4096, 6) == "mc"
    assert geometry.holder_method(4096, 6, "exact") == "exact"
    batch = sphere_batch(6, 3, 4, seed=8)
    exact = geometry.holder_divergence(batch, 0.5, method="exact")
    assert geometry.holder_divergence(batch, 0.5) == exact  # 216 tuples: auto is exact
    mc = geometry.holder_divergence(batch, 0.5, method="mc", n_samples=64)
    assert geometry.holder_divergence(batch, 0.5, max_tuples=100, n_samples=64) == mc


def test_bounded_memory_large_mc_smoke() -> None:
    # A smaller cousin of the B = 4096, M = 6, d = 64 benchmark: runs chunked and returns a finite value.
    batch = sphere_batch(1024, 6, 32, seed=9)
    batch = {k: v.float() for k, v in batch.items()}
    value = geometry.holder_divergence(batch, 0.5, n_samples=256)
    assert math.isfinite(value)
    assert value > 0


def test_mask_uses_complete_rows_only() -> None:
    batch = sphere_batch(8, 3, 4, seed=10)
    present = torch.tensor([True, True, False, True, True, True, False, True])
    masked = {**batch, "m1": batch["m1"].clone(), "mask": {"m1": present}}
    masked["m1"][~present] = 0.0  # absent rows may be zeros
    ref = geometry.holder_divergence({k: v[present] for k, v in batch.items()}, 0.5)
    assert geometry.holder_divergence(masked, 0.5) == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------------------------------------ validation


def test_bad_inputs_raise() -> None:
    z = torch.randn(5, 3)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        geometry.holder_divergence({"a": z}, 0.5)
    for bw in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bandwidth"):
            geometry.holder_divergence({"a": z, "b": z}, bw)
    bad = z.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        geometry.holder_divergence({"a": z, "b": bad}, 0.5)
    with pytest.raises(ValueError, match="method"):
        geometry.holder_divergence({"a": z, "b": z}, 0.5, method="grid")
    with pytest.raises(ValueError, match="n_samples"):
        geometry.holder_divergence({"a": z, "b": z}, 0.5, n_samples=0)
    with pytest.raises(ValueError, match="shape"):
        geometry.holder_divergence({"a": z, "b": torch.randn(4, 3)}, 0.5)
    with pytest.raises(ValueError, match="point sets"):
        fh.kde_holder_divergence([z], 0.5)


def test_exact_path_is_differentiable() -> None:
    g = torch.Generator().manual_seed(11)
    sets = [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(3)]
    x = sets[0].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: fh.kde_holder_divergence([v, sets[1], sets[2]], 0.6), (x,))
    mc = fh.kde_holder_divergence([x, sets[1], sets[2]], 0.6, method="mc", n_samples=16)
    assert not mc.requires_grad
