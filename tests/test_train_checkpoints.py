"""CheckpointStore: atomic directories, manifest checksums, keep-last-K and best, fallback when corrupt."""

from __future__ import annotations

import json

import pytest
import torch

from mmgeom.losses import create_loss
from mmgeom.train import (
    CheckpointError,
    CheckpointStore,
    CheckpointWarning,
    Trainer,
    capture_rng_state,
    load_tensors,
    read_jsonl,
    restore_rng_state,
    save_module,
)
from mmgeom.train.module_state import legacy_extra_state, split_state_dict
from test_train_trainer import synthetic_split, tiny_config


def _save(store, step, kind="periodic", **extra):
    model = {"w": torch.full((3, 2), float(step)), "b": torch.arange(2.0)}
    loss = {"log_scale": torch.tensor(step / 10.0)}
    state = {"step": step, "nested": {"t": torch.ones(2) * step, "tuple": (1, 2.5, None, "x")}}
    return store.save(step, model, loss, state, kind, extra or None)


def test_save_and_load_round_trip(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    path = _save(store, 7)
    assert path.name == "step-00000007"
    assert sorted(p.name for p in path.iterdir()) == [
        "loss.safetensors",
        "manifest.json",
        "model.safetensors",
        "state.pt",
    ]
    ckpt = store.load(path)
    assert ckpt.step == 7 and ckpt.kind == "periodic"
    assert torch.equal(ckpt.model["w"], torch.full((3, 2), 7.0))
    assert ckpt.state["nested"]["tuple"] == (1, 2.5, None, "x")
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "loss.safetensors", "state.pt"}
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary directory left


def test_keep_last_and_best(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2)
    for step in (5, 10, 15, 20):
        _save(store, step)
        store.prune()
    _save(store, 10, kind="best", metric="retrieval/mean/hit@1", value=0.5)
    assert [p.name for p in store.step_dirs()] == ["step-00000020", "step-00000015"]
    assert store.best_manifest()["value"] == 0.5
    assert [p.name for p in store.candidates()] == ["step-00000020", "step-00000015", "best"]
    _save(store, 15, kind="best", metric="retrieval/mean/hit@1", value=0.7)  # replaces best/
    assert store.best_manifest()["step"] == 15
    assert store.load_latest().step == 20


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: (p / "manifest.json").unlink(), "incomplete"),
        (lambda p: (p / "state.pt").write_bytes((p / "state.pt").read_bytes()[:50]), "bytes"),
        (lambda p: (p / "model.safetensors").unlink(), "missing"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "unreadable"),
    ],
)
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, damage, reason):
    store = CheckpointStore(tmp_path, keep_last=3)
    for step in (1, 2):
        _save(store, step)
    damage(tmp_path / "step-00000002")
    with pytest.warns(CheckpointWarning, match=reason):
        ckpt = store.load_latest()
    assert ckpt.step == 1 and len(ckpt.skipped) == 1


def test_flipped_byte_is_caught_by_the_checksum(tmp_path):
    store = CheckpointStore(tmp_path)
    path = _save(store, 3)
    blob = bytearray((path / "loss.safetensors").read_bytes())
    blob[-1] ^= 0x01
    (path / "loss.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="SHA-256"):
        store.load(path)


def test_no_usable_checkpoint_lists_every_reason(tmp_path):
    store = CheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        store.load_latest()
    for step in (1, 2):
        path = _save(store, step)
        (path / "manifest.json").unlink()
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError) as err:
        store.load_latest()
    assert "step-00000001" in str(err.value) and "step-00000002" in str(err.value)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path)
    _save(store, 4)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.save(4, {"w": torch.zeros(1)}, {}, {"bad": Unpicklable()})
    assert torch.equal(store.load(tmp_path / "step-00000004").model["w"], torch.full((3, 2), 4.0))
    assert not list(tmp_path.glob(".*"))


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    restore_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_dagr_carries_its_calibration_drift_as_extra_state(tmp_path):
    reg = create_loss("dagr", delta="auto", calibration_steps=5)
    reg({"a": torch.randn(8, 4), "b": torch.randn(8, 4)})
    state = reg.state_dict()
    recorded = state["_extra_state"]["recorded"]
    assert len(recorded) == 1 and recorded[0].shape == (8,)  # one pair (a, b), one distance per row
    fresh = create_loss("dagr", delta="auto", calibration_steps=5)
    fresh.load_state_dict(state)
    assert torch.equal(fresh._recorded[0], recorded[0])
    # weights files hold tensors only: the extra state is not a weight
    assert set(load_tensors(save_module(tmp_path / "loss.safetensors", reg))) == {"delta", "calls"}


def test_checkpoints_from_before_extra_state_still_load():
    reg = create_loss("dagr", delta="auto", calibration_steps=5)
    reg({"a": torch.randn(8, 4), "b": torch.randn(8, 4)})
    tensors, objects = split_state_dict(reg.state_dict())
    assert set(tensors) == {"delta", "calls"} and set(objects) == {"_extra_state"}
    old = {"": {"_recorded": list(reg._recorded)}}  # the old "loss_attributes" of the state file
    fresh = create_loss("dagr", delta="auto", calibration_steps=5)
    legacy = legacy_extra_state(fresh, old)
    assert list(legacy) == ["_extra_state"]
    fresh.load_state_dict({**tensors, **legacy})
    assert torch.equal(fresh._recorded[0], reg._recorded[0])
    # nested: the submodule's key; modules without extra state get nothing (load_state_dict stays strict)
    outer = torch.nn.ModuleDict({"reg": create_loss("dagr", delta="auto"), "lin": torch.nn.Linear(2, 2)})
    assert list(legacy_extra_state(outer, {"reg": old[""], "lin": {"seen": 3}})) == ["reg._extra_state"]


def test_best_checkpoint_follows_the_metric(tmp_path):
    cfg = tiny_config(
        train={"steps": 12, "eval_every": 4},
        eval={"diagnostics": False},
        checkpoint={"best_metric": "retrieval/mean/hit@1", "every": 6},
    )
    result = Trainer(cfg, tmp_path, data=synthetic_split()).fit()
    evals = [e for e in read_jsonl(tmp_path / "metrics.jsonl") if e["event"] == "eval"]
    best = max(evals, key=lambda e: (e["retrieval/mean/hit@1"], -e["step"]))
    assert result.best == {
        "metric": "retrieval/mean/hit@1",
        "value": best["retrieval/mean/hit@1"],
        "step": best["step"],
    }
    manifest = CheckpointStore(tmp_path / "checkpoints").best_manifest()
    assert manifest["step"] == best["step"] and manifest["kind"] == "best"
    assert result.checkpoint == tmp_path / "checkpoints" / "step-00000012"


def test_unknown_best_metric_names_the_key(tmp_path):
    from mmgeom.train import ConfigError

    cfg = tiny_config(
        train={"steps": 6}, eval={"diagnostics": False}, checkpoint={"best_metric": "retrieval/x"}
    )
    with pytest.raises(ConfigError, match=r"checkpoint\.best_metric: 'retrieval/x' is not an evaluation key"):
        Trainer(cfg, tmp_path, data=synthetic_split()).fit()
