"""The feature-store format: its folder layout, manifest constants and error type.

A store is a folder::

    manifest.json            format, version, row count, modalities (file, dtype, shape), splits, metadata
    features-<modality>.npy  (N, D_m) float16/32/64, one per modality, rows aligned
    ids.npy                  (N,) unique ids (int64 or unicode strings; never pickled objects)
    labels.npy               (N,) int64 class ids
    split.npy                (N,) uint8 codes into manifest["splits"]

Written by :func:`mmgeom.data.store_writer.write_store` (through :meth:`~mmgeom.data.FeatureStore.write`),
read by :class:`~mmgeom.data.FeatureStore`.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "FEATURE_DTYPES",
    "MANIFEST",
    "STORE_FORMAT",
    "STORE_VERSION",
    "FeatureStoreError",
    "is_feature_store",
]

#: ``manifest.json`` "format" value and the version this code reads and writes.
STORE_FORMAT = "mmgeom-feature-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
#: Feature dtypes a store holds (what ``.npy`` stores natively; bfloat16 is not among them).
FEATURE_DTYPES = ("float16", "float32", "float64")


class FeatureStoreError(ValueError):
    """A store that cannot be written or read as asked; the message says what and where."""


def is_feature_store(path: str | Path) -> bool:
    """Whether ``path`` holds a ``manifest.json`` of the feature-store format (nothing else is checked)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == STORE_FORMAT
