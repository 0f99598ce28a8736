"""The real command line under torchrun: ``torchrun --nproc-per-node 2 -m mmgeom train demo``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mmgeom.train import Trainer, load_tensors, read_jsonl
from mmgeom.train.presets import load_preset_or_file

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_torchrun_trains_the_demo_on_two_cpu_processes(tmp_path, mfeat_folder):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "mmgeom",
        "train",
        "demo",
        "--set",
        "train.steps=20",
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Cross-view retrieval") == 1  # rank 0 alone prints
    events = read_jsonl(out / "metrics.jsonl")
    assert events[0]["world_size"] == 2 and events[-1]["event"] == "end" and events[-1]["step"] == 20

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(load_preset_or_file("demo", ["train.steps=20"]), tmp_path / "single", progress=False)
        single.fit()
    finally:
        torch.set_num_threads(threads)
    ddp = load_tensors(out / "model.safetensors")
    for name, value in single.encoder.state_dict().items():  # the same global batches: the same weights
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=name)
