"""Fashion-MNIST IDX reader (against hand-built files) and the Debian-packaged data (skipped if absent)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgeom.data import DataUnavailableError
from mmgeom.data.fashion_mnist import (
    FASHION_MNIST_INSTALL,
    fashion_mnist_available,
    fashion_mnist_dir,
    load_fashion_mnist,
    load_fashion_mnist_halves,
    read_idx,
)


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    write_idx(path, arr, gz=gz)
    np.testing.assert_array_equal(read_idx(path), arr)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"ab")
    with pytest.raises(ValueError, match="declares"):
        read_idx(short)


def test_missing_data_names_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMGEOM_FASHION_MNIST_DIR", str(tmp_path))
    assert not fashion_mnist_available()
    with pytest.raises(DataUnavailableError) as info:
        fashion_mnist_dir()
    assert FASHION_MNIST_INSTALL in str(info.value)


def test_loader_on_a_fake_package_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", imgs)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("MMGEOM_FASHION_MNIST_DIR", str(tmp_path))
    x, y = load_fashion_mnist("test")
    assert torch.equal(x, torch.from_numpy(imgs))
    assert y.tolist() == [3, 1, 4, 1, 5]
    halves = load_fashion_mnist_halves("train")
    rebuilt = torch.cat([halves.views["left"].view(5, 28, 14), halves.views["right"].view(5, 28, 14)], dim=2)
    assert torch.allclose(rebuilt, torch.from_numpy(imgs).float() / 255)
    with pytest.raises(ValueError, match="split: expected 'train' or 'test'"):
        load_fashion_mnist("val")


@pytest.mark.skipif(not fashion_mnist_available(), reason=f"Fashion-MNIST absent: {FASHION_MNIST_INSTALL}")
def test_real_fashion_mnist() -> None:
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28)
    assert y.bincount().tolist() == [1000] * 10
    # The first test labels as published with the dataset: ankle boot, pullover, trouser, trouser, shirt...
    assert y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    xt, yt = load_fashion_mnist("train")
    assert xt.shape == (60000, 28, 28)
    assert yt.bincount().tolist() == [6000] * 10
