"""Run files: atomic safetensors writes, the JSONL writer, run directories."""

from __future__ import annotations

import json

import pytest
import torch

import mmgeom._io as io_module
from mmgeom.train import (
    JsonlWriter,
    atomic_save_tensors,
    load_tensors,
    read_jsonl,
    resolve_run_dir,
    save_module,
)


def test_atomic_save_round_trip_and_no_temporary_files(tmp_path):
    module = torch.nn.Linear(3, 2)
    path = save_module(tmp_path / "w.safetensors", module, {"step": "5"})
    loaded = load_tensors(path)
    assert set(loaded) == {"weight", "bias"}
    torch.testing.assert_close(loaded["weight"], module.weight.detach())
    save_module(path, torch.nn.Linear(3, 2))  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_failed_save_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = atomic_save_tensors(tmp_path / "w.safetensors", {"x": torch.ones(2)})

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(io_module, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_save_tensors(path, {"x": torch.zeros(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    assert torch.equal(load_tensors(path)["x"], torch.ones(2))


def test_jsonl_writer_serialises_tensors_and_non_finite_values(tmp_path):
    path = tmp_path / "m.jsonl"
    with JsonlWriter(path) as log:
        log.write("train", 1, loss=torch.tensor(0.5), bad=float("nan"), inf=float("-inf"), xs=(1, 2))
        log.write("eval", 2, metrics={"hit@1": 0.25})
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == {
        "event": "train",
        "step": 1,
        "loss": 0.5,
        "bad": "nan",
        "inf": "-inf",
        "xs": [1, 2],
    }
    assert read_jsonl(path)[1] == {"event": "eval", "step": 2, "metrics": {"hit@1": 0.25}}
    with JsonlWriter(path) as log:  # a new run starts the file afresh
        log.write("start", 0)
    assert len(read_jsonl(path)) == 1


def test_run_directories_are_unique(tmp_path):
    a = resolve_run_dir("demo", root=tmp_path)
    b = resolve_run_dir("demo", root=tmp_path)
    assert a != b and a.is_dir() and b.is_dir() and a.name.startswith("demo-")
    assert resolve_run_dir("x", out=tmp_path / "given") == tmp_path / "given"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        resolve_run_dir("x", out=tmp_path / "file")
