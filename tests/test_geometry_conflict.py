"""UniAlign conflict measures (zeta, chi) against per-row Python loops of the definitions."""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom import geometry
from mmgeom.functional import conflict as fc


def unit(v: torch.Tensor) -> list[float]:
    v = [float(x) for x in v.double()]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def conflict_loop(batch: dict[str, torch.Tensor], anchor: str, tau: float) -> tuple[list[float], list[float]]:
    """zeta_i and chi_i written out row by row from the definitions, in Python floats (fp64)."""
    names = list(batch)
    b = batch[anchor].shape[0]
    z = {m: [unit(batch[m][i]) for i in range(b)] for m in names}
    others = [m for m in names if m != anchor]
    zetas, chis = [], []
    for i in range(b):
        dim = len(z[anchor][i])
        v = [sum(z[n][i][k] for n in others) for k in range(dim)]
        phi = [0.0] * dim
        for n in others:
            logits = [dot(z[anchor][i], z[n][j]) / tau for j in range(b)]
            top = max(logits)
            w = [math.exp(x - top) for x in logits]
            total = sum(w)
            for j in range(b):
                for k in range(dim):
                    phi[k] += w[j] / total * z[n][j][k]
        zetas.append(dot(phi, v) / dot(v, v))
        chis.append(1.0 - math.sqrt(dot(v, v)) / sum(math.sqrt(dot(z[n][i], z[n][i])) for n in others))
    return zetas, chis


def make_batch(m: int, b: int = 7, d: int = 5, dtype: torch.dtype = torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, d, generator=g, dtype=torch.float64)
    return {
        f"m{k}": (base + 0.9 * torch.randn(b, d, generator=g, dtype=torch.float64)).to(dtype)
        for k in range(m)
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("m", "anchor", "tau"), [(2, "m0", 0.07), (3, "m1", 0.1), (4, "m3", 0.5)])
def test_per_row_matches_loop(m: int, anchor: str, tau: float, dtype: torch.dtype) -> None:
    batch = make_batch(m, dtype=dtype, seed=m)
    ref_zeta, ref_chi = conflict_loop(batch, anchor, tau)
    rows = geometry.conflict_per_row(batch, anchor, tau)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert rows["zeta"].shape == (7,)
    assert rows["zeta"].dtype == dtype
    torch.testing.assert_close(
        rows["zeta"].double(), torch.tensor(ref_zeta, dtype=torch.float64), atol=tol, rtol=tol
    )
    torch.testing.assert_close(
        rows["chi"].double(), torch.tensor(ref_chi, dtype=torch.float64), atol=tol, rtol=tol
    )
    means = geometry.conflict_metrics(batch, anchor, tau)
    assert set(means) == {"zeta", "chi"}
    assert means["zeta"] == pytest.approx(sum(ref_zeta) / 7, abs=tol)
    assert means["chi"] == pytest.approx(sum(ref_chi) / 7, abs=tol)


def test_chunked_rows_match(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = make_batch(3, b=23, seed=5)
    ref = geometry.conflict_per_row(batch, "m0", 0.1)
    monkeypatch.setattr(fc, "BLOCK_ELEMENTS", 50)  # two rows per block
    got = geometry.conflict_per_row(batch, "m0", 0.1)
    torch.testing.assert_close(got["zeta"], ref["zeta"], atol=1e-12, rtol=0)


def test_chi_zero_when_non_anchor_modalities_agree() -> None:
    g = torch.Generator().manual_seed(1)
    a, z = torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g)
    for batch in ({"a": a, "b": z, "c": 3 * z}, {"a": a, "b": z, "c": z, "d": 0.5 * z}):
        assert geometry.conflict_metrics(batch, "a")["chi"] == pytest.approx(0.0, abs=1e-6)


def test_two_modalities_have_no_disagreement() -> None:
    batch = make_batch(2, seed=3)
    assert geometry.conflict_per_row(batch)["chi"].abs().max() < 1e-12


def test_opposed_positives_give_full_disagreement() -> None:
    z = torch.randn(6, 4, dtype=torch.float64)
    rows = geometry.conflict_per_row({"a": torch.randn(6, 4, dtype=torch.float64), "b": z, "c": -z}, "a")
    torch.testing.assert_close(rows["chi"], torch.ones(6, dtype=torch.float64))


def test_hand_computed_two_rows() -> None:
    # Anchor e1, positives e1 (row 0) and e2 (row 1). Row 0: p = softmax([1, 0] / tau).
    e = torch.eye(2, dtype=torch.float64)
    tau = 0.5
    p0 = math.exp(2.0) / (math.exp(2.0) + 1.0)
    rows = geometry.conflict_per_row({"a": e[[0, 0]], "b": e}, "a", tau)
    # Phi_0 = p0 e1 + (1 - p0) e2, V_0 = e1 -> zeta_0 = p0; row 1 has the same softmax, V_1 = e2.
    assert float(rows["zeta"][0]) == pytest.approx(p0, abs=1e-12)
    assert float(rows["zeta"][1]) == pytest.approx(1.0 - p0, abs=1e-12)


def test_functional_is_differentiable() -> None:
    batch = make_batch(3, b=5, d=3, seed=4)
    a = batch["m0"].clone().requires_grad_(True)

    def f(x: torch.Tensor) -> torch.Tensor:
        zeta, chi = fc.conflict_scores(x, batch["m1"], batch["m2"], temperature=0.3)
        return zeta.sum() + chi.sum()

    assert torch.autograd.gradcheck(f, (a,))


def test_bad_inputs_raise() -> None:
    batch = make_batch(3)
    with pytest.raises(ValueError, match="anchor"):
        geometry.conflict_metrics(batch, "audio")
    for tau in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            geometry.conflict_metrics(batch, "m0", tau)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        geometry.conflict_metrics({"m0": batch["m0"]})
    with pytest.raises(ValueError, match="shape"):
        geometry.conflict_metrics({"a": torch.randn(4, 3), "b": torch.randn(4, 2)})
