"""Feature stores the studies build once and reuse (frozen backbone features)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..data.features import FeatureStore, FeatureStoreError

__all__ = ["cache_dir", "cached_store"]


def cache_dir() -> Path:
    """Where studies cache feature stores: ``$MMGEOM_CACHE_DIR`` or ``~/.cache/mmgeom/features``."""
    root = os.environ.get("MMGEOM_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "mmgeom" / "features"


def cached_store(
    path: Path, build: Callable[[], object], check: Callable[[FeatureStore], bool]
) -> FeatureStore:
    """The feature store at ``path`` if it exists and passes ``check``; else ``build()`` it, then open it."""
    try:
        store = FeatureStore.open(path)
        if check(store):
            return store
    except FeatureStoreError:
        pass
    build()
    return FeatureStore.open(path)
