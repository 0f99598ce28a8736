"""Effective rank, norm statistics, drift, semantic margin and centroid uniformity against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from mmgeom import geometry


def unit_np(x: torch.Tensor) -> np.ndarray:
    a = x.double().numpy()
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------- effective rank


def erank_numpy(z: torch.Tensor) -> float:
    x = unit_np(z)
    x = x - x.mean(0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("r", [1, 2, 5, 8])
def test_effective_rank_of_equal_singular_values(r: int) -> None:
    # Rows +-q_k for r orthonormal directions q_k: unit rows, zero mean, r equal singular values.
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    dirs = q[:, :r].T
    z = torch.cat([dirs, -dirs, 2 * dirs, -3 * dirs])  # row scale does not matter (rows are normalised)
    assert geometry.effective_rank(z) == pytest.approx(r, abs=1e-6)


def test_effective_rank_of_rank_one() -> None:
    v = torch.randn(1, 7)
    signs = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])[:, None]
    assert geometry.effective_rank(signs * v) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_effective_rank_matches_numpy_svd(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(40, 10, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, 10)).to(dtype)
    ref = erank_numpy(z)
    assert geometry.effective_rank(z) == pytest.approx(ref, rel=1e-5 if dtype == torch.float32 else 1e-10)
    assert 1.0 <= ref <= 10.0


# ---------------------------------------------------------------------------------------------------- norms


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_norm_stats_match_numpy(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    h = (torch.randn(25, 6, generator=g, dtype=torch.float64) * torch.rand(25, 1, generator=g) * 4).to(dtype)
    r = np.linalg.norm(h.double().numpy(), axis=1)
    stats = geometry.norm_stats(h)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert stats["mean"] == pytest.approx(r.mean(), rel=tol)
    assert stats["std"] == pytest.approx(r.std(), rel=tol)  # population std (ddof = 0)
    assert stats["cv"] == pytest.approx(r.std() / r.mean(), rel=tol)


def test_norm_correlation_matches_scipy() -> None:
    g = torch.Generator().manual_seed(2)
    scale = torch.rand(30, 1, generator=g, dtype=torch.float64) + 0.1
    ha = torch.randn(30, 5, generator=g, dtype=torch.float64) * scale
    hb = torch.randn(30, 5, generator=g, dtype=torch.float64) * (scale + 0.3 * torch.rand(30, 1, generator=g))
    ra, rb = np.linalg.norm(ha.numpy(), axis=1), np.linalg.norm(hb.numpy(), axis=1)
    assert geometry.norm_correlation(ha, hb) == pytest.approx(pearsonr(ra, rb).statistic, abs=1e-12)


def test_norm_statistics_edge_cases() -> None:
    unit = torch.nn.functional.normalize(torch.randn(6, 3), dim=1)
    assert math.isnan(geometry.norm_correlation(unit, torch.randn(6, 3)))  # constant norms: undefined
    unit64 = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=1)
    assert math.isnan(geometry.norm_correlation(torch.randn(6, 3), 2 * unit64))
    assert math.isnan(geometry.norm_stats(torch.zeros(3, 2))["cv"])
    with pytest.raises(ValueError, match="rows"):
        geometry.norm_correlation(torch.randn(4, 3), torch.randn(5, 3))


# ---------------------------------------------------------------------------------------------------- drift


def test_drift_matches_loop_and_alignment() -> None:
    g = torch.Generator().manual_seed(3)
    za, zb = (
        torch.randn(9, 4, generator=g, dtype=torch.float64),
        torch.randn(9, 4, generator=g, dtype=torch.float64),
    )
    a, b = unit_np(za), unit_np(zb)
    ref = sum(float(((a[i] - b[i]) ** 2).sum()) for i in range(9)) / 9
    assert geometry.drift(za, zb) == pytest.approx(ref, abs=1e-12)
    assert geometry.drift(za, 3 * za) == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------------- margin


def margin_loop(z: torch.Tensor, labels: list[int]) -> float:
    x = unit_np(z)
    classes = sorted(set(labels))
    means = {c: np.mean([x[i] for i in range(len(labels)) if labels[i] == c], axis=0) for c in classes}

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    total = 0.0
    for i, y in enumerate(labels):
        rival = max(cos(x[i], means[c]) for c in classes if c != y)
        total += cos(x[i], means[y]) - rival
    return total / len(labels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_semantic_margin_matches_loop(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    labels = [5, 9, 5, 100, 9, 9, 5, 100, 100, 5]  # arbitrary, non-contiguous ids
    centres = {
        5: torch.tensor([3.0, 0, 0, 0]),
        9: torch.tensor([0, 3.0, 0, 0]),
        100: torch.tensor([0, 0, 3.0, 1]),
    }
    z = torch.stack([centres[y] for y in labels]) + torch.randn(10, 4, generator=g)
    z = z.to(dtype)
    got = geometry.semantic_margin(z, torch.tensor(labels))
    assert got == pytest.approx(margin_loop(z, labels), abs=1e-6 if dtype == torch.float32 else 1e-12)
    assert got > 0


def test_semantic_margin_validation() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="2 classes"):
        geometry.semantic_margin(z, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        geometry.semantic_margin(z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        geometry.semantic_margin(z, torch.zeros(4))


# ------------------------------------------------------------------------------------- centroid uniformity


def test_centroid_uniformity_matches_loop() -> None:
    g = torch.Generator().manual_seed(5)
    batch = {k: torch.randn(8, 3, generator=g, dtype=torch.float64) for k in ("a", "b", "c")}
    units = [unit_np(v) for v in batch.values()]
    c = sum(units) / 3
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    vals = [math.exp(-2.0 * float(((c[i] - c[j]) ** 2).sum())) for i in range(8) for j in range(i + 1, 8)]
    ref = math.log(sum(vals) / len(vals))
    assert geometry.centroid_uniformity(batch) == pytest.approx(ref, abs=1e-12)
