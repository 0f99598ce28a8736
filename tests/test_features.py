"""Feature stores: exact round trip, memory-mapped chunked reads, atomic writes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.data import FeatureStore, FeatureStoreError, list_feature_sources, write_feature_source


def example(n: int = 9, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "features": {
            "text": torch.randn(n, 5, generator=g) * 7,
            "image": torch.randn(n, 3, generator=g, dtype=torch.float64),
        },
        "ids": [f"row-{i}" for i in range(n)],
        "labels": torch.arange(n) % 3,
        "split": ["train", "test", "val"] * (n // 3),
    }


def test_round_trip_is_exact(tmp_path: Path) -> None:
    ex = example()
    store = FeatureStore.write(tmp_path / "s", metadata={"source": "unit", "k": [1, 2]}, **ex)
    again = FeatureStore.open(tmp_path / "s")
    for s in (store, again):
        assert s.num_rows == len(s) == 9
        assert s.modalities == ("text", "image")
        assert s.dims == {"text": 5, "image": 3}
        assert s.dtypes == {"text": "float32", "image": "float64"}
        for m, x in ex["features"].items():
            got = s.read(m, dtype=None)
            assert got.dtype == x.dtype
            assert torch.equal(got, x)
            assert np.array_equal(s.array(m), x.numpy())
        assert s.ids.tolist() == ex["ids"]
        assert s.labels.dtype == np.int64
        assert s.labels.tolist() == ex["labels"].tolist()
        assert s.split.tolist() == ex["split"]
        assert s.split_names == ("test", "train", "val")
        assert s.metadata == {"source": "unit", "k": [1, 2]}


def test_arrays_are_memory_mapped_read_only(tmp_path: Path) -> None:
    store = FeatureStore.write(tmp_path / "s", **example())
    arr = store.array("text")
    assert isinstance(arr, np.memmap)
    with pytest.raises(ValueError):
        arr[0, 0] = 1.0


def test_split_selection_and_chunks(tmp_path: Path) -> None:
    ex = example(n=12)
    store = FeatureStore.write(tmp_path / "s", **ex)
    want = [i for i, s in enumerate(ex["split"]) if s in ("train", "val")]
    assert store.indices(["train", "val"]).tolist() == want
    x = ex["features"]["text"]
    assert torch.equal(store.read("text", split=["train", "val"]), x[want])
    assert torch.equal(store.read("text", rows=[4, 0]), x[[4, 0]])
    chunks = list(store.iter_chunks("text", chunk_size=3, split="train"))
    assert [len(rows) for rows, _ in chunks] == [3, 1]
    assert torch.equal(torch.cat([c for _, c in chunks]), x[store.indices("train")])
    data = store.to_dataset("test")
    assert data.view_names == ("text", "image")
    assert data.views["image"].dtype == torch.float32
    assert data.labels.tolist() == ex["labels"][store.indices("test")].tolist()


def test_integer_ids_one_split_name_and_dtype_conversion(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    store = FeatureStore.write(
        tmp_path / "s", {"v": x}, ids=np.arange(10, 14), labels=[0, 0, 1, 1], split="test", dtype="float16"
    )
    assert store.ids.dtype == np.int64 and store.ids.tolist() == [10, 11, 12, 13]
    assert store.split_names == ("test",)
    assert store.dtypes == {"v": "float16"}
    assert torch.equal(store.read("v"), torch.from_numpy(x).float())


def test_mismatched_rows_and_bad_inputs_raise(tmp_path: Path) -> None:
    ex = example()
    bad = dict(ex, features={"text": torch.zeros(9, 2), "image": torch.zeros(8, 2)})
    with pytest.raises(FeatureStoreError, match=r"features\['image'\]: 8 rows, but features\['text'\] has 9"):
        FeatureStore.write(tmp_path / "a", **bad)
    with pytest.raises(FeatureStoreError, match=r"ids: expected shape \(9,\)"):
        FeatureStore.write(tmp_path / "a", **dict(ex, ids=ex["ids"][:-1]))
    with pytest.raises(FeatureStoreError, match="ids: must be unique; 'x'"):
        FeatureStore.write(tmp_path / "a", **dict(ex, ids=["x"] * 9))
    with pytest.raises(FeatureStoreError, match=r"labels: expected shape \(9,\)"):
        FeatureStore.write(tmp_path / "a", **dict(ex, labels=[0, 1]))
    with pytest.raises(FeatureStoreError, match="labels: expected integer class ids, got dtype float32"):
        FeatureStore.write(tmp_path / "a", **dict(ex, labels=torch.zeros(9)))
    with pytest.raises(FeatureStoreError, match="split: expected a split name per row"):
        FeatureStore.write(tmp_path / "a", **dict(ex, split=None))
    with pytest.raises(FeatureStoreError, match=r"split: expected \(9,\) split names"):
        FeatureStore.write(tmp_path / "a", **dict(ex, split=["train"] * 8))
    with pytest.raises(FeatureStoreError, match=r"expected a floating dtype .* got int64"):
        FeatureStore.write(tmp_path / "a", **dict(ex, features={"text": torch.zeros(9, 2, dtype=torch.long)}))
    with pytest.raises(FeatureStoreError, match="bfloat16 cannot be stored"):
        FeatureStore.write(
            tmp_path / "a", **dict(ex, features={"t": torch.zeros(9, 2, dtype=torch.bfloat16)})
        )
    nan = torch.zeros(9, 2)
    nan[3, 1] = float("nan")
    with pytest.raises(FeatureStoreError, match=r"features\['t'\]: 1 row\(s\) contain NaN or Inf"):
        FeatureStore.write(tmp_path / "a", **dict(ex, features={"t": nan}))
    with pytest.raises(FeatureStoreError, match=r"expected shape \(N, D\)"):
        FeatureStore.write(tmp_path / "a", **dict(ex, features={"t": torch.zeros(9)}))
    with pytest.raises(FeatureStoreError, match="modality: expected a name"):
        FeatureStore.write(tmp_path / "a", **dict(ex, features={"a/b": torch.zeros(9, 2)}))
    with pytest.raises(FeatureStoreError, match="dtype: expected one of"):
        FeatureStore.write(tmp_path / "a", dtype="int8", **ex)
    assert not (tmp_path / "a").exists()


def test_missing_split_and_modality_on_read(tmp_path: Path) -> None:
    store = FeatureStore.write(tmp_path / "s", **example())
    with pytest.raises(
        FeatureStoreError, match=r"split: 'dev' not in the store .* \['test', 'train', 'val'\]"
    ):
        store.read("text", split="dev")
    with pytest.raises(
        FeatureStoreError, match=r"modality: unknown 'audio'; the store has \['text', 'image'\]"
    ):
        store.read("audio")
    with pytest.raises(FeatureStoreError, match="chunk_size"):
        next(store.iter_chunks("text", chunk_size=0))


def test_existing_target_needs_overwrite_and_replacing_is_complete(tmp_path: Path) -> None:
    FeatureStore.write(tmp_path / "s", **example(seed=0))
    with pytest.raises(FeatureStoreError, match="already exists; pass overwrite=True"):
        FeatureStore.write(tmp_path / "s", **example(seed=1))
    new = example(n=6, seed=1)
    store = FeatureStore.write(tmp_path / "s", overwrite=True, **new)
    assert store.num_rows == 6 and torch.equal(store.read("text"), new["features"]["text"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folders left behind


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmgeom.data.store_writer as features

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(features, "_save_npy", boom)
    with pytest.raises(OSError, match="disk full"):
        FeatureStore.write(tmp_path / "s", **example())
    assert list(tmp_path.iterdir()) == []


def test_open_checks_manifest_and_files(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match="not a feature store"):
        FeatureStore.open(tmp_path)
    FeatureStore.write(tmp_path / "s", **example())
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    manifest["modalities"]["text"]["shape"] = [9, 6]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureStoreError, match=r"features-text.npy: shape \(9, 5\) dtype float32, manifest"):
        FeatureStore.open(tmp_path / "s")
    manifest["version"] = 99
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureStoreError, match="version 99"):
        FeatureStore.open(tmp_path / "s")


def test_mfeat_source_matches_the_dataset(tmp_path: Path, mfeat) -> None:
    assert list_feature_sources() == ["fashion-text", "mfeat"]
    store = write_feature_source("mfeat", tmp_path / "m")["mfeat"]
    assert store.modalities == mfeat.view_names
    for v, x in mfeat.views.items():
        assert torch.equal(store.read(v), x)
    assert store.labels.tolist() == mfeat.labels.tolist()
    assert store.manifest["split_counts"] == {"test": 400, "train": 1400, "val": 200}
    with pytest.raises(ValueError, match="source: unknown name 'nope'"):
        write_feature_source("nope", tmp_path / "n")
