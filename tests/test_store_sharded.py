"""Under torchrun each rank reads only its own store rows: sharded statistics, val/test on rank 0 only.

Two real gloo processes (spawned, as tests/test_distributed.py) against one process and a float64 numpy
reference: the sharded standardisation statistics are bit-identical to the 1-process ones, the ranks read
disjoint halves of the training rows for them, and the validation/test rows are read by rank 0 only,
when it evaluates (batch by batch, without loading the part).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import store_sharded_worker as w
from mmgeom.data import FeatureStore
from mmgeom.data.store_training import load_store_split, streaming_standardizer

N, CHUNK = 240, 16


def _store(path: Path) -> FeatureStore:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(N, 3))
    feats = {
        "a": (z @ rng.normal(size=(3, 6)) * [1, 10, 1e3, 1, 1, 1] + 5e3).astype(np.float32),
        "b": (z @ rng.normal(size=(3, 5)) + 0.1 * rng.normal(size=(N, 5))).astype(np.float16),
    }
    split = np.array(["train", "train", "train", "val", "test"])[np.arange(N) % 5]
    return FeatureStore.write(path, feats, ids=np.arange(N), labels=np.arange(N) % 4, split=split)


def _config(store: Path) -> dict:
    return {
        "data": {"store": str(store)},
        "model": {"head": "mlp", "out_dim": 4, "hidden": 8, "dropout": 0.0},
        "loss": {"name": "infonce", "kwargs": {"temperature": 0.2}},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "train": {"steps": 2, "batch_size": 16, "progress": False, "eval_before": False},
        "eval": {"split": "val", "ks": [1], "diagnostics": False, "classification": False},
    }


def test_one_process_statistics_equal_float64_reference(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    rows = store.indices("train")
    got = streaming_standardizer(store, ["a", "b"], rows, chunk_rows=CHUNK)
    for m in ("a", "b"):
        x = np.asarray(store.array(m)[rows], dtype=np.float64)
        np.testing.assert_allclose(got.mean[m].numpy(), x.mean(axis=0).astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(got.scale[m].numpy(), x.std(axis=0).astype(np.float32), rtol=1e-5)


def test_val_and_test_are_read_on_first_use_only(tmp_path: Path) -> None:
    _store(tmp_path / "s")
    parts = load_store_split(tmp_path / "s", chunk_rows=CHUNK)
    assert not parts.val.loaded and not parts.test.loaded
    assert len(parts.val) == N // 5 and parts.val.view_names == ("a", "b")
    eager = parts.val.batch()  # read from the store without loading
    assert not parts.val.loaded
    views = parts.val.views  # first use: loaded, equal to the rows read directly
    assert parts.val.loaded
    for m in ("a", "b"):
        torch.testing.assert_close(views[m], eager[m], rtol=0, atol=0)
        raw = torch.from_numpy(np.asarray(parts.val.store.array(m)[parts.val.rows], dtype=np.float32))
        ref = (raw - parts.standardizer.mean[m]) / parts.standardizer.scale[m]
        torch.testing.assert_close(views[m], ref, rtol=0, atol=0)
    sub = parts.val.subset([0, 2])
    torch.testing.assert_close(sub.views["a"], views["a"][[0, 2]], rtol=0, atol=0)


@pytest.mark.distributed
def test_two_ranks_read_disjoint_rows_and_get_the_one_process_statistics(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    rows = store.indices("train")
    single = streaming_standardizer(store, ["a", "b"], rows, chunk_rows=CHUNK)
    out = tmp_path / "out"
    out.mkdir()
    ranks = w.spawn(out, tmp_path / "s", CHUNK, _config(tmp_path / "s"))
    n_chunks = -(-rows.size // CHUNK)
    for r, res in enumerate(ranks):
        for m in ("a", "b"):
            # Bit-identical: the same chunks merged in the same order, whatever the number of ranks.
            assert torch.equal(res["mean"][m], single.mean[m]), (r, m)
            assert torch.equal(res["scale"][m], single.scale[m]), (r, m)
            mine = rows[n_chunks * r // 2 * CHUNK : n_chunks * (r + 1) // 2 * CHUNK]
            assert res["stats_rows"][m] == mine.tolist(), (r, m)  # its own contiguous half, once
        assert not res["val_loaded_after_load"]
        assert not res["test_loaded_after_fit"]
    both = sorted(ranks[0]["stats_rows"]["a"] + ranks[1]["stats_rows"]["a"])
    assert both == rows.tolist()
    # Only rank 0 evaluates (at the end of fit), so only rank 0 reads the validation rows; it embeds
    # them batch by batch from the store, so neither rank holds the part in memory.
    assert not ranks[0]["val_loaded_after_fit"] and not ranks[1]["val_loaded_after_fit"]
    val = set(store.indices("val").tolist())
    assert val <= set(ranks[0]["fit_rows"]["a"])
    assert not val & set(ranks[1]["fit_rows"]["a"])
    train = set(rows.tolist())
    assert set(ranks[1]["fit_rows"]["a"]) <= train  # rank 1 read training rows only


def test_take_reads_the_rows_asked_in_their_order(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    ref = np.load(tmp_path / "s" / "features-b.npy")  # the stored bytes, independently of the reader
    idx = np.array([5, 6, 7, 0, 239, 8, 8, 100])  # runs, a repeat, unsorted, the last row
    np.testing.assert_array_equal(store.take("b", idx), ref[idx])
    buf = np.empty((idx.size, 5), np.float16)
    assert store.take("b", idx, out=buf) is buf
    np.testing.assert_array_equal(buf, ref[idx])
    assert store.take("b", np.zeros(0, np.int64)).shape == (0, 5)
    with pytest.raises(ValueError, match=r"rows\[1\]: row index 240 out of range"):
        store.take("b", [0, 240])
    with pytest.raises(ValueError, match="out: expected a C-contiguous"):
        store.take("b", idx, out=np.empty((idx.size, 5), np.float32))
