"""Non-finite values: stop naming the step and the term, or skip the update (counted, bounded)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmgeom.losses import LossOutput
from mmgeom.train import NonFiniteLossError, StopSignals, Trainer, read_jsonl
from test_train_trainer import synthetic_split, tiny_config


class NaNAt(nn.Module):
    """``(a - b)^2`` whose term ``bad`` is NaN on the listed calls."""

    def __init__(self, calls):
        super().__init__()
        self.count, self.calls = 0, set(calls)

    def forward(self, batch):
        self.count += 1
        good = (batch["a"] - batch["b"]).pow(2).mean()
        bad = good * (float("nan") if self.count in self.calls else 1.0)
        return LossOutput(good + bad, {"good": good.detach(), "bad": bad.detach()})


def _skip_config(max_skips=5, steps=12):
    return tiny_config(
        train={"steps": steps, "log_every": 4},
        eval={"diagnostics": False},
        faults={"on_non_finite": "skip", "max_skips": max_skips},
    )


def test_skip_mode_skips_and_counts(tmp_path):
    trainer = Trainer(_skip_config(), tmp_path, data=synthetic_split(), loss=NaNAt({3, 7}))
    result = trainer.fit()
    assert result.steps == 12 and result.skipped == 2 and trainer.skipped == 2
    skips = [e for e in read_jsonl(tmp_path / "metrics.jsonl") if e["event"] == "skip"]
    assert [(e["step"], e["term"], e["value"], e["skipped"]) for e in skips] == [
        (3, "loss term 'bad'", "nan", 1),
        (7, "loss term 'bad'", "nan", 2),
    ]
    # the optimizer moved on the 10 good steps only; the schedule advanced on all 12
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state.values()}
    assert adam_steps == {10}
    assert trainer.scheduler.last_epoch == 12
    assert all(torch.isfinite(p).all() for p in trainer.encoder.parameters())
    train_events = [e for e in result.history]
    assert all(math.isfinite(e["loss"]) for e in train_events)  # skipped steps are not averaged in
    assert read_jsonl(tmp_path / "metrics.jsonl")[-1]["skipped"] == 2


def test_skip_mode_stops_after_max_skips(tmp_path):
    trainer = Trainer(_skip_config(max_skips=1), tmp_path, data=synthetic_split(), loss=NaNAt({2, 5}))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    assert err.value.step == 5 and err.value.term == "loss term 'bad'" and err.value.skipped == 1
    assert "1 non-finite steps skipped already (faults.max_skips = 1)" in str(err.value)
    last = read_jsonl(tmp_path / "metrics.jsonl")[-1]
    assert last["event"] == "error" and last["step"] == 5


def test_stop_mode_names_step_and_term():
    trainer = Trainer(tiny_config(), data=synthetic_split(), loss=NaNAt({2}))
    trainer.train_step()
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 2: loss term 'bad' = nan"):
        trainer.train_step()


def test_non_finite_gradient_norm_is_skipped():
    class InfGrad(nn.Module):
        def forward(self, batch):
            d = (batch["a"] - batch["b"]).pow(2).sum(dim=1)
            value = torch.sqrt(d - d.detach()).sum() + d.mean()  # sqrt(0): infinite gradient
            return LossOutput(value, {})

    trainer = Trainer(_skip_config(), data=synthetic_split(), loss=InfGrad())
    before = {k: v.clone() for k, v in trainer.encoder.state_dict().items()}
    scalars = trainer.train_step()
    assert scalars["skipped"] == 1.0 and trainer.last_fault.term == "gradient norm"
    assert all(torch.equal(before[k], v) for k, v in trainer.encoder.state_dict().items())


def test_stop_signals_only_set_a_flag():
    import os
    import signal

    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
