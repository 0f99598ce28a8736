"""mmgeom.functional against plain-loop references, hand values, gradcheck and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmgeom import functional as F

from reference import (
    alignment_loop,
    band_hinge_loop,
    dispersion_loop,
    gram_det_loop,
    info_nce_loop,
    siglip_loop,
    tn_loop,
    uniformity_loop,
)

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-9}


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


# ----------------------------------------------------------------------------- values vs loops
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_info_nce_matches_loop(dtype: torch.dtype, tau: float) -> None:
    za, zb = randn(7, 5, seed=1, dtype=dtype), randn(7, 5, seed=2, dtype=dtype)
    expected = info_nce_loop(za, zb, tau)
    assert float(F.info_nce(za, zb, tau)) == pytest.approx(expected, rel=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_info_nce_multi_positive_matches_loop(dtype: torch.dtype) -> None:
    za, zb = randn(8, 4, seed=3, dtype=dtype), randn(8, 4, seed=4, dtype=dtype)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 2, 0])
    expected = info_nce_loop(za, zb, 0.2, labels)
    assert float(F.info_nce(za, zb, 0.2, labels)) == pytest.approx(expected, rel=TOL[dtype] * 10)


def test_info_nce_unique_labels_equal_plain() -> None:
    za, zb = randn(6, 3, seed=5), randn(6, 3, seed=6)
    plain = F.info_nce(za, zb, 0.1)
    labelled = F.info_nce(za, zb, 0.1, labels=torch.arange(6))
    assert float(plain) == pytest.approx(float(labelled), rel=1e-12)


def test_info_nce_hand_value() -> None:
    # Two orthogonal pairs, tau = 1: each row's logits are (1, 0) -> CE = log(1 + e^-1) in both directions.
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(F.info_nce(za, za.clone(), 1.0)) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_siglip_matches_loop(dtype: torch.dtype) -> None:
    za, zb = randn(5, 6, seed=7, dtype=dtype), randn(5, 6, seed=8, dtype=dtype)
    expected = siglip_loop(za, zb, math.log(10.0), -10.0)
    got = F.siglip_loss(za, zb, math.log(10.0), -10.0)
    assert float(got) == pytest.approx(expected, rel=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_loop(dtype: torch.dtype, alpha: float) -> None:
    za, zb = randn(9, 4, seed=9, dtype=dtype), randn(9, 4, seed=10, dtype=dtype)
    got = F.alignment(za, zb, alpha)
    assert float(got) == pytest.approx(alignment_loop(za, zb, alpha), rel=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_matches_loop(dtype: torch.dtype, t: float) -> None:
    z = randn(10, 3, seed=11, dtype=dtype)
    assert float(F.uniformity(z, t)) == pytest.approx(uniformity_loop(z, t), rel=TOL[dtype] * 10)


def test_uniformity_matches_pdist_definition() -> None:
    # The Wang–Isola reference code: log of the mean of exp(-t * pdist^2).
    z = randn(12, 5, seed=12)
    zn = z / z.norm(dim=1, keepdim=True)
    expected = torch.pdist(zn).pow(2).mul(-2.0).exp().mean().log()
    assert float(F.uniformity(z, 2.0)) == pytest.approx(float(expected), rel=1e-10)


def test_uniformity_hand_value_antipodal() -> None:
    # Two antipodal points: ||z1 - z2||^2 = 4 -> log exp(-2 * 4) = -8.
    z = torch.tensor([[0.0, 3.0], [0.0, -1.0]])
    assert float(F.uniformity(z, 2.0)) == pytest.approx(-8.0, abs=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [0.25, 1.0])
def test_dispersion_matches_loop(dtype: torch.dtype, tau: float) -> None:
    z = randn(8, 4, seed=13, dtype=dtype)
    assert float(F.dispersion(z, tau)) == pytest.approx(dispersion_loop(z, tau), rel=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("delta", [0.0, 0.5, 1.5, 4.0])
def test_band_hinge_matches_loop(dtype: torch.dtype, delta: float) -> None:
    za, zb = randn(11, 3, seed=14, dtype=dtype), randn(11, 3, seed=15, dtype=dtype)
    got = F.band_hinge(za, zb, delta)
    assert float(got) == pytest.approx(band_hinge_loop(za, zb, delta), rel=TOL[dtype] * 10, abs=1e-12)


def test_band_hinge_zero_inside_band_with_zero_gradient() -> None:
    za = randn(6, 4, seed=16)
    zb = (za + 0.01 * randn(6, 4, seed=17)).requires_grad_()
    out = F.band_hinge(za, zb, 0.5)
    out.backward()
    assert float(out.detach()) == 0.0
    assert zb.grad is not None and float(zb.grad.abs().max()) == 0.0


def test_band_hinge_zero_delta_is_drift() -> None:
    za, zb = randn(6, 4, seed=18), randn(6, 4, seed=19)
    assert float(F.band_hinge(za, zb, 0.0)) == pytest.approx(float(F.alignment(za, zb, 2.0)), rel=1e-12)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_gram_det_and_volume_match_loop(k: int) -> None:
    zs = [randn(5, 6, seed=20 + m) for m in range(k)]
    dets = F.gram_det(*zs)
    vols = F.gram_volume(*zs)
    for i in range(5):
        expected = gram_det_loop([z[i] for z in zs])
        assert float(dets[i]) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert float(vols[i]) == pytest.approx(math.sqrt(max(expected, 1e-12)), rel=1e-9)


def test_gram_volume_hand_values() -> None:
    # Orthonormal tuple -> volume 1; two vectors at 60 degrees -> sin(60) = sqrt(3)/2; identical -> floor.
    e = torch.eye(3, dtype=torch.float64)
    assert F.gram_volume(e[:1], e[1:2], e[2:3]).tolist() == pytest.approx([1.0])
    v = torch.tensor([[0.5, math.sqrt(3) / 2]], dtype=torch.float64)
    assert float(F.gram_volume(e[:1, :2], v)) == pytest.approx(math.sqrt(3) / 2, rel=1e-12)
    assert float(F.gram_volume(e[:1], 2 * e[:1])) == pytest.approx(1e-6, rel=1e-6)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_gram_volume_matrix_matches_per_pair_loop(k: int) -> None:
    zs = [randn(5, 6, seed=30 + m) for m in range(k)]
    v = F.gram_volume_matrix(*zs)
    for i in range(5):
        for j in range(5):
            expected = math.sqrt(max(gram_det_loop([zs[0][i]] + [z[j] for z in zs[1:]]), 1e-12))
            assert float(v[i, j]) == pytest.approx(expected, rel=1e-9)


def test_gram_volume_matrix_with_collinear_others() -> None:
    # Identical non-anchor modalities make every C_j singular; the adjugate form stays exact (volume 0).
    a, b = randn(4, 3, seed=36), randn(4, 3, seed=37)
    v = F.gram_volume_matrix(a, b, 2 * b)
    assert float(v.max()) == pytest.approx(1e-6, rel=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tn_distance_matches_loop(dtype: torch.dtype) -> None:
    u, v = randn(6, 5, seed=33, dtype=dtype), randn(6, 5, seed=34, dtype=dtype)
    got = F.tn_distance(u, v)
    assert got.tolist() == pytest.approx(tn_loop(u, v), rel=TOL[dtype] * 10)


def test_tn_distance_hand_values() -> None:
    u = torch.tensor([[3.0, 4.0], [3.0, 4.0], [1.0, 0.0]])
    v = torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])
    # equal -> 0; same direction, norms 5 and 10 -> 5 / 15; orthogonal unit -> sqrt(2) / 2.
    assert F.tn_distance(u, v).tolist() == pytest.approx([0.0, 1 / 3, math.sqrt(2) / 2], abs=1e-7)


# ----------------------------------------------------------------------------- gradients
def _gc(fn, *inputs: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6)


def test_gradcheck_all() -> None:
    za, zb, zc = randn(4, 3, seed=40), randn(4, 3, seed=41), randn(4, 3, seed=42)
    _gc(lambda a, b: F.info_nce(a, b, 0.3), za, zb)
    _gc(lambda a, b: F.info_nce(a, b, 0.3, torch.tensor([0, 0, 1, 1])), za, zb)
    _gc(lambda a, b: F.siglip_loss(a, b, 1.0, -2.0), za, zb)
    _gc(lambda a, b: F.alignment(a, b, 2.0), za, zb)
    _gc(lambda a, b: F.alignment(a, b, 1.0), za, zb)
    _gc(lambda a: F.uniformity(a, 2.0), za)
    _gc(lambda a: F.dispersion(a, 0.5), za)
    _gc(lambda a, b: F.band_hinge(a, b, 0.3), za, zb)
    _gc(lambda a, b, c: F.gram_volume(a, b, c), za, zb, zc)
    _gc(lambda a, b, c: F.gram_volume_matrix(a, b, c), za, zb, zc)
    _gc(lambda a, b: F.tn_distance(a, b), za, zb)


def test_learnable_temperature_tensor_gets_gradient() -> None:
    tau = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    F.info_nce(randn(5, 3, seed=43), randn(5, 3, seed=44), tau).backward()
    assert tau.grad is not None and torch.isfinite(tau.grad)


# ----------------------------------------------------------------------------- dtypes
def test_bf16_inputs_accumulate_in_fp32() -> None:
    za, zb = randn(16, 8, seed=45), randn(16, 8, seed=46)
    out = F.info_nce(za.bfloat16(), zb.bfloat16(), 0.1)
    assert out.dtype == torch.float32
    ref = F.info_nce(za.bfloat16().double(), zb.bfloat16().double(), 0.1)
    assert float(out) == pytest.approx(float(ref), rel=1e-5)
    u = F.uniformity(za.bfloat16(), 2.0)
    assert u.dtype == torch.float32
    assert float(u) == pytest.approx(float(F.uniformity(za.bfloat16().double(), 2.0)), rel=1e-5)


# ----------------------------------------------------------------------------- properties
finite = st.floats(-3, 3, allow_nan=False, width=64)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8), d=st.integers(2, 6), scale=st.floats(0.01, 100))
def test_properties(seed: int, n: int, d: int, scale: float) -> None:
    za, zb = randn(n, d, seed=seed), randn(n, d, seed=seed + 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    # row-permutation invariance of batch-level values
    for fn in (
        lambda a, b: F.info_nce(a, b, 0.2),
        lambda a, b: F.siglip_loss(a, b, 1.0, -1.0),
        lambda a, b: F.alignment(a, b),
        lambda a, b: F.uniformity(a) + F.dispersion(b, 0.5),
        lambda a, b: F.band_hinge(a, b, 0.7),
    ):
        assert float(fn(za[perm], zb[perm])) == pytest.approx(float(fn(za, zb)), rel=1e-9, abs=1e-12)
        # normalising functions ignore input scale
        assert float(fn(scale * za, zb / scale)) == pytest.approx(float(fn(za, zb)), rel=1e-8, abs=1e-10)
    # symmetry in the two modalities
    assert float(F.info_nce(zb, za, 0.2)) == pytest.approx(float(F.info_nce(za, zb, 0.2)), rel=1e-10)
    assert float(F.alignment(zb, za)) == pytest.approx(float(F.alignment(za, zb)), rel=1e-10)
    assert float(F.band_hinge(zb, za, 0.3)) == pytest.approx(float(F.band_hinge(za, zb, 0.3)), abs=1e-12)
    # per-row functions are permutation-equivariant and in range
    tn = F.tn_distance(za, zb)
    assert torch.allclose(F.tn_distance(za[perm], zb[perm]), tn[perm])
    assert bool((tn >= 0).all() and (tn <= 1 + 1e-12).all())
    vol = F.gram_volume(za, zb)
    assert torch.allclose(F.gram_volume(za[perm], zb[perm]), vol[perm])
    assert torch.allclose(F.gram_volume(zb, za), vol)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), d=st.integers(1, 5))
def test_tn_distance_zero_iff_equal(seed: int, n: int, d: int) -> None:
    u = randn(n, d, seed=seed)
    assert float(F.tn_distance(u, u.clone()).abs().max()) == 0.0
    v = u.clone()
    v[0, 0] += 0.5
    assert float(F.tn_distance(u, v)[0]) > 0.0


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: F.info_nce(torch.randn(4, 3), torch.randn(5, 3)), "zb: expected shape (4, 3)"),
        (lambda: F.info_nce(torch.randn(4, 3), torch.randn(4, 2)), "zb: expected shape (4, 3)"),
        (lambda: F.info_nce(torch.randn(1, 3), torch.randn(1, 3)), "at least 2 rows"),
        (lambda: F.info_nce(torch.randn(4, 3), torch.randn(4, 3), 0.0), "temperature"),
        (lambda: F.info_nce(torch.randn(4, 3), torch.randn(4, 3), -1.0), "temperature"),
        (lambda: F.info_nce(torch.randn(4, 3), torch.full((4, 3), float("nan"))), "zb: 4 row(s)"),
        (lambda: F.info_nce(torch.zeros(4, 3), torch.randn(4, 3)), "za: row 0 is all zeros"),
        (lambda: F.info_nce(torch.randn(4), torch.randn(4)), "expected shape (B, D)"),
        (lambda: F.info_nce(torch.randn(4, 3), torch.randn(4, 3), labels=torch.zeros(3)), "labels"),
        (lambda: F.uniformity(torch.randn(1, 3)), "at least 2 rows"),
        (lambda: F.uniformity(torch.randn(3, 3), t=0), "t: expected"),
        (lambda: F.dispersion(torch.randn(3, 3), tau=-1), "tau: expected"),
        (lambda: F.band_hinge(torch.randn(3, 3), torch.randn(3, 3), -0.1), "delta"),
        (lambda: F.alignment(torch.randn(3, 3), torch.randn(3, 3), alpha=0), "alpha"),
        (lambda: F.gram_volume(torch.randn(3, 3)), "at least 2 modalities"),
        (lambda: F.tn_distance(torch.randn(3, 3), torch.randn(2, 3)), "v: expected shape (3, 3)"),
        (lambda: F.tn_distance(torch.randn(3, 3), torch.tensor([[1.0, float("inf"), 0]] * 3)), "v: 3 row"),
    ],
)
def test_bad_inputs_raise(call, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=None) as info:
        call()
    assert fragment in str(info.value)


def test_validation_switch_skips_value_checks() -> None:
    import mmgeom

    bad = torch.full((3, 2), float("nan"))
    with mmgeom.validation(False):
        assert math.isnan(float(F.alignment(bad, bad)))
    with pytest.raises(ValueError):
        F.alignment(bad, bad)


# ----------------------------------------------------------------------------- chunked exact paths
@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 40])
@pytest.mark.parametrize("fn", ["uniformity", "dispersion"])
def test_chunked_potential_equals_dense_values_and_gradients(chunk: int, fn: str) -> None:
    z = randn(37, 6, seed=50)  # 37 rows: ragged last block for every chunk size above
    call = (
        (lambda x, c: F.uniformity(x, 2.0, chunk_size=c))
        if fn == "uniformity"
        else (lambda x, c: F.dispersion(x, 0.3, chunk_size=c))
    )
    zd, zc = z.clone().requires_grad_(), z.clone().requires_grad_()
    dense, chunked = call(zd, None), call(zc, chunk)
    dense.backward()
    chunked.backward()
    assert float(chunked.detach()) == pytest.approx(float(dense.detach()), rel=1e-12)
    assert torch.allclose(zc.grad, zd.grad, rtol=1e-10, atol=1e-12)
    # and the dense path against autograd through the plain formula
    zr = z.clone().requires_grad_()
    zn = zr / zr.norm(dim=1, keepdim=True)
    t = 2.0 if fn == "uniformity" else 1 / 0.3
    ref = torch.pdist(zn).pow(2).mul(-t).exp().mean().log()
    ref.backward()
    assert float(dense.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert torch.allclose(zd.grad, zr.grad, rtol=1e-9, atol=1e-12)


def test_chunked_potential_gradcheck() -> None:
    z = randn(9, 3, seed=51).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: F.uniformity(x, 1.5, chunk_size=4), (z,), eps=1e-6, atol=1e-6)


def test_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size: expected >= 1"):
        F.uniformity(torch.randn(5, 3), chunk_size=0)


@pytest.mark.parametrize("shape", [(40, 6), (6, 40)])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_spectral_entropy_matches_numpy_svd(shape: tuple[int, int], power: float) -> None:
    z = randn(*shape, seed=60)
    x = (z / z.norm(dim=1, keepdim=True)).numpy()
    x = x - x.mean(0)
    s = np.linalg.svd(x, compute_uv=False) ** power
    p = s / s.sum()
    p = p[p > 0]
    expected = float(-(p * np.log(p)).sum())
    assert float(F.spectral_entropy(z, power=power)) == pytest.approx(expected, rel=1e-9)
    zr = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: F.spectral_entropy(v, power=power), (zr,), eps=1e-6, atol=1e-5)
