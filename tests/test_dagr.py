"""DAGR regulariser: terms vs loops, band semantics, auto calibration, ablations, spectral rank, errors."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch

from mmgeom.losses import create_loss

from reference import band_hinge_loop, dispersion_loop, unit


def batch_of(m: int, n: int = 9, d: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = ["audio", "video", "text", "flow"][:m]
    return {k: torch.randn(n, d, generator=g, dtype=torch.float64) for k in names}


def numpy_effective_rank(z: np.ndarray) -> float:
    x = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_total_equals_loop_terms(m: int) -> None:
    b = batch_of(m)
    out = create_loss("dagr", lambda_d=0.3, lambda_a=2.0, tau=0.5, delta=0.8)(b)
    disp = sum(dispersion_loop(z, 0.5) for z in b.values())
    pairs = list(combinations(b, 2))
    hinge = sum(band_hinge_loop(b[x], b[y], 0.8) for x, y in pairs) / len(pairs)
    assert float(out.total) == pytest.approx(0.3 * disp + 2.0 * hinge, rel=1e-9)
    assert float(out.terms["anchor"]) == pytest.approx(hinge, rel=1e-9, abs=1e-12)


def test_hinge_exactly_zero_inside_band() -> None:
    base = batch_of(1)["audio"]
    g = torch.Generator().manual_seed(1)
    b = {"audio": base, "video": base + 0.05 * torch.randn(base.shape, generator=g, dtype=torch.float64)}
    b = {k: v.requires_grad_() for k, v in b.items()}
    out = create_loss("dagr", lambda_d=0.0, delta=0.5)(b)
    out.total.backward()
    assert float(out.total.detach()) == 0.0
    assert float(b["video"].grad.abs().max()) == 0.0


def test_always_on_equals_zero_band_and_modes_switch_terms() -> None:
    b = batch_of(3)
    always = create_loss("dagr", mode="always_on", delta=0.9)(b)
    zero = create_loss("dagr", delta=0.0)(b)
    assert float(always.total) == pytest.approx(float(zero.total), rel=1e-12)
    assert float(always.terms["delta"]) == 0.0
    disp_only = create_loss("dagr", mode="dispersion_only")(b)
    assert "anchor" not in disp_only.terms
    assert any(k.startswith("dispersion/") for k in disp_only.terms)
    anchor_only = create_loss("dagr", mode="anchor_only")(b)
    assert not any(k.startswith("dispersion/") for k in anchor_only.terms)
    full = create_loss("dagr")(b)
    assert float(full.total) == pytest.approx(float(disp_only.total) + float(anchor_only.total), rel=1e-9)


def test_auto_delta_calibrates_to_quantile_of_first_steps() -> None:
    reg = create_loss("dagr", delta="auto", calibration_steps=3, auto_quantile=0.25)
    reg.train()
    batches = [batch_of(2, seed=s) for s in range(4)]
    recorded = []
    for b in batches[:3]:
        assert reg.calibrating
        out = reg(b)
        assert float(out.terms["anchor"]) == 0.0  # anchoring is off while calibrating
        recorded += [
            float(((unit(b["audio"][i]) - unit(b["video"][i])) ** 2).sum())
            for i in range(b["audio"].shape[0])
        ]
    assert not reg.calibrating
    assert float(reg.delta) == pytest.approx(float(np.quantile(recorded, 0.25)), rel=1e-9)
    out = reg(batches[3])
    assert float(out.terms["anchor"]) == pytest.approx(
        band_hinge_loop(batches[3]["audio"], batches[3]["video"], float(reg.delta)), rel=1e-9
    )
    state = reg.state_dict()
    fresh = create_loss("dagr", delta="auto", calibration_steps=3)
    fresh.load_state_dict(state)
    assert not fresh.calibrating


def test_auto_delta_does_not_calibrate_in_eval_mode() -> None:
    reg = create_loss("dagr", delta="auto", calibration_steps=1).eval()
    reg(batch_of(2))
    assert reg.calibrating


def test_spectral_dispersion_raises_effective_rank_of_low_rank_batch() -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(2, 16, generator=g)
    z0 = torch.randn(64, 2, generator=g) @ basis + 0.01 * torch.randn(64, 16, generator=g)
    z = torch.nn.Parameter(z0.clone())
    reg = create_loss("dagr", dispersion="spectral", mode="dispersion_only", lambda_d=1.0)
    opt = torch.optim.Adam([z], lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        reg({"audio": z, "video": z0}).total.backward()
        opt.step()
    before = numpy_effective_rank(z0.numpy())
    after = numpy_effective_rank(z.detach().numpy())
    assert before < 3.0
    assert after > 2 * before


def test_gaussian_dispersion_spreads_a_clump() -> None:
    g = torch.Generator().manual_seed(0)
    z0 = torch.tensor([1.0, 0, 0, 0]) + 0.05 * torch.randn(32, 4, generator=g)
    z = torch.nn.Parameter(z0.clone())
    reg = create_loss("dagr", mode="dispersion_only", lambda_d=1.0, tau=0.5)
    opt = torch.optim.Adam([z], lr=0.02)
    for _ in range(100):
        opt.zero_grad()
        reg({"audio": z, "video": z0}).total.backward()
        opt.step()
    assert numpy_effective_rank(z.detach().numpy()) > numpy_effective_rank(z0.numpy())
    assert float(reg({"audio": z, "video": z0}).terms["dispersion/audio"]) < dispersion_loop(z0.double(), 0.5)


def test_mask_drops_missing_rows() -> None:
    b = batch_of(2)
    present = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    b["video"][~present] = 0.0
    out = create_loss("dagr", delta=0.3)(b, mask={"video": present})
    assert float(out.terms["dispersion/video"]) == pytest.approx(dispersion_loop(b["video"][present], 1.0))
    hinge = band_hinge_loop(b["audio"][present], b["video"][present], 0.3)
    assert float(out.terms["anchor"]) == pytest.approx(hinge, rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"delta": -0.1}, "delta: expected a finite value >= 0"),
        ({"delta": "adaptive"}, "delta: expected a number >= 0, 'auto' or a drift quantile 'qP'"),
        ({"delta": "q1.5"}, "delta: expected a number >= 0, 'auto' or a drift quantile 'qP'"),
        ({"delta": "q"}, "delta: expected a number >= 0, 'auto' or a drift quantile 'qP'"),
        ({"delta": "q0.25", "auto_quantile": 0.1}, "auto_quantile: delta='q0.25' already names"),
        ({"mode": "anchor"}, "mode: expected one of"),
        ({"dispersion": "uniform"}, "dispersion: expected one of"),
        ({"tau": 0.0}, "tau: expected"),
        ({"auto_quantile": 1.5}, "auto_quantile"),
        ({"delta": "auto", "calibration_steps": 0}, "calibration_steps"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        create_loss("dagr", **kwargs)
    assert fragment in str(info.value)


def test_mismatched_batch() -> None:
    b = batch_of(2)
    with pytest.raises(ValueError, match="video: expected 9 rows to pair with audio"):
        create_loss("dagr")({"audio": b["audio"], "video": b["video"][:4]})
