"""mmgeom.train.schedule: warm-up + cosine values against the closed form, and inside an optimizer."""

from __future__ import annotations

import math

import pytest
import torch

from mmgeom.train import build_scheduler, warmup_cosine_lr

# base 1.0, 110 updates, 10 warm-up: the decay covers 100 updates, p = (step - 10) / 100.
CASES = [
    (0, 0.1),  # (0 + 1) / 10
    (4, 0.5),  # (4 + 1) / 10
    (9, 1.0),  # last warm-up update reaches the peak
    (10, 1.0),  # p = 0
    (35, 0.5 * (1 + math.sqrt(0.5))),  # p = 1/4: cos(pi/4) = sqrt(1/2)
    (60, 0.5),  # p = 1/2
    (85, 0.5 * (1 - math.sqrt(0.5))),  # p = 3/4
    (110, 0.0),  # p = 1
    (500, 0.0),  # clipped beyond the run
]


@pytest.mark.parametrize(("step", "expected"), CASES)
def test_warmup_cosine_closed_form(step, expected):
    assert warmup_cosine_lr(step, 1.0, 110, 10) == pytest.approx(expected, abs=1e-12)


def test_min_lr_and_scaling():
    # min 0.1, base 2.0: at p = 1/2 the value is 0.1 + 1.9 * 0.5
    assert warmup_cosine_lr(60, 2.0, 110, 10, min_lr=0.1) == pytest.approx(1.05)
    assert warmup_cosine_lr(110, 2.0, 110, 10, min_lr=0.1) == pytest.approx(0.1)
    assert warmup_cosine_lr(0, 2.0, 110, 0) == pytest.approx(2.0)  # no warm-up: starts at the peak


def test_constant_schedule():
    assert warmup_cosine_lr(2, 1.0, 50, 4, schedule="constant") == pytest.approx(0.75)
    assert warmup_cosine_lr(40, 1.0, 50, 4, schedule="constant") == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="step"):
        warmup_cosine_lr(-1, 1.0, 10)
    with pytest.raises(ValueError, match="schedule"):
        warmup_cosine_lr(0, 1.0, 10, schedule="linear")


def test_optimizer_follows_the_schedule_in_every_group():
    w1, w2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([{"params": [w1], "lr": 0.01}, {"params": [w2], "lr": 0.002}])
    sched = build_scheduler(opt, total_steps=110, warmup_steps=10)
    seen = []
    for _ in range(111):
        seen.append([g["lr"] for g in opt.param_groups])
        (w1.sum() + w2.sum()).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    for step, expected in CASES[:-1]:
        assert seen[step][0] == pytest.approx(0.01 * expected, abs=1e-12)
        assert seen[step][1] == pytest.approx(0.002 * expected, abs=1e-12)
