"""Fréchet distance between Gaussian fits of two feature sets (the FID equation, once).

``FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}``

Reference: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", NeurIPS 2017 (the Fréchet Inception Distance); the distance itself is the 2-Wasserstein
distance between Gaussians (Dowson & Landau, 1982).

Which features the statistics come from is the caller's choice; in mmgeom they usually come from
:class:`~mmgeom.generation.classifier.FeatureClassifier`, so values are *not* Inception-FID and are
comparable only between image sets scored by the same classifier.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
import torch
from torch import Tensor

#: A tensor or a NumPy array; converted with :func:`torch.as_tensor`.
ArrayLike: TypeAlias = Tensor | np.ndarray

__all__ = ["feature_statistics", "fid_from_features", "frechet_distance"]


def _as_tensor(x: object, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.as_tensor(x)
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point dtype, got {x.dtype}")
    return x


def _check_finite(x: Tensor, name: str) -> None:
    # Always on (not tied to mmgeom.set_validation): these functions return a Python float, so they
    # synchronise anyway, and a NaN FID would otherwise be reported as a result.
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: {bad} entr(y/ies) are NaN or Inf (shape {tuple(x.shape)})")


def check_features(x: object, name: str, *, min_rows: int = 2) -> Tensor:
    """Check a ``(N, D)`` feature matrix (``N >= min_rows``, floating, finite) and return it as a tensor.

    Args:
        x: tensor or NumPy array.
        name: argument name used in error messages.
        min_rows: smallest allowed N.

    Raises:
        ValueError: wrong rank, too few rows, D = 0, integer dtype or non-finite entries.
    """
    t = _as_tensor(x, name)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got {tuple(t.shape)}")
    if t.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} rows (N >= {min_rows}), got {tuple(t.shape)}")
    if t.shape[1] < 1:
        raise ValueError(f"{name}: expected D >= 1, got shape {tuple(t.shape)}")
    _check_finite(t, name)
    return t


def feature_statistics(features: ArrayLike) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance of a feature matrix, in float64.

    Args:
        features: ``(N, D)`` with N ≥ 2 (one sample has no covariance).

    Returns:
        ``(mu, sigma)``: ``(D,)`` and ``(D, D)`` float64 tensors on the input's device;
        ``sigma = (X − μ)ᵀ (X − μ) / (N − 1)``.

    Raises:
        ValueError: not ``(N, D)``, N < 2, non-floating or non-finite input.

    Example:
        >>> mu, sigma = feature_statistics(torch.randn(100, 8))
        >>> mu.shape, sigma.shape, sigma.dtype
        (torch.Size([8]), torch.Size([8, 8]), torch.float64)
    """
    x = check_features(features, "features", min_rows=2).to(torch.float64)
    mu = x.mean(dim=0)
    # Centre first, then one matmul: no E[x²] − E[x]² cancellation.
    xc = x - mu
    sigma = (xc.T @ xc) / (x.shape[0] - 1)
    return mu, sigma


def _check_stats(mu: object, sigma: object, names: tuple[str, str]) -> tuple[Tensor, Tensor]:
    m = _as_tensor(mu, names[0])
    s = _as_tensor(sigma, names[1])
    if m.dim() != 1 or m.shape[0] < 1:
        raise ValueError(f"{names[0]}: expected a mean of shape (D,), got {tuple(m.shape)}")
    d = m.shape[0]
    if tuple(s.shape) != (d, d):
        raise ValueError(
            f"{names[1]}: expected a covariance of shape ({d}, {d}) to match {names[0]} {tuple(m.shape)}, "
            f"got {tuple(s.shape)}"
        )
    _check_finite(m, names[0])
    _check_finite(s, names[1])
    return m, s


def _psd_eigh(s: Tensor, name: str, tol_rel: float) -> tuple[Tensor, Tensor]:
    """Symmetric eigendecomposition of a covariance with tiny negative eigenvalues clamped to 0.

    Rounding makes a rank-deficient covariance (N ≤ D, dead feature units) show eigenvalues of about
    −eps·‖Σ‖; those are clamped. Clearly negative ones mean the matrix is not a covariance: raised.
    """
    scale = float(s.abs().max())
    if float((s - s.T).abs().max()) > tol_rel * max(scale, 1e-300):
        raise ValueError(f"{name}: expected a symmetric covariance matrix, got an asymmetric one")
    w, v = torch.linalg.eigh(0.5 * (s + s.T))
    top = float(w.abs().max())
    if float(w.min()) < -tol_rel * top:
        raise ValueError(
            f"{name}: expected a positive semi-definite covariance, got eigenvalue {float(w.min()):.3g} "
            f"(largest magnitude {top:.3g})"
        )
    return w.clamp_min(0.0), v


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}``, computed in float64 with two
    symmetric eigendecompositions instead of a general matrix square root (``scipy.linalg.sqrtm`` on
    ``Σ₁Σ₂``, which is not symmetric and can return complex parts or fail on singular products):
    ``Σ₁^{1/2} = V diag(√λ) Vᵀ``, then the eigenvalues of the symmetric PSD ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}``
    give the trace of its square root. Eigenvalues that rounding pushed slightly below zero are clamped
    to 0 (rank-deficient covariances are fine); the traces are the sums of the clamped eigenvalues, so
    the distance of a Gaussian to itself is 0 up to rounding, and the result is clamped at 0.

    Reference: Heusel et al., NeurIPS 2017 (FID); Dowson & Landau, J. Multivariate Anal. 1982.

    Args:
        mu1: ``(D,)`` mean of the first Gaussian.
        sigma1: ``(D, D)`` symmetric PSD covariance of the first Gaussian.
        mu2: ``(D,)`` mean of the second Gaussian.
        sigma2: ``(D, D)`` covariance of the second Gaussian.

    Returns:
        The distance (squared-distance units, ≥ 0) as a Python float.

    Raises:
        ValueError: shapes not ``(D,)`` / ``(D, D)`` or different D, non-finite entries, an asymmetric
            or clearly indefinite covariance (tolerance √eps of the input dtype, relative).

    Example:
        >>> d = 3
        >>> frechet_distance(torch.zeros(d), torch.eye(d), torch.ones(d), 4 * torch.eye(d))
        6.0
    """
    m1, s1 = _check_stats(mu1, sigma1, ("mu1", "sigma1"))
    m2, s2 = _check_stats(mu2, sigma2, ("mu2", "sigma2"))
    if m1.shape != m2.shape:
        raise ValueError(
            f"mu2: expected dimension D = {m1.shape[0]} as mu1 {tuple(m1.shape)}, got {tuple(m2.shape)}"
        )
    # Tolerance for "tiny" asymmetry / negative eigenvalues follows the precision the caller had.
    eps = max(torch.finfo(t.dtype).eps for t in (s1, s2))
    tol_rel = math.sqrt(eps)
    device = s1.device
    f64 = torch.float64
    m1, m2 = m1.to(device, f64), m2.to(device, f64)
    s1_64, s2_64 = s1.to(device, f64), s2.to(device, f64)
    w1, v1 = _psd_eigh(s1_64, "sigma1", tol_rel)
    w2, _ = _psd_eigh(s2_64, "sigma2", tol_rel)
    s2_sym = 0.5 * (s2_64 + s2_64.T)
    root1 = (v1 * w1.sqrt()) @ v1.T
    inner = root1 @ s2_sym @ root1
    lam = torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp_min(0.0)
    diff = m1 - m2
    value = float(diff @ diff) + float(w1.sum()) + float(w2.sum()) - 2.0 * float(lam.sqrt().sum())
    return max(value, 0.0)


def fid_from_features(real_feats: ArrayLike, fake_feats: ArrayLike) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (FID in that feature space).

    Args:
        real_feats: ``(N_real, D)`` features of real images, N_real ≥ 2.
        fake_feats: ``(N_fake, D)`` features of generated images, N_fake ≥ 2, same D.

    Returns:
        :func:`frechet_distance` of the two :func:`feature_statistics`. Estimated from samples, it is
        biased upwards for small N, so compare values computed with equal N.

    Raises:
        ValueError: a matrix that is not ``(N, D)`` with N ≥ 2, different D, non-finite entries.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> real = torch.randn(500, 4, generator=g)
        >>> fid_from_features(real, real) < 1e-9
        True
        >>> round(fid_from_features(real, real + 1.0), 6)  # a shift by 1 in each of 4 dimensions
        4.0
    """
    real = check_features(real_feats, "real_feats", min_rows=2)
    fake = check_features(fake_feats, "fake_feats", min_rows=2)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"fake_feats: expected dimension D = {real.shape[1]} as real_feats {tuple(real.shape)}, "
            f"got shape {tuple(fake.shape)}"
        )
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake.to(real.device))
    return frechet_distance(mu1, s1, mu2, s2)
