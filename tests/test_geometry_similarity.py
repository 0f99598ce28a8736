"""Modality gap, positive/negative cosines and the streamed KS statistic against numpy, scipy and loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from mmgeom import geometry
from mmgeom.geometry import similarity


def unit_np(x: torch.Tensor) -> np.ndarray:
    a = x.double().numpy()
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def cosines_loop(za: torch.Tensor, zb: torch.Tensor, pairs: list[tuple[int, int]]) -> list[float]:
    a, b = unit_np(za), unit_np(zb)
    return [float(sum(a[i, k] * b[j, k] for k in range(a.shape[1]))) for i, j in pairs]


def make_pair(b: int, d: int, dtype: torch.dtype = torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(b, d, generator=g, dtype=torch.float64)
    zb = za + 1.2 * torch.randn(b, d, generator=g, dtype=torch.float64) + 0.5
    return za.to(dtype), zb.to(dtype)


# ------------------------------------------------------------------------------------------------------ gap


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_modality_gap_matches_numpy(dtype: torch.dtype) -> None:
    za, zb = make_pair(30, 6, dtype)
    ref = float(np.linalg.norm(unit_np(za).mean(0) - unit_np(zb).mean(0)))
    assert geometry.modality_gap(za, zb) == pytest.approx(ref, abs=1e-6 if dtype == torch.float32 else 1e-12)


def test_modality_gap_hand_values() -> None:
    e = torch.eye(3)
    assert geometry.modality_gap(e, 5 * e) == 0.0
    assert geometry.modality_gap(e[[0, 0]], -e[[0, 0]]) == pytest.approx(2.0)


# -------------------------------------------------------------------------------------------------- cosines


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosine_stats_match_loops_and_scipy(dtype: torch.dtype) -> None:
    b = 40
    za, zb = make_pair(b, 8, dtype, seed=1)
    pos = cosines_loop(za, zb, [(i, i) for i in range(b)])
    neg = cosines_loop(za, zb, [(i, j) for i in range(b) for j in range(b) if i != j])
    stats = geometry.cosine_stats(za, zb, max_negatives=None)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert stats["pos_cos"] == pytest.approx(sum(pos) / b, abs=tol)
    assert stats["neg_cos"] == pytest.approx(sum(neg) / len(neg), abs=tol)
    assert stats["cos_diff"] == pytest.approx(stats["pos_cos"] - stats["neg_cos"], abs=1e-15)
    ref_ks = ks_2samp(pos, neg).statistic
    # fp32 cosines can swap the order of a positive and a negative within ~1e-7: at most a 1/B step.
    assert stats["ks"] == pytest.approx(ref_ks, abs=1e-12 if dtype == torch.float64 else 1.0 / b)


def test_negative_blocks_are_chunk_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    za, zb = make_pair(25, 4, seed=2)
    ref = geometry.cosine_stats(za, zb, max_negatives=None)
    monkeypatch.setattr(similarity, "BLOCK_ELEMENTS", 30)  # one row per block
    assert geometry.cosine_stats(za, zb, max_negatives=None) == ref


@pytest.mark.parametrize("dense_rows", [4096, 0])  # read off dense blocks / gathered directly
def test_subsampled_negatives_are_the_documented_shifts(
    dense_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(similarity, "DENSE_ROWS", dense_rows)
    b, cap = 31, 100
    za, zb = make_pair(b, 5, seed=3)
    k = cap // b  # 3 shifts: 1 + floor(i (B - 1) / 3)
    shifts = [1 + (i * (b - 1)) // k for i in range(k)]
    assert geometry.negative_shifts(b, cap) == shifts == [1, 11, 21]
    pairs = [(i, (i + s) % b) for s in shifts for i in range(b)]
    neg = cosines_loop(za, zb, pairs)
    got = torch.cat(list(geometry.negative_cosines(za, zb, cap)))
    np.testing.assert_allclose(np.sort(got.numpy()), np.sort(neg), atol=1e-12)
    pos = cosines_loop(za, zb, [(i, i) for i in range(b)])
    stats = geometry.cosine_stats(za, zb, max_negatives=cap)
    assert stats["ks"] == pytest.approx(ks_2samp(pos, neg).statistic, abs=1e-12)
    # The mean of the negatives is always exact, whatever the cap.
    assert stats["neg_cos"] == pytest.approx(geometry.cosine_stats(za, zb, max_negatives=None)["neg_cos"])


def test_no_subsample_below_the_cap() -> None:
    assert geometry.negative_shifts(10, 90) is None
    assert geometry.negative_shifts(10, None) is None
    assert geometry.negative_shifts(11, 20) == [1]


def test_perfect_separation_gives_ks_one() -> None:
    z = torch.randn(12, 16, dtype=torch.float64)
    stats = geometry.cosine_stats(z, z)
    assert stats["pos_cos"] == pytest.approx(1.0)
    assert stats["ks"] == 1.0


def test_cosine_validation() -> None:
    with pytest.raises(ValueError, match="rows"):
        geometry.cosine_stats(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="max_negatives"):
        geometry.cosine_stats(torch.randn(4, 3), torch.randn(4, 3), max_negatives=0)
    with pytest.raises(ValueError, match="shape"):
        geometry.cosine_stats(torch.randn(4, 3), torch.randn(5, 3))


# ----------------------------------------------------------------------------------------------------- KS


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value for tiny samples; not used
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-4, 4), min_size=1, max_size=12),
    st.lists(st.integers(-4, 4), min_size=1, max_size=40),
    st.integers(1, 7),
)
def test_ks_statistic_matches_scipy_with_ties(x: list[int], y: list[int], chunk: int) -> None:
    yt = torch.tensor(y, dtype=torch.float64)
    got = geometry.ks_statistic(torch.tensor(x, dtype=torch.float64), yt.split(chunk))
    assert got == pytest.approx(ks_2samp(x, y).statistic, abs=1e-12)


def test_ks_statistic_continuous() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(50, generator=g, dtype=torch.float64)
    y = 0.3 + torch.randn(3000, generator=g, dtype=torch.float64)
    assert geometry.ks_statistic(x, y) == pytest.approx(ks_2samp(x.numpy(), y.numpy()).statistic, abs=1e-12)
    assert math.isclose(geometry.ks_statistic(x, x), 0.0, abs_tol=1e-15)


def test_ks_statistic_validation() -> None:
    with pytest.raises(ValueError, match="x"):
        geometry.ks_statistic(torch.zeros(0), torch.ones(3))
    with pytest.raises(ValueError, match="y"):
        geometry.ks_statistic(torch.ones(2), [])
