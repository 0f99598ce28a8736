"""``mmgeom generate RUN`` and the report's generation section, against a hand-rebuilt pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import load_dataset
from mmgeom.generation import ConvDecoder
from mmgeom.train import build_data, build_encoder, load_config, load_tensors

runner = CliRunner()
VIEWS = ("kar", "pix", "mor")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, mfeat, train_tiny_run) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("generate") / "run", VIEWS)


def test_generate_writes_results_grid_and_weights_that_reproduce(run_dir: Path) -> None:
    res = runner.invoke(app, ["generate", str(run_dir), "--steps", "5", "--classifier-steps", "5"])
    assert res.exit_code == 0, res.output
    out = run_dir / "generation"
    record = json.loads((out / "results.json").read_text())["conv"]
    assert record["rows"] == ["self (pix)", "kar", "mor", "mix of the 2"]
    assert (out / "grid-conv.png").read_bytes()[:4] == b"\x89PNG"
    # rebuild by hand: the run's encoder, the raw pix view / 6 (its training min and max are 0 and 6)
    cfg = load_config(run_dir / "config.yaml")
    data = build_data(cfg.data)
    enc = build_encoder(cfg.model, data.train.view_dims)
    enc.load_state_dict(load_tensors(run_dir / "model.safetensors"))
    enc.eval()
    dec = ConvDecoder(cfg.model.out_dim, (16, 15))
    dec.load_state_dict(load_tensors(out / "decoder-conv.safetensors"))
    raw = load_dataset("mfeat", list(VIEWS)).views["pix"][data.split.test] / 6.0
    with torch.no_grad():
        emb = enc(dict(data.test.views))
        for name, cond in (("kar", emb["kar"]), ("self (pix)", emb["pix"])):
            img = dec.sample(cond).flatten(1)
            mse = float(((img.double() - raw.double()) ** 2).mean())
            assert record["metrics"][name]["pixel_mse"] == pytest.approx(mse, rel=1e-5)
    # the report shows the section and the grid
    pytest.importorskip("matplotlib")
    rep = runner.invoke(app, ["report", str(run_dir)])
    assert rep.exit_code == 0, rep.output
    html = (run_dir / "report.html").read_text()
    assert "Generation from other views" in html and "mix of the 2" in html and 'alt="generation-conv' in html


def test_generate_errors_exit_2(run_dir: Path) -> None:
    res = runner.invoke(app, ["generate", str(run_dir), "--image-view", "nope", "--steps", "1"])
    assert res.exit_code == 2 and "nope" in res.output and "pix" in res.output
    res = runner.invoke(app, ["generate", str(run_dir), "--image-view", "kar", "--steps", "1"])
    assert res.exit_code == 2 and "image shape" in res.output
    res = runner.invoke(app, ["generate", str(run_dir.parent / "missing"), "--steps", "1"])
    assert res.exit_code == 2
