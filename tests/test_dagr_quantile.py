"""DAGR ``delta="qP"``: the band is a hand-computed quantile of the first-epoch drift; the inactive-band
warning; resume keeps the calibrated band (through the buffer and the extra state mid-calibration)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from mmgeom.losses import create_loss
from mmgeom.losses.dagr import INACTIVE_BAND, parse_delta

#: Squared distances of the five pairs of the calibration batch, sorted.
DRIFTS = [0.0, 0.5, 1.0, 2.0, 3.0]


def drift_batch(drifts: list[float]) -> dict[str, torch.Tensor]:
    """Pairs of unit vectors in the plane with ``||a_i - b_i||^2 = drifts[i]`` (``d^2 = 2 - 2 cos theta``)."""
    theta = torch.tensor([math.acos(1 - d / 2) for d in drifts], dtype=torch.float64)
    a = torch.stack([torch.ones_like(theta), torch.zeros_like(theta)], dim=1)
    b = torch.stack([theta.cos(), theta.sin()], dim=1)
    return {"audio": a, "video": b}


# Linear interpolation between order statistics x_(0..4) at position P * 4, computed by hand:
# q0.1 -> pos 0.4 -> 0 + 0.4 * 0.5 = 0.2; q0.25 -> pos 1 -> 0.5; q0.5 -> pos 2 -> 1.0; q0.9 -> pos 3.6 -> 2.6.
@pytest.mark.parametrize(("delta", "expected"), [("q0.1", 0.2), ("q0.25", 0.5), ("q0.5", 1.0), ("q.9", 2.6)])
def test_quantile_band_matches_hand_computed_value(delta: str, expected: float) -> None:
    reg = create_loss("dagr", delta=delta, calibration_steps=1, lambda_d=0.0)
    reg.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # q0.9 is above the inactive band; tested below
        out = reg(drift_batch(DRIFTS))
    assert float(out.terms["anchor"]) == 0.0  # the calibrating call has the anchor off
    assert float(reg.delta) == pytest.approx(expected, rel=1e-9)
    # After calibration the hinge acts: pairs above the band contribute (d^2 - delta), averaged over rows.
    after = reg(drift_batch(DRIFTS))
    hinge = sum(max(d - expected, 0.0) for d in DRIFTS) / len(DRIFTS)
    assert float(after.terms["anchor"]) == pytest.approx(hinge, rel=1e-9, abs=1e-12)


def test_quantile_across_calibration_steps_pools_the_drift() -> None:
    """Two calibration calls: the quantile is taken over all ten recorded pairs."""
    reg = create_loss("dagr", delta="q0.25", calibration_steps=2).train()
    reg(drift_batch([0.0, 0.1, 0.2, 0.3, 0.4]))
    assert reg.calibrating
    reg(drift_batch([1.0, 1.1, 1.2, 1.3, 1.4]))
    # sorted: 0, .1, .2, .3, .4, 1, 1.1, 1.2, 1.3, 1.4; pos 0.25 * 9 = 2.25 -> 0.2 + 0.25 * 0.1 = 0.225
    assert float(reg.delta) == pytest.approx(0.225, rel=1e-9)


def test_auto_and_q_agree_at_the_same_quantile() -> None:
    a = create_loss("dagr", delta="auto", auto_quantile=0.25, calibration_steps=1).train()
    q = create_loss("dagr", delta="q0.25", calibration_steps=1).train()
    a(drift_batch(DRIFTS))
    q(drift_batch(DRIFTS))
    assert float(a.delta) == float(q.delta) == pytest.approx(0.5)


def test_warns_when_the_calibrated_band_leaves_the_anchor_inactive() -> None:
    reg = create_loss("dagr", delta="q0.9", calibration_steps=1).train()
    with pytest.warns(UserWarning, match=r"delta: calibrated band 2\.6 > 1\.5 .*nearly inactive"):
        reg(drift_batch(DRIFTS))
    assert INACTIVE_BAND == 1.5
    low = create_loss("dagr", delta="q0.5", calibration_steps=1).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a band of 1.0 must not warn
        low(drift_batch(DRIFTS))


def test_resume_keeps_the_calibrated_band_and_mid_calibration_drift() -> None:
    reg = create_loss("dagr", delta="q0.25", calibration_steps=2).train()
    reg(drift_batch([0.0, 0.1, 0.2, 0.3, 0.4]))
    mid = reg.state_dict()  # one step recorded, band not yet fixed
    resumed = create_loss("dagr", delta="q0.25", calibration_steps=2).train()
    resumed.load_state_dict(mid)
    assert resumed.calibrating
    resumed(drift_batch([1.0, 1.1, 1.2, 1.3, 1.4]))
    assert float(resumed.delta) == pytest.approx(0.225, rel=1e-9)
    done = create_loss("dagr", delta="q0.25", calibration_steps=2)
    done.load_state_dict(resumed.state_dict())
    assert not done.calibrating and float(done.delta) == pytest.approx(0.225, rel=1e-9)


def test_parse_delta() -> None:
    assert parse_delta(0.3) == (0.3, 0.5)
    assert parse_delta("auto", 0.2) == (None, 0.2)
    assert parse_delta("q0.1") == (None, 0.1)
    assert parse_delta("q1") == (None, 1.0)
    with pytest.raises(ValueError, match="delta: expected a number >= 0, 'auto'"):
        parse_delta("q-0.1")


def test_with_value_checks_off_the_band_warning_waits_for_deferred_checks() -> None:
    reg = create_loss("dagr", delta="q0.9", calibration_steps=1, check_values=False).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the call reads nothing on the host, so it cannot warn
        reg(drift_batch(DRIFTS))
    assert not reg.calibrating
    with pytest.warns(UserWarning, match=r"delta: calibrated band 2\.6 > 1\.5"):
        reg.deferred_checks()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        reg.deferred_checks()
