"""The feature-store format: its folder layout, manifest constants and error type.

A store is a folder::

    manifest.json            format, version, row count, modalities (file, dtype, shape, mask), splits, …
    features-<modality>.npy  (N, D_m) float16/32/64, one per modality, rows aligned
    mask-<modality>.npy      (N,) bool presence of the modality in each row (only when some row lacks it)
    ids.npy                  (N,) unique ids (int64 or unicode strings; never pickled objects)
    labels.npy               (N,) int64 class ids (-1: no label)
    split.npy                (N,) uint8 codes into manifest["splits"]

Version 2 added the presence masks; a version-1 store (no masks: every modality present in every row)
still opens. A row where a modality is absent holds zeros in that modality's features, so the arrays stay
dense and memory-mappable; the mask says which rows to trust.

Written by :func:`mmgeom.data.store_writer.write_store` (through :meth:`~mmgeom.data.FeatureStore.write`)
and by the chunked importer (:mod:`mmgeom.data.store_builder`), read by :class:`~mmgeom.data.FeatureStore`.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "FEATURE_DTYPES",
    "MANIFEST",
    "READABLE_VERSIONS",
    "STORE_FORMAT",
    "STORE_VERSION",
    "FeatureStoreError",
    "feature_file",
    "is_feature_store",
    "mask_file",
]

#: ``manifest.json`` "format" value and the version this code writes.
STORE_FORMAT = "mmgeom-feature-store"
STORE_VERSION = 2
#: Versions this code reads (1: no presence masks).
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
#: Feature dtypes a store holds (what ``.npy`` stores natively; bfloat16 is not among them).
FEATURE_DTYPES = ("float16", "float32", "float64")


class FeatureStoreError(ValueError):
    """A store that cannot be written or read as asked; the message says what and where."""


def feature_file(modality: str) -> str:
    """File name of a modality's ``(N, D)`` features."""
    return f"features-{modality}.npy"


def mask_file(modality: str) -> str:
    """File name of a modality's ``(N,)`` presence mask."""
    return f"mask-{modality}.npy"


def is_feature_store(path: str | Path) -> bool:
    """Whether ``path`` holds a ``manifest.json`` of the feature-store format (nothing else is checked)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == STORE_FORMAT
