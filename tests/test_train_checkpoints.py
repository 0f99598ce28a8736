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
    read_jsonl,
    register_checkpoint_attributes,
    restore_rng_state,
)
from mmgeom.train.module_state import load_module_extra_state, module_extra_state
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


def test_dagr_calibration_attributes_are_saved():
    reg = create_loss("dagr", delta="auto", calibration_steps=5)
    reg({"a": torch.randn(8, 4), "b": torch.randn(8, 4)})
    saved = module_extra_state(reg)
    assert len(saved[""]["_recorded"]) == 1
    fresh = create_loss("dagr", delta="auto", calibration_steps=5)
    load_module_extra_state(fresh, saved)
    assert torch.equal(fresh._recorded[0], reg._recorded[0])

    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = 0

    register_checkpoint_attributes(Counter, "seen")
    c = Counter()
    c.seen = 3
    assert module_extra_state(c) == {"": {"seen": 3}}


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
