"""Interrupted and resumed runs end bit-identical to uninterrupted ones.

* in-process: SIGINT between steps writes a checkpoint, a new Trainer resumes it;
* a real subprocess killed with SIGKILL at a random step (possibly mid-checkpoint) and resumed with
  ``python -m mmgeom train CONFIG --resume RUN_DIR``;
* a corrupt newest checkpoint is skipped with a warning and the previous good one is used.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
import yaml

from mmgeom.train import (
    CheckpointError,
    CheckpointStore,
    CheckpointWarning,
    ConfigError,
    Trainer,
    TrainingInterrupted,
    load_config,
    load_tensors,
    read_jsonl,
)
from test_train_trainer import synthetic_split, tiny_config


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny matrices: one intra-op thread (two spinning OpenMP workers crawl on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.encoder.state_dict().items()}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different}"


def _assert_same_state(a, b):
    """Equal ``state_dict`` values: tensors bit for bit, extra state (dicts, lists of tensors) likewise."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same_state(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same_state(x, y)
    else:
        assert a == b


def _as_legacy_checkpoint(run_dir, step):
    """Rewrite checkpoint ``step`` the way checkpoints were written before losses carried their own extra
    state: the loss's ``_extra_state`` as ``loss_attributes`` (``{submodule: {"_recorded": ...}}``)."""
    store = CheckpointStore(run_dir / "checkpoints")
    ckpt = store.load(run_dir / "checkpoints" / f"step-{step:08d}")
    state = dict(ckpt.state)
    objects = dict(state["loss_objects"])
    extra = objects.pop("_extra_state")
    assert set(extra) == {"recorded"} and len(extra["recorded"]) == 3 * step  # one per call and view pair
    state["loss_objects"], state["loss_attributes"] = objects, {"": {"_recorded": extra["recorded"]}}
    store.save(step, ckpt.model, ckpt.loss, state, ckpt.kind)


def _logged(path, kinds=("train", "eval")):
    """The train/eval events without the wall-clock throughput."""
    return [
        {k: v for k, v in e.items() if k != "examples_per_s"} for e in read_jsonl(path) if e["event"] in kinds
    ]


def _interrupt_at(trainer, step, sig=signal.SIGINT):
    """Send ``sig`` to this process right after update ``step`` (the handler only sets a flag)."""
    original = trainer.train_step

    def step_then_signal():
        scalars = original()
        if trainer.step == step:
            os.kill(os.getpid(), sig)
        return scalars

    trainer.train_step = step_then_signal


@pytest.mark.parametrize(
    ("loss", "interrupt", "legacy"),
    [
        # a learnable temperature (optimizer state of the loss) and dropout (RNG state)
        ({"name": "infonce", "kwargs": {"learnable_temperature": True}}, 13, False),
        # DAGR calibrating delta="auto" over 10 calls: interrupted mid-calibration (its extra state)
        ({"name": "dagr", "kwargs": {"delta": "auto", "calibration_steps": 10, "lambda_d": 0.5}}, 6, False),
        # the same from a checkpoint in the layout written before losses carried their extra state
        ({"name": "dagr", "kwargs": {"delta": "auto", "calibration_steps": 10, "lambda_d": 0.5}}, 6, True),
    ],
)
def test_signal_then_resume_is_bit_identical(tmp_path, loss, interrupt, legacy):
    cfg = tiny_config(
        loss=loss,
        model={"dropout": 0.2},
        train={"steps": 24, "log_every": 4, "eval_every": 8},
        eval={"diagnostics": False},
        checkpoint={"every": 5},
    )
    data = synthetic_split()
    ref = Trainer(cfg, tmp_path / "ref", data=data)
    ref_result = ref.fit()

    stopped = Trainer(cfg, tmp_path / "run", data=data)
    _interrupt_at(stopped, interrupt)
    # (the default handler, or SIG_IGN where the test process was started in the background by a shell)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as err:
        stopped.fit()
    assert err.value.step == interrupt and err.value.signal_name == "SIGINT"
    assert err.value.checkpoint == tmp_path / "run" / "checkpoints" / f"step-{interrupt:08d}"
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    if legacy:
        _as_legacy_checkpoint(tmp_path / "run", interrupt)

    resumed = Trainer(cfg, tmp_path / "run", data=data, resume=True)
    result = resumed.fit()
    assert result.resumed_from == interrupt and result.steps == 24
    assert result.evals == ref_result.evals  # the evaluations before the interruption are included
    _assert_identical(_weights(ref), _weights(resumed))
    _assert_same_state(ref.loss_fn.state_dict(), resumed.loss_fn.state_dict())
    # even the logged interval means match: the log accumulators are part of the checkpoint
    assert _logged(tmp_path / "ref" / "metrics.jsonl") == _logged(tmp_path / "run" / "metrics.jsonl")
    kinds = [e["event"] for e in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert kinds.count("interrupted") == 1 and kinds.count("resume") == 1 and kinds[-1] == "end"


def test_sigterm_also_checkpoints_and_stops(tmp_path):
    cfg = tiny_config(train={"steps": 10}, eval={"diagnostics": False})
    trainer = Trainer(cfg, tmp_path, data=synthetic_split())
    _interrupt_at(trainer, 3, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGTERM received: stopped after step 3"):
        trainer.fit()
    assert (tmp_path / "checkpoints" / "step-00000003" / "manifest.json").is_file()  # even with every=0
    assert read_jsonl(tmp_path / "metrics.jsonl")[-1]["event"] == "interrupted"


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    cfg = tiny_config(
        train={"steps": 20}, eval={"diagnostics": False}, checkpoint={"every": 5, "keep_last": 3}
    )
    data = synthetic_split()
    ref = Trainer(cfg, tmp_path, data=data)
    ref.fit()
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000010", "step-00000015", "step-00000020"]
    weights = ckpts / "step-00000020" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF  # one flipped byte: caught by the checksum
    weights.write_bytes(bytes(blob))
    state = ckpts / "step-00000015" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated

    resumed = Trainer(cfg, tmp_path, data=data, resume=True)
    with pytest.warns(CheckpointWarning) as warned:
        result = resumed.fit()
    messages = " ".join(str(w.message) for w in warned)
    assert "step-00000020" in messages and "SHA-256" in messages and "step-00000015" in messages
    assert result.resumed_from == 10
    _assert_identical(_weights(ref), _weights(resumed))
    resume_event = next(e for e in read_jsonl(tmp_path / "metrics.jsonl") if e["event"] == "resume")
    assert len(resume_event["skipped"]) == 2


def test_resume_without_a_checkpoint_or_with_another_config_is_an_error(tmp_path):
    data = synthetic_split()
    cfg = tiny_config(train={"steps": 6}, eval={"diagnostics": False}, checkpoint={"every": 3})
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        Trainer(cfg, tmp_path / "empty", data=data, resume=True).fit()
    Trainer(cfg, tmp_path / "run", data=data).fit()
    changed = tiny_config(
        train={"steps": 6}, eval={"diagnostics": False}, checkpoint={"every": 3}, optim={"lr": 0.5}
    )
    with pytest.raises(ConfigError, match=r"optim\.lr: run has 0\.01, now 0\.5"):
        Trainer(changed, tmp_path / "run", data=data, resume=True).fit()
    # evaluation, logging and checkpoint settings may change
    relaxed = tiny_config(
        train={"steps": 6, "log_every": 1}, eval={"diagnostics": True}, checkpoint={"every": 2}
    )
    assert Trainer(relaxed, tmp_path / "run", data=data, resume=True).fit().steps == 6


# --------------------------------------------------------------------------- SIGKILL in a subprocess

KILL_CONFIG = {
    "data": {"dataset": "mfeat", "views": ["kar", "mor"]},
    "model": {"head": "mlp", "out_dim": 16, "hidden": 32, "dropout": 0.1},
    "loss": {"name": "infonce", "kwargs": {"learnable_temperature": True}},
    "optim": {"lr": 3e-3, "warmup_steps": 5},
    "train": {"steps": 24, "batch_size": 64, "log_every": 1, "eval_before": False, "num_threads": 1},
    "eval": {"split": "val", "diagnostics": False, "classification": False, "ks": [1]},
    "checkpoint": {"every": 2, "keep_last": 2},
}


def _wait_for_step(path, step, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if path.is_file():
            lines = path.read_text().splitlines()
            for line in reversed(lines):
                if '"event": "train"' in line and f'"step": {step},' in line:
                    return True
        time.sleep(0.02)
    raise TimeoutError(f"step {step} was not logged in {timeout} s")


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, mfeat_folder):
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(KILL_CONFIG))
    run = tmp_path / "run"
    # A different step each run, reproducible from the seed in every failure message. Steps take a
    # few ms, so the child can run ahead of the poll before SIGKILL lands: stop at step 12 at the latest
    # to leave it 12 steps of margin before it finishes.
    seed = int(os.environ.get("MMGEOM_KILL_SEED", random.randrange(2**32)))
    kill_step = random.Random(seed).randint(3, 12)
    where = f"kill step {kill_step} (MMGEOM_KILL_SEED={seed})"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mmgeom", "train", str(config), "--out", str(run), "--no-progress"]
    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)

    # the uninterrupted reference trains in this process meanwhile (a thread: it installs no handlers)
    reference = Trainer(load_config(config), tmp_path / "reference")
    worker = threading.Thread(target=reference.fit)
    worker.start()
    try:
        reached = _wait_for_step(run / "metrics.jsonl", kill_step, proc)
        assert reached, f"{where}: " + (tmp_path / "killed.log").read_text()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL, where
    assert not (run / "model.safetensors").exists(), where

    resumed = subprocess.run(
        [*cmd[:-3], "--resume", str(run), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    worker.join()
    assert resumed.returncode == 0, f"{where}:\n{resumed.stderr}"
    _assert_identical(_weights(reference), load_tensors(run / "model.safetensors"))
    assert _logged(run / "metrics.jsonl") == _logged(tmp_path / "reference" / "metrics.jsonl"), where
    resume_event = next(e for e in read_jsonl(run / "metrics.jsonl") if e["event"] == "resume")
    # at least the checkpoint before the logged kill step survives; how far the child ran past it
    # before the signal landed is a race, so the upper bound is only "before the end"
    last = KILL_CONFIG["train"]["steps"]
    assert kill_step - 2 <= resume_event["step"] < last, (where, resume_event)
