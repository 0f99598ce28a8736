"""The worked example of docs/data.md, small: Fashion-MNIST PNGs + captions CSV -> import -> train -> eval.

Uses only the public command line: ``mmgeom import`` (images decoded with Pillow, captions encoded by the
bundled MiniLM), ``mmgeom train`` from a YAML config (UniAlign), ``mmgeom eval`` on the test split.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import FeatureStore, fashion_mnist_available

PER_CLASS = 30


def write_example(root: Path, per_class: int = PER_CLASS) -> Path:
    """``root/images/*.png`` and ``root/fashion.csv`` (image, caption, label), ``per_class`` rows a class."""
    import numpy as np
    from PIL import Image

    from mmgeom.data import load_fashion_mnist
    from mmgeom.data.prompts import FASHION_PROMPTS

    images, labels = load_fashion_mnist("train")
    (root / "images").mkdir(parents=True)
    rows = []
    for c in range(10):
        for k, i in enumerate(np.flatnonzero(labels.numpy() == c)[:per_class]):
            name = f"images/{c}-{k:03d}.png"
            Image.fromarray(images[i].numpy()).save(root / name)
            rows.append((name, FASHION_PROMPTS[c][k % len(FASHION_PROMPTS[c])], c))
    csv_path = root / "fashion.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption", "label"])
        w.writerows(rows)
    return csv_path


CONFIG = {
    "model": {"head": "mlp", "out_dim": 32, "hidden": 64},
    "loss": {"name": "unialign", "kwargs": {}},
    "optim": {"lr": 3e-3, "warmup_steps": 5},
    "train": {"steps": 60, "batch_size": 32, "log_every": 20, "eval_before": False},
    "eval": {"split": "val", "ks": [1, 5], "diagnostics": False},
}


def test_worked_example_fashion_csv(tmp_path: Path) -> None:
    from mmgeom.data.text_encoder import text_backbone_available

    if not fashion_mnist_available() or not text_backbone_available():
        pytest.skip("needs the Fashion-MNIST Debian package and the bundled MiniLM")
    csv_path = write_example(tmp_path)
    runner = CliRunner()
    store = tmp_path / "fashion.store"
    res = runner.invoke(
        app,
        ["import", str(store), "--table", str(csv_path), "--image", "image", "--text", "caption",
         "--label-column", "label", "--image-size", "28x28", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = FeatureStore.open(store)
    assert s.num_rows == 10 * PER_CLASS and s.dims == {"image": 784, "caption": 384}
    assert s.manifest["split_counts"] == {"test": 60, "train": 210, "val": 30}  # seeded, stratified
    config = tmp_path / "fashion.yaml"
    config.write_text(
        yaml.safe_dump({"data": {"store": str(store), "modalities": ["image", "caption"]}, **CONFIG})
    )
    res = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["eval", str(tmp_path / "run"), "--split", "test", "--relevance", "label", "--ks", "1,5",
         "--json", str(tmp_path / "eval.json")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "eval.json").read_text())
    # Image -> caption retrieval by class: chance is 0.1; the trained heads must be well above it.
    metrics = record["metrics"]
    # Retrieval by class on 60 test rows: chance precision@1 is 0.1; the trained heads are far above it.
    # (docs/data.md quotes the printed numbers: `pytest -s tests/test_worked_example.py`.)
    assert metrics["retrieval/image->caption/precision@1"] > 0.3, metrics
    assert metrics["retrieval/caption->image/precision@1"] > 0.3, metrics
    quoted = ("image->caption/precision@1", "caption->image/precision@1", "image->caption/mrr")
    print("worked example:", {k: round(metrics[f"retrieval/{k}"], 3) for k in quoted})
