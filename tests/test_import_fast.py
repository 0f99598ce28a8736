"""The kernel-copy fast path of the array importers and ``durable=False`` (``mmgeom import --no-sync``).

Each test compares the fast path with the slow one (rows read into a buffer and written with
``pwrite``) and with numpy's own concatenation of the shards, byte for byte.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.data import FeatureStore, FeatureStoreError, store_files
from mmgeom.data.importers import ArraysSource, ClipRetrievalSource, base, run_import


def _shards(root: Path) -> dict[str, np.ndarray]:
    """Odd shard sizes, float16 and float32 modalities; returns numpy's concatenation per modality."""
    rng = np.random.default_rng(5)
    img = [rng.normal(size=(n, 7)).astype(np.float16) for n in (13, 1, 29, 8)]
    txt = [rng.normal(size=(n, 3)).astype(np.float32) for n in (30, 21)]
    for k, arr in enumerate(img):
        np.save(root / f"img_{k}.npy", arr)
    for k, arr in enumerate(txt):
        np.save(root / f"txt_{k}.npy", arr)
    return {"image": np.concatenate(img), "text": np.concatenate(txt)}


def _source(root: Path, **kw: object) -> ArraysSource:
    return ArraysSource({"image": str(root / "img_*.npy"), "text": str(root / "txt_*.npy")}, **kw)  # type: ignore[arg-type]


def _files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir())}


@pytest.fixture
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 bytes: 2 float16 rows of 7 (14 bytes each) or 3 float32 rows of 3 (12 bytes each) per step:
    # steps end inside shards and inside blocks.
    monkeypatch.setattr(base, "_COPY_STEP", 40)


def test_fast_path_is_byte_identical_to_slow_path(tmp_path: Path, small_steps: None) -> None:
    want = _shards(tmp_path)
    fast, slow = _source(tmp_path), _source(tmp_path, kernel_copy=False)
    assert fast.copied == {"image", "text"} and slow.copied == set()
    # chunk_rows 5: block boundaries inside shards, blocks that span three shards (13 | 1 | 29)
    a = run_import(fast, tmp_path / "fast", chunk_rows=5)
    b = run_import(slow, tmp_path / "slow", chunk_rows=5)
    assert _files(a) == _files(b)
    store = FeatureStore.open(a)
    for m, ref in want.items():
        assert store.dtypes[m] == ref.dtype.name
        np.testing.assert_array_equal(store.array(m), ref)
        raw = (a / f"features-{m}.npy").read_bytes()
        assert raw.endswith(ref.tobytes())  # the rows are exactly the shards' bytes


def test_conversion_or_foreign_byte_order_keeps_the_slow_path(tmp_path: Path) -> None:
    want = _shards(tmp_path)
    assert _source(tmp_path, dtype="float32").copied == {"text"}  # float16 -> float32 is converted
    big = want["text"].astype(">f4")
    np.save(tmp_path / "big.npy", big)
    src = ArraysSource({"x": tmp_path / "big.npy"})
    assert src.copied == set()  # big-endian bytes must be converted, not copied
    store = FeatureStore.open(run_import(src, tmp_path / "s", chunk_rows=4))
    np.testing.assert_array_equal(store.array("x"), want["text"])


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nonfinite_value_in_copied_shard_names_file_row_column(
    tmp_path: Path, small_steps: None, bad_value: float
) -> None:
    _shards(tmp_path)
    arr = np.load(tmp_path / "img_2.npy")
    arr[17, 4] = bad_value
    np.save(tmp_path / "img_2.npy", arr)
    src = _source(tmp_path)
    assert "image" in src.copied
    with pytest.raises(FeatureStoreError, match=r"img_2\.npy, row 17, column 4: modality 'image' has a NaN"):
        run_import(src, tmp_path / "s", chunk_rows=6, commit_seconds=0)
    assert not (tmp_path / "s").exists()
    # The block holding the bad row (store row 13 + 1 + 17 = 31, block 30..36) was never recorded.
    state = json.loads((tmp_path / ".s.import" / "state.json").read_text())
    assert state["rows_done"] == 30


def test_no_sync_writes_the_same_bytes_without_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _shards(tmp_path)
    calls = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    a = run_import(_source(tmp_path), tmp_path / "durable", chunk_rows=7)
    assert len(calls) >= 6  # two feature files, ids, labels, split, manifest, two folders
    calls.clear()
    b = run_import(_source(tmp_path), tmp_path / "nosync", chunk_rows=7, durable=False)
    assert calls == []
    assert _files(a) == _files(b)
    res = CliRunner().invoke(
        app,
        [
            "import",
            str(tmp_path / "cli"),
            "--array",
            f"image={tmp_path}/img_*.npy",
            "--array",
            f"text={tmp_path}/txt_*.npy",
            "--chunk-rows",
            "7",
            "--no-sync",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert calls == []
    assert _files(tmp_path / "cli") == _files(a)


def test_unsupported_kernel_copy_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _shards(tmp_path)
    want = _files(run_import(_source(tmp_path, kernel_copy=False), tmp_path / "ref", chunk_rows=9))
    used: list[str] = []

    def cross_device(*args: object) -> int:
        used.append("copy_file_range")
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    real_sendfile = os.sendfile

    def sendfile(*args: int) -> int:
        used.append("sendfile")
        return real_sendfile(*args)

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    monkeypatch.setattr(os, "sendfile", sendfile)
    monkeypatch.setattr(store_files, "_COPY_WAYS", ["copy_file_range", "sendfile"])
    got = _files(run_import(_source(tmp_path), tmp_path / "sendfile", chunk_rows=9))
    assert got == want
    assert used.count("copy_file_range") == 1 and used.count("sendfile") > 1  # tried once, then skipped

    def no_sendfile(*args: int) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "sendfile", no_sendfile)
    monkeypatch.setattr(store_files, "_COPY_WAYS", ["copy_file_range", "sendfile"])
    assert _files(run_import(_source(tmp_path), tmp_path / "pwrite", chunk_rows=9)) == want
    assert store_files._COPY_WAYS == []  # both ways found unsupported: plain pread + pwrite

    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "copy_file_range", broken)
    monkeypatch.setattr(store_files, "_COPY_WAYS", ["copy_file_range", "sendfile"])
    with pytest.raises(OSError, match="Input/output error"):  # a real error is not hidden by a fallback
        run_import(_source(tmp_path), tmp_path / "eio", chunk_rows=9)


def test_clip_retrieval_float16_shards_are_copied(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    parts = {"img": [], "text": []}
    for d in ("img", "text"):
        (tmp_path / f"{d}_emb").mkdir()
        for k, n in enumerate((11, 6)):
            arr = rng.normal(size=(n, 8)).astype(np.float16)
            np.save(tmp_path / f"{d}_emb" / f"{d}_emb_{k}.npy", arr)
            parts[d].append(arr)
    src = ClipRetrievalSource(tmp_path)
    assert src.copied == {"image", "text"}
    store = FeatureStore.open(run_import(src, tmp_path / "s", chunk_rows=4))
    np.testing.assert_array_equal(store.array("image"), np.concatenate(parts["img"]))
    np.testing.assert_array_equal(store.array("text"), np.concatenate(parts["text"]))
