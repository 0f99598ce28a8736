"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files, read offline).

70 000 real 28x28 grey-scale images of clothing in 10 classes (60 000 train, 10 000 test). Besides the
raw images, :func:`load_fashion_mnist_halves` gives a two-view dataset (left and right image halves),
the second real multi-view dataset of the studies.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataUnavailableError
from .multiview import MultiViewDataset

#: What to run where the files are missing (as root on Debian/Ubuntu).
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
#: Where the Debian package puts the IDX files; ``MMGEOM_FASHION_MNIST_DIR`` overrides it.
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def fashion_mnist_dir() -> Path:
    """The folder with the four IDX files; ``DataUnavailableError`` with the install command if absent."""
    folder = Path(os.environ.get("MMGEOM_FASHION_MNIST_DIR", DEFAULT_DIR))
    missing = [f for pair in _FILES.values() for f in pair if not (folder / f).is_file()]
    if missing:
        raise DataUnavailableError(
            f"Fashion-MNIST: {', '.join(missing)} not found in {folder}. Install the Debian package with "
            f"`{FASHION_MNIST_INSTALL}` (as root), or point MMGEOM_FASHION_MNIST_DIR at the IDX files."
        )
    return folder


def fashion_mnist_available() -> bool:
    """Whether :func:`load_fashion_mnist` can run here (for skipping tests and study parts)."""
    try:
        fashion_mnist_dir()
    except DataUnavailableError:
        return False
    return True


def read_idx(path: Path) -> np.ndarray:
    """Parse one (optionally gzipped) IDX file into a ``uint8`` array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: expected unsigned-byte data (type 0x08), got type {raw[2]:#04x}")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims))
    if data.size != expected:
        raise ValueError(f"{path}: header declares {dims} = {expected} values, file holds {data.size}")
    return data.reshape(dims)


def load_fashion_mnist(split: str = "train") -> tuple[Tensor, Tensor]:
    """``(images, labels)``: ``(N, 28, 28)`` uint8 and ``(N,)`` int64 of ``"train"`` or ``"test"``."""
    if split not in _FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    folder = fashion_mnist_dir()
    images = read_idx(folder / _FILES[split][0])
    labels = read_idx(folder / _FILES[split][1])
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_fashion_mnist_halves(split: str = "train", limit: int | None = None) -> MultiViewDataset:
    """Two aligned views of each image: ``left`` and ``right`` halves (28 x 14 pixels each, in ``[0, 1]``).

    Args:
        split: ``"train"`` or ``"test"``.
        limit: keep the first ``limit`` rows (the files are not ordered by class).
    """
    images, labels = load_fashion_mnist(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.float() / 255.0
    views = {"left": x[:, :, :14].reshape(len(x), -1), "right": x[:, :, 14:].reshape(len(x), -1)}
    return MultiViewDataset(views, labels, "fashion_mnist_halves", FASHION_MNIST_CLASSES)
