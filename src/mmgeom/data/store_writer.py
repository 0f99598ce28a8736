"""Write a feature store: validate features, ids, labels and split, then write all or nothing.

Everything goes into a temporary folder next to the target, each file flushed and fsynced, and the
folder is renamed into place last; a failure leaves no partial store behind (and an overwritten store
intact until the rename).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .store_format import (
    FEATURE_DTYPES,
    MANIFEST,
    STORE_FORMAT,
    STORE_VERSION,
    FeatureStoreError,
    feature_file,
    is_feature_store,
    mask_file,
)

__all__ = ["check_target", "replace_folder", "write_store"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise FeatureStoreError(
            f"{what}: expected a name of letters, digits, '_', '.', '-' (not starting with a symbol), "
            f"got {name!r}"
        )
    return name


def _as_numpy(x: object, what: str) -> np.ndarray:
    if isinstance(x, Tensor):
        if x.dtype == torch.bfloat16:
            raise FeatureStoreError(
                f"{what}: dtype bfloat16 cannot be stored; pass dtype='float32' or convert first "
                f"(supported: {', '.join(FEATURE_DTYPES)})"
            )
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _features(
    features: Mapping[str, object], dtype: str | None, masks: Mapping[str, object] | None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    if not isinstance(features, Mapping) or not features:
        raise FeatureStoreError("features: expected a non-empty dict modality -> (N, D) array")
    if dtype is not None and dtype not in FEATURE_DTYPES:
        raise FeatureStoreError(f"dtype: expected one of {FEATURE_DTYPES} or None, got {dtype!r}")
    out: dict[str, np.ndarray] = {}
    rows: int | None = None
    for name, value in features.items():
        _check_name(name, "modality")
        arr = _as_numpy(value, f"features[{name!r}]")
        if arr.ndim != 2 or arr.shape[1] < 1:
            raise FeatureStoreError(f"features[{name!r}]: expected shape (N, D) with D >= 1, got {arr.shape}")
        if dtype is not None and arr.dtype.kind == "f":
            arr = arr.astype(dtype, copy=False)
        if arr.dtype.name not in FEATURE_DTYPES:
            raise FeatureStoreError(
                f"features[{name!r}]: expected a floating dtype ({', '.join(FEATURE_DTYPES)}), "
                f"got {arr.dtype.name}"
            )
        if rows is not None and arr.shape[0] != rows:
            first = next(iter(out))
            raise FeatureStoreError(
                f"features[{name!r}]: {arr.shape[0]} rows, but features[{first!r}] has {rows}; "
                "every modality needs one row per example"
            )
        rows = arr.shape[0]
        out[name] = np.ascontiguousarray(arr)
    assert rows is not None
    if rows == 0:
        raise FeatureStoreError("features: expected at least one row, got 0")
    present = _masks(masks, out, rows)
    for name, arr in out.items():
        keep = present.get(name)
        if keep is not None:
            # Absent rows are stored as zeros whatever the caller put there (often NaN).
            arr = np.where(keep[:, None], arr, np.zeros((), arr.dtype))
            out[name] = arr
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            col = int(np.flatnonzero(~np.isfinite(arr[row]))[0])
            raise FeatureStoreError(
                f"features[{name!r}]: {int((~finite).sum())} row(s) contain NaN or Inf (first: row {row}, "
                f"column {col}); mark a missing modality in masks instead"
            )
    return out, present, rows


def _masks(
    masks: Mapping[str, object] | None, arrays: dict[str, np.ndarray], n: int
) -> dict[str, np.ndarray]:
    """Presence masks, kept only for modalities absent from some row (an all-True mask is not stored)."""
    if masks is None:
        return {}
    if not isinstance(masks, Mapping):
        raise FeatureStoreError(
            f"masks: expected a dict modality -> ({n},) bool array, got {type(masks).__name__}"
        )
    out: dict[str, np.ndarray] = {}
    for name, value in masks.items():
        if name not in arrays:
            raise FeatureStoreError(f"masks: unknown modality {name!r}; the features have {list(arrays)}")
        arr = _as_numpy(value, f"masks[{name!r}]")
        if arr.shape != (n,) or arr.dtype != np.bool_:
            raise FeatureStoreError(
                f"masks[{name!r}]: expected a ({n},) bool array, got {arr.dtype} {arr.shape}"
            )
        if not arr.all():
            out[name] = np.ascontiguousarray(arr)
    if out:
        anything = np.zeros(n, dtype=bool)
        for name in arrays:
            anything |= out.get(name, np.ones(n, dtype=bool))
        if not anything.all():
            row = int(np.flatnonzero(~anything)[0])
            raise FeatureStoreError(f"masks: row {row} has no modality present; drop it or supply one")
    return out


def _ids(ids: object, n: int) -> np.ndarray:
    if ids is None:
        raise FeatureStoreError(f"ids: expected {n} unique ids (ints or strings), got None")
    arr = _as_numpy(ids, "ids") if not isinstance(ids, (list, tuple)) else np.asarray(list(ids))
    if arr.ndim != 1 or arr.shape[0] != n:
        raise FeatureStoreError(f"ids: expected shape ({n},) (one per row), got {arr.shape}")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "U":
        if any(s == "" for s in arr.tolist()):
            raise FeatureStoreError("ids: empty string ids are not allowed")
    else:
        raise FeatureStoreError(f"ids: expected integers or strings, got dtype {arr.dtype}")
    values, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise FeatureStoreError(
            f"ids: must be unique; {values[counts > 1][0].item()!r} appears more than once"
        )
    return arr


def _labels(labels: object, n: int) -> np.ndarray:
    if labels is None:
        raise FeatureStoreError(f"labels: expected ({n},) integer class ids, got None")
    arr = _as_numpy(labels, "labels")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise FeatureStoreError(f"labels: expected shape ({n},) (one per row), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise FeatureStoreError(f"labels: expected integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _split(split: object, n: int) -> tuple[np.ndarray, list[str]]:
    if split is None:
        raise FeatureStoreError(
            f"split: expected a split name per row (e.g. 'train'/'test', {n} rows) or one name for all"
        )
    if isinstance(split, str):
        return np.zeros(n, dtype=np.uint8), [_check_name(split, "split")]
    arr = np.asarray(list(split) if isinstance(split, (list, tuple)) else split)
    if arr.ndim != 1 or arr.shape[0] != n or arr.dtype.kind != "U":
        raise FeatureStoreError(
            f"split: expected ({n},) split names (strings), got shape {arr.shape} dtype {arr.dtype}"
        )
    names = sorted(set(arr.tolist()))
    for name in names:
        _check_name(name, "split")
    if len(names) > 255:
        raise FeatureStoreError(f"split: at most 255 distinct names, got {len(names)}")
    codes = np.searchsorted(np.asarray(names), arr).astype(np.uint8)
    return codes, names


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse an existing ``target`` unless ``overwrite``, and never replace what is not a feature store.

    Raises:
        FeatureStoreError: ``target`` exists and ``overwrite`` is False, or it exists and is not a feature
            store (a file, or a folder without a store manifest), which mmgeom would not delete.
    """
    if not target.exists():
        return
    if not overwrite:
        raise FeatureStoreError(f"{target}: already exists; pass overwrite=True (CLI: --overwrite)")
    if not target.is_dir() or not is_feature_store(target):
        raise FeatureStoreError(
            f"{target}: exists and is not a feature store (no {MANIFEST} of format {STORE_FORMAT!r}); "
            "overwrite only replaces a store mmgeom wrote, pick another path or remove it yourself"
        )


def replace_folder(tmp: Path, target: Path) -> None:
    """Rename the finished folder ``tmp`` to ``target``, replacing an existing store there last."""
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        os.replace(target, old / "store")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _save_npy(folder: Path, name: str, arr: np.ndarray) -> None:
    with open(folder / name, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def write_store(
    path: str | Path,
    features: Mapping[str, Tensor | np.ndarray],
    ids: Sequence[str] | Sequence[int] | np.ndarray | Tensor,
    labels: Sequence[int] | np.ndarray | Tensor,
    split: str | Sequence[str] | np.ndarray,
    *,
    metadata: Mapping[str, Any] | None = None,
    dtype: str | None = None,
    masks: Mapping[str, np.ndarray | Tensor | Sequence[bool]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Validate and write a store at ``path`` atomically (see :meth:`mmgeom.data.FeatureStore.write`).

    Returns:
        The store folder.
    """
    target = Path(path)
    arrays, present, n = _features(features, dtype, masks)
    id_arr, label_arr = _ids(ids, n), _labels(labels, n)
    codes, split_names = _split(split, n)
    try:
        meta_json = json.loads(json.dumps(dict(metadata or {})))
    except (TypeError, ValueError) as err:
        raise FeatureStoreError(f"metadata: not JSON-serialisable ({err})") from None
    check_target(target, overwrite)
    manifest = build_manifest(n, arrays, present, id_arr, codes, split_names, meta_json)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        for m, a in arrays.items():
            _save_npy(tmp, feature_file(m), a)
            if m in present:
                _save_npy(tmp, mask_file(m), present[m])
        _save_npy(tmp, "ids.npy", id_arr)
        _save_npy(tmp, "labels.npy", label_arr)
        _save_npy(tmp, "split.npy", codes)
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def build_manifest(
    n: int,
    arrays: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
    ids: np.ndarray,
    codes: np.ndarray,
    split_names: Sequence[str],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The ``manifest.json`` content of a store (``arrays`` need only ``dtype`` and ``shape``)."""
    modalities: dict[str, Any] = {}
    for m, a in arrays.items():
        spec: dict[str, Any] = {"file": feature_file(m), "dtype": a.dtype.name, "shape": [n, int(a.shape[1])]}
        if m in present:
            spec["mask"] = mask_file(m)
            spec["present"] = int(present[m].sum())
        modalities[m] = spec
    counts = np.bincount(codes, minlength=len(split_names))
    return {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "num_rows": n,
        "modalities": modalities,
        "ids_dtype": "int64" if ids.dtype.kind == "i" else "str",
        "splits": list(split_names),
        "split_counts": {s: int(counts[i]) for i, s in enumerate(split_names)},
        "metadata": metadata,
    }
