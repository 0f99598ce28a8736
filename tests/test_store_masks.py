"""Feature-store format v2: presence masks round-trip, every damaged file is named, overwrite is safe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.data import FeatureStore, FeatureStoreError


def masked_example(n: int = 8) -> dict:
    rng = np.random.default_rng(0)
    text = rng.normal(size=(n, 4)).astype(np.float32)
    image = rng.normal(size=(n, 3)).astype(np.float16)
    text_mask = np.array([True, False, True, True, False, True, True, True])[:n]
    text[~text_mask] = np.nan  # what a user often writes for a missing modality
    return {
        "features": {"text": text, "image": image},
        "ids": np.arange(100, 100 + n),
        "labels": np.arange(n) % 2,
        "split": ["train"] * (n - 2) + ["test"] * 2,
        "masks": {"text": text_mask, "image": np.ones(n, dtype=bool)},
    }


def test_masks_round_trip_against_numpy(tmp_path: Path) -> None:
    ex = masked_example()
    store = FeatureStore.write(tmp_path / "s", **ex)
    again = FeatureStore.open(tmp_path / "s")
    for s in (store, again):
        assert s.has_masks
        assert s.manifest["version"] == 2
        mask = ex["masks"]["text"]
        np.testing.assert_array_equal(s.present("text"), mask)
        np.testing.assert_array_equal(s.present("image"), np.ones(8, dtype=bool))
        np.testing.assert_array_equal(s.present("text", rows=[1, 0, 4]), [False, True, False])
        expected = np.where(mask[:, None], ex["features"]["text"], 0.0).astype(np.float32)
        np.testing.assert_array_equal(s.array("text"), expected)  # absent rows stored as zeros, not NaN
        np.testing.assert_array_equal(s.array("image"), ex["features"]["image"])
        assert s.manifest["modalities"]["text"]["present"] == 6
        assert "mask" not in s.manifest["modalities"]["image"]  # an all-present mask is not stored
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "features-image.npy",
        "features-text.npy",
        "ids.npy",
        "labels.npy",
        "manifest.json",
        "mask-text.npy",
        "split.npy",
    ]


def test_store_without_masks_is_present_everywhere_and_version_1_opens(tmp_path: Path) -> None:
    ex = masked_example()
    del ex["masks"]
    ex["features"]["text"] = np.nan_to_num(ex["features"]["text"])
    store = FeatureStore.write(tmp_path / "s", **ex)
    assert not store.has_masks and store.present("text").all()
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    manifest["version"] = 1
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    assert FeatureStore.open(tmp_path / "s").num_rows == 8


def test_bad_masks_raise(tmp_path: Path) -> None:
    ex = masked_example()
    with pytest.raises(FeatureStoreError, match=r"masks: unknown modality 'audio'"):
        FeatureStore.write(tmp_path / "a", **dict(ex, masks={"audio": np.ones(8, dtype=bool)}))
    with pytest.raises(FeatureStoreError, match=r"masks\['text'\]: expected a \(8,\) bool array"):
        FeatureStore.write(tmp_path / "a", **dict(ex, masks={"text": np.ones(8)}))
    none = {"text": np.zeros(8, dtype=bool), "image": np.arange(8) != 5}
    with pytest.raises(FeatureStoreError, match="masks: row 5 has no modality present"):
        FeatureStore.write(tmp_path / "a", **dict(ex, masks=none))
    # NaN in a row marked present is still an error, naming row and column.
    with pytest.raises(FeatureStoreError, match=r"features\['text'\]: 2 row\(s\).*first: row 1, column 0"):
        FeatureStore.write(tmp_path / "a", **dict(ex, masks=None))
    assert not (tmp_path / "a").exists()


def _write(tmp_path: Path) -> Path:
    FeatureStore.write(tmp_path / "s", **masked_example())
    return tmp_path / "s"


def _edit_manifest(folder: Path, **changes: object) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    for key, value in changes.items():
        target = manifest
        *parents, last = key.split("__")
        for p in parents:
            target = target[p]
        target[last] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_rows": -3}, r"manifest.json: key 'num_rows': expected an integer >= 1, got -3"),
        ({"modalities": {}}, r"manifest.json: key 'modalities': expected a non-empty object"),
        (
            {"modalities__text__file": "../../etc/passwd"},
            r"manifest.json: key 'modalities.text.file': expected a plain",
        ),
        ({"modalities__text__dtype": "int8"}, r"manifest.json: key 'modalities.text.dtype'"),
        ({"modalities__image__shape": [8]}, r"manifest.json: key 'modalities.image.shape'"),
        (
            {"modalities__image__shape": [7, 3]},
            r"manifest.json: key 'modalities.image.shape': expected 8 rows",
        ),
        ({"splits": []}, r"manifest.json: key 'splits'"),
        ({"split_counts": {"train": 6}}, r"manifest.json: key 'split_counts'"),
        ({"split_counts": {"train": 5, "test": 3}}, r"split.npy: split 'test' has 2 rows, manifest key"),
        ({"metadata": [1]}, r"manifest.json: key 'metadata': expected an object"),
    ],
)
def test_malformed_manifest_names_file_and_key(tmp_path: Path, changes: dict, message: str) -> None:
    folder = _write(tmp_path)
    _edit_manifest(folder, **changes)
    with pytest.raises(FeatureStoreError, match=message):
        FeatureStore.open(folder)


def test_manifest_that_is_not_json_is_named(tmp_path: Path) -> None:
    folder = _write(tmp_path)
    (folder / "manifest.json").write_text('{"format": "mmgeom-feature-store", ')
    with pytest.raises(FeatureStoreError, match=r"manifest.json: not valid JSON"):
        FeatureStore.open(folder)


@pytest.mark.parametrize("file", ["features-text.npy", "mask-text.npy", "ids.npy", "split.npy"])
def test_truncated_npy_is_named(tmp_path: Path, file: str) -> None:
    folder = _write(tmp_path)
    data = (folder / file).read_bytes()
    (folder / file).write_bytes(data[:-3])  # a copy cut short
    with pytest.raises(FeatureStoreError, match=rf"{file}: not a readable .npy array \(truncated"):
        FeatureStore.open(folder)


def test_row_counts_disagreeing_are_named(tmp_path: Path) -> None:
    folder = _write(tmp_path)
    np.save(folder / "labels.npy", np.zeros(7, dtype=np.int64))
    with pytest.raises(
        FeatureStoreError, match=r"labels.npy: shape \(7,\) dtype int64, expected \(8,\) int64"
    ):
        FeatureStore.open(folder)
    folder = _write(tmp_path / "b")
    np.save(folder / "mask-text.npy", np.ones(9, dtype=bool))
    with pytest.raises(
        FeatureStoreError, match=r"mask-text.npy: shape \(9,\) dtype bool, expected \(8,\) bool"
    ):
        FeatureStore.open(folder)


def test_split_code_out_of_range_names_the_row(tmp_path: Path) -> None:
    folder = _write(tmp_path)
    codes = np.load(folder / "split.npy")
    codes[5] = 7
    np.save(folder / "split.npy", codes)
    with pytest.raises(
        FeatureStoreError, match=r"split.npy: row 5: split code 7 out of range; the manifest has 2"
    ):
        FeatureStore.open(folder)


def test_negative_or_too_large_row_indices_are_named(tmp_path: Path) -> None:
    store = FeatureStore.open(_write(tmp_path))
    with pytest.raises(
        FeatureStoreError, match=r"rows\[1\]: row index -1 out of range; expected 0 <= row < 8"
    ):
        store.read("image", rows=[0, -1])
    with pytest.raises(FeatureStoreError, match=r"rows\[0\]: row index 8 out of range"):
        store.present("text", rows=[8])
    with pytest.raises(FeatureStoreError, match="integer row indices"):
        store.read("image", rows=np.array([0.5]))
    assert torch.equal(store.read("image", rows=[7, 0]), store.read("image")[[7, 0]])


def test_overwrite_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    ex = masked_example()
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(FeatureStoreError, match="exists and is not a feature store"):
        FeatureStore.write(precious, overwrite=True, **ex)
    assert (precious / "chapter1.tex").read_text() == "years of work"
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(FeatureStoreError, match="exists and is not a feature store"):
        FeatureStore.write(afile, overwrite=True, **ex)
    assert afile.read_text() == "x"
    # A store mmgeom wrote is replaced.
    FeatureStore.write(tmp_path / "s", **ex)
    assert (
        FeatureStore.write(tmp_path / "s", overwrite=True, **dict(ex, labels=np.zeros(8, int))).labels.sum()
        == 0
    )
