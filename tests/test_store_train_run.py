"""Training from a feature store: same weights as in memory, masked batches, SIGKILL resume, 2 processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmgeom.data import FeatureStore, write_feature_source
from mmgeom.losses import create_loss
from mmgeom.studies.runner import torch_threads
from mmgeom.train import ConfigError, Trainer, config_from_dict, load_config, load_tensors, read_jsonl

BASE = {
    "model": {"head": "mlp", "out_dim": 8, "hidden": 16},
    "loss": {"name": "infonce", "kwargs": {"temperature": 0.2}},
    "optim": {"lr": 3e-3, "warmup_steps": 2, "weight_decay": 0.0},
    "train": {"steps": 12, "batch_size": 32, "log_every": 4, "progress": False, "eval_before": False},
    "eval": {"split": "val", "ks": [1], "diagnostics": False, "classification": False},
}


def _config(data: dict, **sections: dict) -> dict:
    raw = {k: dict(v) for k, v in BASE.items()}
    raw["data"] = data
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return raw


@pytest.fixture
def mfeat_store(tmp_path: Path, mfeat_folder: Path) -> Path:
    write_feature_source("mfeat", tmp_path / "mfeat")
    return tmp_path / "mfeat"


def test_store_training_matches_in_memory_training(tmp_path: Path, mfeat_store: Path) -> None:
    # The mfeat store holds the raw views and the same stratified split (seed 0) as data.dataset: mfeat.
    mem = Trainer(config_from_dict(_config({"dataset": "mfeat", "views": ["kar", "mor"]})), tmp_path / "m")
    disk = Trainer(
        config_from_dict(_config({"store": str(mfeat_store), "modalities": ["kar", "mor"]})), tmp_path / "d"
    )
    assert disk.train_rows is not None and mem.train_rows is None
    np.testing.assert_array_equal(disk.data.split.train.numpy(), mem.data.split.train.numpy())
    mem.fit()
    disk.fit()
    for name, value in mem.encoder.state_dict().items():
        # Statistics: streaming float64 merge vs one float64 pass; they agree to float32 rounding.
        torch.testing.assert_close(disk.encoder.state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def _masked_store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 120
    latent = rng.normal(size=(n, 3))
    feats = {
        m: latent @ rng.normal(size=(3, d)) + 0.1 * rng.normal(size=(n, d)) for m, d in (("a", 5), ("b", 4))
    }
    present = rng.random(n) > 0.25
    feats["b"][~present] = rng.normal(size=(int((~present).sum()), 4)) * 1e3  # junk where absent
    split = np.array(["train"] * 80 + ["val"] * 20 + ["test"] * 20)
    FeatureStore.write(
        tmp_path / "m", feats, ids=np.arange(n), labels=np.arange(n) % 3, split=split, masks={"b": present}
    )
    return tmp_path / "m", present


def test_masked_batch_gives_the_loss_of_present_rows(tmp_path: Path) -> None:
    path, present = _masked_store(tmp_path)
    cfg = config_from_dict(_config({"store": str(path)}, loss={"name": "unialign", "kwargs": {}}))
    trainer = Trainer(cfg, tmp_path / "run")
    # Naive reference: the same rows standardised by hand from numpy, absent rows removed from the mask.
    idx = trainer.sampler.epoch_order(0)[:32].numpy()
    store = FeatureStore.open(path)
    rows = store.indices("train")[idx]
    views = {}
    for m in ("a", "b"):
        train_rows = store.indices("train")
        keep = store.present(m, train_rows)
        x = np.asarray(store.array(m), dtype=np.float64)[train_rows][keep]
        mu, sd = x.mean(0), x.std(0)
        views[m] = torch.from_numpy(
            ((np.asarray(store.array(m), dtype=np.float64)[rows] - mu) / sd).astype(np.float32)
        )
    mask_b = torch.from_numpy(present[rows])
    views["b"][~mask_b] = 0.0
    encoder = trainer.encoder
    with torch.no_grad():
        want = create_loss("unialign")(encoder(views), mask={"b": mask_b}).total
        # Rows where b is absent contribute nothing through b: changing them changes nothing.
        junk = {k: v.clone() for k, v in views.items()}
        junk["b"][~mask_b] = 7.0
        assert float(create_loss("unialign")(encoder(junk), mask={"b": mask_b}).total) == pytest.approx(
            float(want)
        )
    got = trainer.train_step()["loss"]
    assert got == pytest.approx(float(want), rel=1e-5)


def test_a_loss_without_mask_support_is_refused_for_a_masked_store(tmp_path: Path) -> None:
    path, _ = _masked_store(tmp_path)
    with pytest.raises(ConfigError, match="does not accept missing-modality masks"):
        Trainer(config_from_dict(_config({"store": str(path)})), tmp_path / "run")


def test_store_config_errors(tmp_path: Path, mfeat_store: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.modalities.*unknown modality 'nope'"):
        config_from_dict(_config({"store": str(mfeat_store), "modalities": ["kar", "nope"]}))
    with pytest.raises(ConfigError, match=r"data.store.*not a feature store|data.store.*cannot be read"):
        config_from_dict(_config({"store": str(tmp_path / "missing")}))
    with pytest.raises(ConfigError, match=r"data.split.*'dev' is not a split"):
        config_from_dict(_config({"store": str(mfeat_store), "split": {"val": "dev"}}))
    with pytest.raises(ConfigError, match=r"data.modalities.*set data.store too"):
        config_from_dict(_config({"dataset": "mfeat", "modalities": ["kar", "mor"]}))


def _kill_config(tmp_path: Path, store: Path, dropout: float = 0.1) -> Path:
    raw = _config(
        {"store": str(store), "modalities": ["kar", "mor"]},
        train={"steps": 24, "batch_size": 64, "log_every": 1, "num_threads": 1},
        checkpoint={"every": 2, "keep_last": 2},
    )
    raw["checkpoint"] = {"every": 2, "keep_last": 2}
    raw["model"]["dropout"] = dropout
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_store_run_resumes_bit_identically_after_sigkill(tmp_path: Path, mfeat_store: Path) -> None:
    config = _kill_config(tmp_path, mfeat_store)
    run = tmp_path / "run"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
    }
    cmd = [sys.executable, "-m", "mmgeom", "train", str(config), "--out", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").is_file() and '"step": 7,' in (run / "metrics.jsonl").read_text():
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resumed = subprocess.run(
        [*cmd[:-3], "--resume", str(run), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with torch_threads(1):
        Trainer(load_config(config), tmp_path / "reference").fit()
    got = load_tensors(run / "model.safetensors")
    for name, value in load_tensors(tmp_path / "reference" / "model.safetensors").items():
        assert torch.equal(got[name], value), name
    assert any(e["event"] == "resume" for e in read_jsonl(run / "metrics.jsonl"))


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_on_a_store_end_with_the_one_process_weights(tmp_path: Path, mfeat_store: Path) -> None:
    # No dropout: each rank draws its own dropout masks, so only a dropout-free run can match one process.
    config = _kill_config(tmp_path, mfeat_store, dropout=0.0)
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
        str(config),
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch_threads(1):
        single = Trainer(load_config(config), tmp_path / "single")
        single.fit()
    ddp = load_tensors(out / "model.safetensors")
    for name, value in single.encoder.state_dict().items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_embed_cli_writes_the_heads_outputs_of_every_row(tmp_path: Path, mfeat_store: Path) -> None:
    from typer.testing import CliRunner

    from mmgeom.cli import app
    from mmgeom.train import load_run

    cfg = config_from_dict(
        _config({"store": str(mfeat_store), "modalities": ["kar", "mor"]}, train={"steps": 4})
    )
    Trainer(cfg, tmp_path / "run").fit()
    res = CliRunner().invoke(
        app,
        [
            "embed",
            str(tmp_path / "run"),
            str(mfeat_store),
            str(tmp_path / "emb"),
            "--no-progress",
            "--chunk-rows",
            "300",
        ],
    )
    assert res.exit_code == 0, res.output
    emb = FeatureStore.open(tmp_path / "emb")
    src = FeatureStore.open(mfeat_store)
    assert emb.modalities == ("kar", "mor") and emb.dims == {"kar": 8, "mor": 8} and emb.num_rows == 2000
    assert emb.ids.tolist() == src.ids.tolist() and emb.split.tolist() == src.split.tolist()
    np.testing.assert_array_equal(emb.labels, src.labels)
    # Reference: the run's encoder on the whole store standardised in memory with the run's statistics.
    run = load_run(tmp_path / "run")
    sc = run.data.standardizer
    assert sc is not None
    with torch.no_grad():
        want = run.encoder({m: (src.read(m) - sc.mean[m]) / sc.scale[m] for m in ("kar", "mor")})
    for m in ("kar", "mor"):
        torch.testing.assert_close(emb.read(m), want[m], rtol=1e-5, atol=1e-6)
    assert emb.metadata["run"] == str(tmp_path / "run")


def test_a_relative_store_path_is_saved_absolute(tmp_path, monkeypatch) -> None:
    # the run's config.yaml must name the store wherever eval / embed / --resume are run from
    from mmgeom.data import FeatureStore
    from mmgeom.train import demo_config
    from mmgeom.train.config_load import config_from_dict

    gen = np.random.default_rng(0)
    FeatureStore.write(
        tmp_path / "s",
        {
            "a": gen.standard_normal((6, 3)).astype(np.float32),
            "b": gen.standard_normal((6, 2)).astype(np.float32),
        },
        ids=list(range(6)),
        labels=[0, 1] * 3,
        split=["train"] * 4 + ["test"] * 2,
    )
    monkeypatch.chdir(tmp_path)
    raw = demo_config(2).model_dump(mode="json")
    raw["data"] = {"store": "s"}
    cfg = config_from_dict(raw)
    assert cfg.data.store == str(tmp_path / "s")
    assert config_from_dict(cfg.model_dump(mode="json")).data.store == str(tmp_path / "s")
