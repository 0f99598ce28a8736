"""The trainer's per-step fast path: same metrics and weights as the float path, fewer host syncs."""

from __future__ import annotations

import math
import random
import sys

import pytest
import torch
from torch import nn

from mmgeom.losses import LossOutput
from mmgeom.train import Trainer, build_loss, read_jsonl
from mmgeom.train.config import LossConfig
from mmgeom.train.faults import all_finite, embedding_fault
from mmgeom.train.step_values import IntervalSums, StepValues, from_floats
from test_train_faults import NaNAt
from test_train_trainer import synthetic_split, tiny_config


def _events(path):
    """metrics.jsonl without what depends on the clock."""
    out = []
    for e in read_jsonl(path):
        if e["event"] in ("start", "end"):
            continue
        out.append({k: v for k, v in e.items() if k not in ("examples_per_s", "seconds")})
    return out


def _float_path(trainer, record):
    """Replace train_step on the instance (fit then takes the float path) and record each step's floats."""
    original = trainer.train_step

    def step():
        scalars = original()
        record.append(dict(scalars))
        return scalars

    trainer.train_step = step
    assert trainer.stepper() != trainer.update


@pytest.mark.parametrize(
    ("overrides", "loss"),
    [
        ({"model": {"dropout": 0.2}, "train": {"steps": 23, "log_every": 5}}, None),  # ragged last interval
        (
            {"train": {"steps": 12, "log_every": 4}, "faults": {"on_non_finite": "skip", "max_skips": 5}},
            lambda: NaNAt({3, 7}),
        ),
    ],
)
@pytest.mark.parametrize("on_device", [False, True])
def test_fast_path_logs_and_trains_exactly_as_the_float_path(tmp_path, overrides, loss, on_device):
    cfg = tiny_config(eval={"diagnostics": False}, **overrides)
    data = synthetic_split()
    fast = Trainer(cfg, tmp_path / "fast", data=data, loss=loss() if loss else None)
    fast.values_on_device = on_device  # the accelerator path (a float64 tensor per step), here on the CPU
    assert fast.stepper() == fast.update
    fast.fit()
    slow = Trainer(cfg, tmp_path / "slow", data=data, loss=loss() if loss else None)
    steps: list[dict[str, float]] = []
    _float_path(slow, steps)
    slow.fit()
    assert _events(tmp_path / "fast" / "metrics.jsonl") == _events(tmp_path / "slow" / "metrics.jsonl")
    for (name, a), b in zip(
        fast.encoder.state_dict().items(), slow.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    # Independent reference: the interval means as Python adds up the per-step floats, in step order.
    every, total = cfg.train.log_every, cfg.train.steps
    expected = []
    for end in range(every, total + every, every):
        good = [s for s in steps[end - every : min(end, total)] if "skipped" not in s]
        sums: dict[str, float] = {}
        for s in good:
            for k, v in s.items():
                if k not in ("lr", "grad_norm"):
                    sums[k] = sums.get(k, 0.0) + v
        expected.append({k: v / len(good) for k, v in sums.items()})
    got = [e for e in read_jsonl(tmp_path / "fast" / "metrics.jsonl") if e["event"] == "train"]
    assert [{k: e[k] for k in ref} for e, ref in zip(got, expected, strict=True)] == expected


@pytest.mark.parametrize("as_tensor", [True, False])
def test_interval_sums_equal_python_float_sums_bit_for_bit(as_tensor):
    rng = random.Random(0)
    state = {"sums": {"loss": 0.1}, "count": 3, "seconds": 0.0}  # as restored from a checkpoint
    ref = dict(state["sums"])
    acc = IntervalSums(lambda: state)
    names = ("loss", "loss/a", "loss/b")
    for i in range(200):
        if i == 120:
            names = ("loss", "loss/b", "loss/c")  # a loss whose terms change: continue from the floats
        values = torch.tensor([rng.uniform(-1e3, 1e3) for _ in names], dtype=torch.float32)
        logged = values.to(torch.float64) if as_tensor else tuple(values.tolist())
        acc.add(StepValues(lr=0.1, names=names, values=logged), 0.01)
        for k, v in zip(names, values.tolist(), strict=True):
            ref[k] = ref.get(k, 0.0) + v
        if i % 37 == 0:
            acc.flush()  # a checkpoint in the middle of an interval
    acc.flush()
    assert state["sums"] == ref and list(state["sums"]) == list(ref)
    assert state["count"] == 203 and math.isclose(state["seconds"], 2.0)


def test_from_floats_round_trips_train_step_output():
    values = from_floats({"loss": 1.5, "loss/a": 0.25, "lr": 0.1, "grad_norm": 2.0})
    assert values.names == ("loss", "loss/a") and values.values is not None
    assert values.values == (1.5, 0.25) and values.lr == 0.1 and values.grad_norm == 2.0
    assert values.as_floats() == {"loss": 1.5, "loss/a": 0.25, "lr": 0.1, "grad_norm": 2.0}
    assert from_floats({"skipped": 1.0, "lr": 0.2}).as_floats() == {"skipped": 1.0, "lr": 0.2}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_all_finite_catches_every_non_finite_value(bad, dtype):
    z = [torch.randn(7, 3).to(dtype), torch.randn(7, 3).to(dtype)]
    assert all_finite(z)
    z[1][4, 2] = bad
    assert not all_finite(z)
    assert embedding_fault({"a": z[0], "b": z[1]}).term == "embeddings of view 'b'"


def test_overflowing_sum_falls_back_to_the_exact_search():
    # Finite entries whose float32 sum overflows: the fast check says "look closer", the search finds nothing.
    z = {"a": torch.full((4, 4), 3e38), "b": torch.randn(4, 4)}
    assert not all_finite(list(z.values()))
    assert embedding_fault(z) is None
    z["b"][0, 0] = float("nan")
    fault = embedding_fault(z)
    assert fault is not None and fault.term == "embeddings of view 'b'" and math.isnan(fault.value)


class SyncFree(nn.Module):
    """``(a - b)^2`` with two terms, computed without a host sync."""

    def forward(self, batch):
        d = (batch["a"] - batch["b"]).pow(2).mean()
        c = (batch["a"] - batch["c"]).pow(2).mean()
        return LossOutput(d + c, {"ab": d.detach(), "ac": c.detach()})


def _count_train_syncs(monkeypatch):
    """Count tensor -> host conversions called from mmgeom.train (bool, float, item, tolist, cpu)."""
    calls: list[str] = []
    for name in ("__bool__", "__float__", "item", "tolist", "cpu"):
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if "/mmgeom/train/" in caller:
                calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return calls


def test_an_update_syncs_three_times_and_logging_once_per_interval(tmp_path, monkeypatch):
    cfg = tiny_config(train={"steps": 20, "log_every": 10, "eval_before": False}, eval={"diagnostics": False})
    trainer = Trainer(cfg, tmp_path, data=synthetic_split(), loss=SyncFree())
    assert not trainer.values_on_device  # the CPU reads the values as floats (no sync there)
    trainer.values_on_device = True  # what a GPU run does, counted here on the CPU
    calls = _count_train_syncs(monkeypatch)
    trainer.update()
    # embeddings finite (one fused check), loss finite, gradient norm finite: each gates the optimizer
    assert calls == ["__float__", "__float__", "__float__"]
    calls.clear()
    monkeypatch.setattr(trainer, "evaluate", lambda split=None: {})
    trainer.fit()
    # 19 more updates x 3, and one tolist per train event (two intervals)
    assert calls.count("tolist") == 2 and len(calls) == 19 * 3 + 2


def test_train_mode_is_restored_after_evaluation_and_for_any_submodule():
    trainer = Trainer(tiny_config(eval={"diagnostics": False}), data=synthetic_split())
    trainer.update()
    trainer.encoder.eval()
    trainer.update()
    assert all(m.training for m in trainer.encoder.modules())
    sub = list(trainer.encoder.modules())[2]
    sub.eval()  # one submodule (and its children) only; the root stays in training mode
    assert trainer.encoder.training and not sub.training
    trainer.update()
    assert all(m.training for m in trainer.encoder.modules())


def test_build_loss_turns_the_loss_value_checks_off():
    loss = build_loss(LossConfig(name="infonce", kwargs={"temperature": 0.1}))
    assert loss.check_values is False
