"""Training data from a store: streaming statistics, lazy masked batches, parts; vs in-memory references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.data import FeatureStore, FeatureStoreError, MultiViewDataset, Standardizer
from mmgeom.data.store_training import StoreRows, load_store_split, streaming_standardizer


def _store(tmp_path: Path, n: int = 60, masked: bool = True) -> tuple[FeatureStore, dict]:
    rng = np.random.default_rng(0)
    feats = {
        "a": (rng.normal(size=(n, 4)) * [1, 10, 1e3, 0] + 5e3).astype(np.float32),  # offset: tests stability
        "b": rng.normal(size=(n, 3)).astype(np.float16),
        "c": rng.normal(size=(n, 2)),
    }
    present = {"b": rng.random(n) > 0.3} if masked else {}
    split = np.array(["train", "val", "test"])[np.arange(n) % 5 % 3]
    store = FeatureStore.write(
        tmp_path / "s", feats, ids=np.arange(n), labels=np.arange(n) % 4, split=split, masks=present or None
    )
    return store, {"feats": feats, "present": present, "split": split}


def test_streaming_standardizer_matches_fit_on_present_rows(tmp_path: Path) -> None:
    store, ex = _store(tmp_path)
    rows = store.indices("train")
    got = streaming_standardizer(store, ["a", "b", "c"], rows, chunk_rows=7)
    for m in ("a", "b", "c"):
        keep = ex["present"].get(m, np.ones(60, bool))[rows]
        x = torch.from_numpy(np.asarray(ex["feats"][m], dtype=np.float32)[rows][keep])
        ref = Standardizer.fit(MultiViewDataset({m: x}, torch.zeros(len(x), dtype=torch.long)))
        torch.testing.assert_close(got.mean[m], ref.mean[m], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got.scale[m], ref.scale[m], rtol=1e-5, atol=0)
    assert float(got.scale["a"][3]) == 1.0  # a constant column gets scale 1, as Standardizer.fit


def test_store_rows_batch_is_standardised_rows_with_mask(tmp_path: Path) -> None:
    store, ex = _store(tmp_path)
    parts = load_store_split(tmp_path / "s", ["a", "b"], chunk_rows=8)
    train = parts.train
    assert isinstance(train, StoreRows) and train.view_dims == {"a": 4, "b": 3} and train.has_masks
    rows = store.indices("train")
    np.testing.assert_array_equal(parts.split.train.numpy(), rows)
    idx = torch.tensor([5, 0, 17, 3, 3])
    views, mask = train.read(idx)
    sc = parts.standardizer
    assert sc is not None
    for m in ("a", "b"):
        raw = torch.from_numpy(np.asarray(ex["feats"][m], dtype=np.float32)[rows[idx.numpy()]])
        keep = torch.from_numpy(ex["present"].get(m, np.ones(60, bool))[rows[idx.numpy()]])
        want = torch.where(keep[:, None], (raw - sc.mean[m]) / sc.scale[m], torch.zeros(()))
        torch.testing.assert_close(views[m], want, rtol=0, atol=0)
        if not bool(keep.all()):
            assert torch.equal(mask[m], keep)
    assert "a" not in mask
    assert torch.equal(train.batch(idx, with_labels=True)["labels"], torch.from_numpy(rows[idx.numpy()] % 4))
    # val/test in memory: only rows with every chosen modality.
    val_rows = store.indices("val")
    keep = ex["present"]["b"][val_rows]
    assert len(parts.val) == int(keep.sum())
    np.testing.assert_array_equal(parts.split.val.numpy(), val_rows[keep])


def test_load_store_split_errors(tmp_path: Path) -> None:
    _store(tmp_path)
    with pytest.raises(FeatureStoreError, match=r"modalities: 'x' not in the store"):
        load_store_split(tmp_path / "s", ["a", "x"])
    with pytest.raises(FeatureStoreError, match="at least two distinct modalities"):
        load_store_split(tmp_path / "s", ["a"])
    with pytest.raises(FeatureStoreError, match=r"split: 'dev' not in the store"):
        load_store_split(tmp_path / "s", ["a", "c"], split={"val": "dev"})


def test_sampler_with_cached_epoch_order_gives_the_defined_stream() -> None:
    from mmgeom.data import BatchSampler

    s = BatchSampler(10, 4, seed=3)
    got = [s.next_batch() for _ in range(7)]  # 2 batches per epoch (drop_last): epochs 0, 1, 2, 3
    for k, batch in enumerate(got):
        epoch, pos = divmod(k, 2)
        want = np.random.default_rng([3, epoch]).permutation(10)[4 * pos : 4 * pos + 4]
        np.testing.assert_array_equal(batch.numpy(), want)
    got[0][0] = -1  # a caller writing into its batch does not change the sampler's cached order
    s.load_state_dict({"epoch": 3, "position": 0, "seed": 3})
    np.testing.assert_array_equal(s.next_batch().numpy(), np.random.default_rng([3, 3]).permutation(10)[:4])
