"""Fusion classification from a feature store equals the same rows as in-memory tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.classify import ClassifyConfig, accuracy_metrics, embed, load_classify_store, train_classifier
from mmgeom.data import FeatureStore, MultiViewDataset, Standardizer
from mmgeom.models import FusionClassifier, create_head

N = 200


def _write(tmp_path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(3)
    y = np.arange(N) % 3
    feats = {
        "a": (g.normal(size=(N, 6)) + y[:, None]).astype(np.float32),
        "b": g.normal(size=(N, 4)).astype(np.float32),
    }
    split = np.array(["train"] * 140 + ["val"] * 20 + ["test"] * 40)
    mask = np.ones(N, dtype=bool)
    mask[[3, 150, 170]] = False  # b absent in a train, a val and a test row
    labels = y.copy()
    labels[5] = -1  # an unlabelled train row
    FeatureStore.write(tmp_path / "c", feats, ids=np.arange(N), labels=labels, split=split, masks={"b": mask})
    keep = mask & (labels >= 0)
    return feats, labels, split, keep


def _model() -> FusionClassifier:
    torch.manual_seed(0)
    return FusionClassifier({"a": create_head("mlp", 6, 8), "b": create_head("mlp", 4, 8)}, 3)


def test_classify_from_store_equals_in_memory(tmp_path: Path) -> None:
    feats, labels, split, keep = _write(tmp_path)
    parts = load_classify_store(tmp_path / "c")
    assert parts.dropped == {"train": 2, "val": 1, "test": 1} and parts.num_classes == 3
    # the reference: numpy rows of each part, standardised with the kept training rows
    mem = {
        p: MultiViewDataset(
            {m: torch.from_numpy(x[(split == p) & keep]) for m, x in feats.items()},
            torch.from_numpy(labels[(split == p) & keep]),
        )
        for p in ("train", "val", "test")
    }
    scaler = Standardizer.fit(mem["train"])
    mem = {p: scaler.transform(d) for p, d in mem.items()}
    for m in ("a", "b"):
        torch.testing.assert_close(parts.test.views[m], mem["test"].views[m], rtol=0, atol=1e-5)
    cfg = ClassifyConfig(epochs=3, batch_size=32, lr=0.05)
    store_model = train_classifier(_model(), parts.train, cfg).model
    mem_model = train_classifier(_model(), mem["train"], cfg).model
    for (k, v), w in zip(store_model.state_dict().items(), mem_model.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, rtol=1e-4, atol=1e-5, msg=k)
    acc_store = accuracy_metrics(store_model, embed(store_model, parts.test), parts.test.labels)["fused"]
    acc_mem = accuracy_metrics(mem_model, embed(mem_model, mem["test"]), mem["test"].labels)["fused"]
    assert acc_store == acc_mem
    assert acc_store > 1 / 3  # class signal in modality a: above chance


def test_classify_store_bad_requests(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(ValueError, match=r"c: modalities: 'z' is not in the store"):
        load_classify_store(tmp_path / "c", ["a", "z"])
    feats = {"a": np.zeros((4, 2), np.float32)}
    FeatureStore.write(
        tmp_path / "u",
        feats,
        ids=np.arange(4),
        labels=np.full(4, -1),
        split=["train", "train", "test", "test"],
    )
    with pytest.raises(ValueError, match=r"u: labels: classification needs class labels"):
        load_classify_store(tmp_path / "u")
