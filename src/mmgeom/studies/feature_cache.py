"""Feature stores the studies build once and reuse (frozen backbone features)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .._paths import cache_root
from ..data.features import FeatureStore, FeatureStoreError

__all__ = ["cache_dir", "cached_store"]


def cache_dir() -> Path:
    """Where studies cache feature stores: ``cache_root() / "features"`` (see :mod:`mmgeom._paths`)."""
    return cache_root() / "features"


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
