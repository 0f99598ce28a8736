"""The fast paths of GRAM (M = 3 closed form) and L2Dir (one norm per modality) against direct forms.

Each reference is written from the equation with autograd: GRAM's volumes as ``B^2`` explicit 3 x 3 Gram
determinants (``torch.linalg.det``), L2Dir's terms from ``torch.nn.functional.normalize`` and explicit
norms. Values and gradients (inputs and the learnable temperature) must agree to float64 rounding.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf
from torch import Tensor

from mmgeom import functional as F
from mmgeom.functional.l2dir import directions_and_norms, tn_distance_from_norms
from mmgeom.losses import create_loss

from reference import tn_loop


def _inputs(m: int, b: int = 7, d: int = 5, seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g, dtype=torch.float64).requires_grad_() for _ in range(m)]


def _volumes_by_det(zs: list[Tensor]) -> Tensor:
    """``V[i, j] = sqrt(max(det G, 1e-12))`` of (anchor row i, others' row j), one determinant each."""
    a, *others = [nnf.normalize(z, dim=1) for z in zs]
    b = a.shape[0]
    rows = []
    for i in range(b):
        tuples = torch.stack([a[i].expand(b, -1), *others], dim=1)  # (B_j, k, D)
        rows.append(torch.linalg.det(tuples @ tuples.transpose(1, 2)))
    return torch.stack(rows).clamp_min(1e-12).sqrt()


def _grads(value: Tensor, leaves: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(value, leaves))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_gram_volume_matrix_value_and_gradient_match_explicit_determinants(k: int) -> None:
    zs = _inputs(k, seed=k)
    weights = torch.randn(7, 7, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    ours = F.gram_volume_matrix(*zs)
    ref = _volumes_by_det(zs)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for g, r in zip(_grads((ours * weights).sum(), zs), _grads((ref * weights).sum(), zs), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


def test_gram_volume_matrix_three_modalities_hand_value() -> None:
    # Anchor e1, others (e2, e3) at j = 0: orthonormal, volume 1; at j = 1 the others are (e1, e2): the
    # tuple (e1, e1, e2) is dependent, so the volume is the floor sqrt(1e-12).
    e = torch.eye(3, dtype=torch.float64)
    v = F.gram_volume_matrix(e[[0, 0]], e[[1, 0]], e[[2, 1]])
    assert v[0, 0].item() == pytest.approx(1.0, abs=1e-12)
    assert v[0, 1].item() == pytest.approx(1e-6, rel=1e-6)


def test_gram_loss_with_learnable_temperature_matches_reference() -> None:
    zs = _inputs(3, seed=4)
    loss = create_loss("gram", check_values=False)  # learnable temperature, label smoothing 0.1
    with torch.no_grad():
        loss.temperature.log_scale.fill_(math.log(1 / 0.2))
    out = loss({"t": zs[0], "v": zs[1], "a": zs[2]})
    ls = torch.tensor(math.log(1 / 0.2), requires_grad=True)  # float32, as the module's parameter
    logits = -_volumes_by_det(zs) / torch.exp(-ls)
    target = torch.arange(7)
    ref = 0.5 * (
        nnf.cross_entropy(logits, target, label_smoothing=0.1)
        + nnf.cross_entropy(logits.T, target, label_smoothing=0.1)
    )
    torch.testing.assert_close(out.total, ref, rtol=1e-12, atol=0.0)
    ours_g = _grads(out.total, [*zs, loss.temperature.log_scale])
    ref_g = _grads(ref, [*zs, ls])
    for g, r in zip(ours_g, ref_g, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-6 if g.dtype == torch.float32 else 1e-8, atol=1e-12)


def test_directions_and_norms_are_normalize_and_norm_exactly() -> None:
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(9, 6, dtype=dtype, generator=torch.Generator().manual_seed(2)) * 3
        x[4] = 0.0  # a zero row stays zero (the eps floor), as in normalize
        unit, norm = directions_and_norms(x)
        assert torch.equal(unit, F.normalize(x))
        assert torch.equal(norm, x.norm(dim=1))
        torch.testing.assert_close(unit, nnf.normalize(x, dim=1))


def test_tn_distance_from_norms_matches_loop_and_tn_distance() -> None:
    u, v = _inputs(2, b=6, d=4, seed=5)
    ours = tn_distance_from_norms(u, v, u.norm(dim=1), v.norm(dim=1))
    assert ours.tolist() == pytest.approx(tn_loop(u.detach(), v.detach()), rel=1e-12)
    torch.testing.assert_close(ours, F.tn_distance(u, v), rtol=1e-14, atol=0.0)
    w = torch.tensor([[3.0, 4.0]])
    assert tn_distance_from_norms(w, -w, w.norm(dim=1), w.norm(dim=1)).item() == 1.0


def _l2dir_reference(zs: list[Tensor], radius: list[Tensor] | None) -> Tensor:
    """Paper variant, pairs "all", InfoNCE on directions (tau 0.07) + lambda_n = 1 times the TN term."""
    total = torch.zeros((), dtype=torch.float64)
    pairs = [(i, j) for i in range(len(zs)) for j in range(i + 1, len(zs))]
    target = torch.arange(zs[0].shape[0])
    for i, j in pairs:
        a, b = nnf.normalize(zs[i], dim=1), nnf.normalize(zs[j], dim=1)
        logits = a @ b.T / 0.07
        contrast = 0.5 * (nnf.cross_entropy(logits, target) + nnf.cross_entropy(logits.T, target))
        u = zs[i] if radius is None else a * radius[i][:, None]
        v = zs[j] if radius is None else b * radius[j][:, None]
        tn = (u - v).norm(dim=1) / (u.norm(dim=1) + v.norm(dim=1))
        total = total + contrast + tn.mean()
    return total / len(pairs)


@pytest.mark.parametrize("given", [False, True])
def test_l2dir_paper_value_and_gradient_match_reference(given: bool) -> None:
    zs = _inputs(3, seed=6)
    names = ["q", "p", "a"]
    g = torch.Generator().manual_seed(8)
    radius = [(torch.rand(7, generator=g, dtype=torch.float64) + 0.5).requires_grad_() for _ in zs]
    kwargs = {"magnitudes": dict(zip(names, radius, strict=True))} if given else {}
    out = create_loss("l2dir", check_values=False)(dict(zip(names, zs, strict=True)), **kwargs)
    ref = _l2dir_reference(zs, radius if given else None)
    torch.testing.assert_close(out.total, ref, rtol=1e-12, atol=0.0)
    leaves = [*zs, *radius] if given else zs
    for ours_g, ref_g in zip(_grads(out.total, leaves), _grads(ref, leaves), strict=True):
        torch.testing.assert_close(ours_g, ref_g, rtol=1e-9, atol=1e-12)
    expected = radius if given else [z.norm(dim=1) for z in zs]
    for name, r in zip(names, expected, strict=True):
        assert out.terms[f"magnitude/{name}"].item() == pytest.approx(r.mean().item(), rel=1e-12)
