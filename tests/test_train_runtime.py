"""The run-execution config sections, bf16 autocast, TensorBoard, classification metrics, determinism."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from mmgeom.train import (
    ConfigError,
    Trainer,
    config_from_dict,
    load_config,
    nearest_centroid_accuracy,
    packaged_config_path,
)
from mmgeom.train.logging.tensorboard import tensorboard_available
from test_train_trainer import synthetic_split, tiny_config


def test_new_sections_have_defaults_and_old_yaml_stays_valid(tmp_path):
    old = tmp_path / "old.yaml"  # a config written before the sections existed
    old.write_text("loss:\n  name: infonce\ntrain:\n  steps: 10\n")
    cfg = load_config(old)
    assert cfg.checkpoint.every == 0 and cfg.checkpoint.keep_last == 2 and cfg.checkpoint.best_metric is None
    assert cfg.logging.tensorboard is False
    assert cfg.distributed.backend == "auto" and cfg.distributed.loss_regime == "global"
    assert cfg.faults.on_non_finite == "stop" and cfg.faults.max_skips == 10
    assert cfg.train.precision == "fp32" and cfg.train.deterministic is False
    assert load_config(packaged_config_path("demo")).checkpoint.every == 0
    assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"checkpoint": {"every": -1}}, "checkpoint.every: Input should be greater than or equal to 0"),
        ({"checkpoint": {"keep_lst": 3}}, "checkpoint.keep_lst: unknown key; did you mean 'keep_last'?"),
        ({"checkpoint": {"best_metric": "hit@1"}}, "checkpoint.best_metric: expected an evaluation key"),
        ({"checkpoint": {"best_mode": "up"}}, "checkpoint.best_mode"),
        ({"logging": {"tensorbord": True}}, "logging.tensorbord: unknown key; did you mean 'tensorboard'?"),
        ({"distributed": {"backend": "mpi"}}, "distributed.backend"),
        (
            {"distributed": {"loss_regime": "local"}, "loss": {"name": "unialign"}},
            "distributed.loss_regime: the local loss regime is implemented for infonce only",
        ),
        ({"faults": {"on_non_finite": "retry"}}, "faults.on_non_finite"),
        ({"faults": {"max_skips": -2}}, "faults.max_skips"),
        ({"train": {"precision": "fp8"}}, "train.precision"),
        (
            {
                "checkpoint": {"best_metric": "classification/fused/accuracy"},
                "eval": {"classification": False},
            },
            "checkpoint.best_metric: 'classification/fused/accuracy' needs eval.classification: true",
        ),
    ],
)
def test_errors_in_the_new_sections_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert key in str(err.value)


def test_bf16_autocast_trains():
    trainer = Trainer(tiny_config(train={"precision": "bf16"}), data=synthetic_split())
    seen = []
    trainer.encoder.register_forward_hook(lambda m, i, out: seen.append({v: z.dtype for v, z in out.items()}))
    losses = [trainer.train_step()["loss"] for _ in range(20)]
    assert set(seen[0].values()) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.encoder.parameters())  # master weights stay fp32
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_classification_metrics_match_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    ref = {"a": torch.randn(30, 4, generator=g), "b": torch.randn(30, 4, generator=g)}
    ref_labels = torch.arange(30) % 3
    emb = {"a": torch.randn(12, 4, generator=g), "b": torch.randn(12, 4, generator=g)}
    labels = torch.arange(12) % 3
    got = nearest_centroid_accuracy(ref, ref_labels, emb, labels)

    def unit(x):
        return x / x.norm(dim=1, keepdim=True)

    def naive(r, z):
        cents = [unit(r)[ref_labels == c].mean(dim=0) for c in range(3)]
        correct = 0
        for i in range(z.shape[0]):
            sims = [float(unit(z[i : i + 1])[0] @ (c / c.norm())) for c in cents]
            correct += int(max(range(3), key=lambda k: sims[k]) == int(labels[i]))
        return correct / z.shape[0]

    for v in ("a", "b"):
        assert got[f"classification/{v}/accuracy"] == pytest.approx(naive(ref[v], emb[v]))
    fused_ref = (unit(ref["a"]) + unit(ref["b"])) / 2
    fused = (unit(emb["a"]) + unit(emb["b"])) / 2
    assert got["classification/fused/accuracy"] == pytest.approx(naive(fused_ref, fused))


def test_evaluation_has_classification_keys():
    trainer = Trainer(tiny_config(eval={"diagnostics": False}), data=synthetic_split())
    metrics = trainer.evaluate()
    assert {"classification/a/accuracy", "classification/fused/accuracy", "chance/accuracy"} <= set(metrics)
    off = Trainer(tiny_config(eval={"diagnostics": False, "classification": False}), data=synthetic_split())
    assert not any(k.startswith("classification/") for k in off.evaluate())


def test_deterministic_mode_is_restored(tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    cfg = tiny_config(train={"steps": 3, "deterministic": True}, optim={"warmup_steps": 0})
    Trainer(cfg, tmp_path, data=synthetic_split()).fit()
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is not installed")
def test_tensorboard_event_files(tmp_path):
    cfg = tiny_config(train={"steps": 10}, eval={"diagnostics": False}, logging={"tensorboard": True})
    Trainer(cfg, tmp_path, data=synthetic_split()).fit()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert files
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/retrieval/mean/hit@1" in tags
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10]


def test_missing_tensorboard_is_a_config_error(monkeypatch):
    import mmgeom.train.logging.tensorboard as tb

    monkeypatch.setattr(tb, "tensorboard_available", lambda: False)
    with pytest.raises(ConfigError, match=r"logging\.tensorboard: the tensorboard package is not installed"):
        Trainer(tiny_config(logging={"tensorboard": True}), data=synthetic_split())


def _draws():
    import random

    import numpy as np

    return random.random(), float(np.random.rand()), torch.rand(2).tolist()  # noqa: NPY002


def test_fit_restores_the_callers_random_state_and_cublas_variable(tmp_path, monkeypatch):
    from mmgeom.seeding import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cfg = tiny_config(train={"steps": 3, "deterministic": True}, optim={"warmup_steps": 0})
    seed_everything(11)
    expected = _draws()

    seed_everything(11)
    Trainer(cfg, tmp_path / "a", data=synthetic_split()).fit()  # seeds with train.seed, draws dropout
    assert _draws() == expected
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own value is kept
    seed_everything(11)
    failing = Trainer(cfg, tmp_path / "b", data=synthetic_split())

    def boom():
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        raise RuntimeError("boom")

    failing.train_step = boom
    with pytest.raises(RuntimeError, match="boom"):
        failing.fit()
    assert _draws() == expected  # restored on the error path too
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_deterministic_fit_sets_cublas_only_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    trainer = Trainer(
        tiny_config(train={"steps": 2, "deterministic": True}, optim={"warmup_steps": 0}),
        tmp_path,
        data=synthetic_split(),
    )
    seen = []
    original = trainer.train_step

    def step():
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return original()

    trainer.train_step = step
    trainer.fit()
    assert seen == [":4096:8", ":4096:8"]
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
