"""``mmgeom features SOURCE OUT_DIR``: writes readable stores, refuses to overwrite, names bad sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import FeatureStore, fashion_mnist_available
from mmgeom.models import text_backbone_available

runner = CliRunner()


def test_features_mfeat(tmp_path: Path, mfeat) -> None:
    out = tmp_path / "m"
    result = runner.invoke(app, ["features", "mfeat", str(out)])
    assert result.exit_code == 0, result.output
    assert "2000 rows" in result.output and "pix: 240-d float32" in result.output
    store = FeatureStore.open(out)
    assert torch.equal(store.read("kar"), mfeat.views["kar"])
    again = runner.invoke(app, ["features", "mfeat", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, ["features", "mfeat", str(out), "--overwrite"]).exit_code == 0


def test_features_unknown_source(tmp_path: Path) -> None:
    result = runner.invoke(app, ["features", "imagenet", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown name 'imagenet'" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not (fashion_mnist_available() and text_backbone_available()),
    reason="needs Fashion-MNIST and the text backbone",
)
def test_features_fashion_text(tmp_path: Path) -> None:
    from mmgeom.data.prompts import prompt_table
    from mmgeom.models import MiniLMTextEncoder

    result = runner.invoke(app, ["features", "fashion-text", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    text, images = FeatureStore.open(tmp_path / "f" / "text"), FeatureStore.open(tmp_path / "f" / "images")
    texts, labels, ids, split = prompt_table()
    assert text.ids.tolist() == ids and text.split.tolist() == split and text.labels.tolist() == labels
    assert text.metadata["texts"] == texts and len(texts) == 120
    pooled = MiniLMTextEncoder().encode(texts[:3]).pooled
    assert torch.allclose(text.read("text", rows=[0, 1, 2]), pooled, atol=1e-5)
    direction = text.read("text_direction")
    assert torch.allclose(direction, torch.nn.functional.normalize(text.read("text"), dim=1), atol=1e-6)
    assert images.num_rows == 70000 and images.dims == {"pixels": 784}
    assert images.manifest["split_counts"] == {"test": 10000, "train": 60000}
