"""Validation of what a feature store reader reads: the manifest, the ``.npy`` files, row indices.

Every check names the file, the manifest key or the row at fault, so a store damaged by a crash, a copy
cut short or a hand edit is reported precisely instead of failing later inside a training step.
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .store_format import (
    FEATURE_DTYPES,
    READABLE_VERSIONS,
    STORE_FORMAT,
    FeatureStoreError,
)

__all__ = ["check_rows", "check_split_codes", "load_manifest", "load_npy", "release_pages"]

# A file named by the manifest must be a plain name inside the store: no separators, no "..".
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.npy$")


def _key_error(file: Path, key: str, expected: str, got: object) -> FeatureStoreError:
    return FeatureStoreError(f"{file}: key {key!r}: expected {expected}, got {got!r}")


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_manifest(file: Path) -> dict[str, Any]:
    """Read and check ``manifest.json``: JSON, format, version and the type of every key.

    Raises:
        FeatureStoreError: naming the file and the key that is missing or malformed.
    """
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise FeatureStoreError(f"{file}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise FeatureStoreError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise FeatureStoreError(f"{file}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != STORE_FORMAT or manifest.get("version") not in READABLE_VERSIONS:
        raise FeatureStoreError(
            f"{file}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"expected {STORE_FORMAT!r} version {' or '.join(map(str, READABLE_VERSIONS))}"
        )
    n = manifest.get("num_rows")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _key_error(file, "num_rows", "an integer >= 1", n)
    mods = manifest.get("modalities")
    if not isinstance(mods, dict) or not mods:
        raise _key_error(file, "modalities", "a non-empty object modality -> spec", mods)
    for m, spec in mods.items():
        key = f"modalities.{m}"
        if not isinstance(spec, dict):
            raise _key_error(file, key, "an object with file, dtype, shape", spec)
        for sub in ("file", "mask") if "mask" in spec else ("file",):
            name = spec.get(sub)
            if not isinstance(name, str) or not _FILE.match(name):
                raise _key_error(file, f"{key}.{sub}", "a plain .npy file name inside the store", name)
        if spec.get("dtype") not in FEATURE_DTYPES:
            raise _key_error(file, f"{key}.dtype", f"one of {FEATURE_DTYPES}", spec.get("dtype"))
        shape = spec.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(_int(s) and s >= 1 for s in shape)):
            raise _key_error(file, f"{key}.shape", "[num_rows, dim] of positive integers", shape)
        if shape[0] != n:
            raise _key_error(file, f"{key}.shape", f"{n} rows (num_rows)", shape)
    splits = manifest.get("splits")
    if not (isinstance(splits, list) and splits and all(isinstance(s, str) and s for s in splits)):
        raise _key_error(file, "splits", "a non-empty list of split names", splits)
    if len(set(splits)) != len(splits) or len(splits) > 255:
        raise _key_error(file, "splits", "at most 255 distinct names", splits)
    counts = manifest.get("split_counts")
    if not isinstance(counts, dict) or sorted(counts) != sorted(splits):
        raise _key_error(file, "split_counts", f"an object with the keys {splits}", counts)
    if not isinstance(manifest.get("metadata"), dict):
        raise _key_error(file, "metadata", "an object", manifest.get("metadata"))
    return manifest


def load_npy(path: Path) -> np.ndarray:
    """Memory-map a store's ``.npy`` file read-only, naming the file when it is missing or cut short.

    Raises:
        FeatureStoreError: a missing file, a bad header, a pickled array, or fewer bytes than the header
            promises (a truncated copy).
    """
    if not path.is_file():
        raise FeatureStoreError(f"{path}: missing file of the feature store")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        # numpy says "mmap length is greater than file size" for a cut-short file.
        raise FeatureStoreError(f"{path}: not a readable .npy array (truncated or corrupt: {err})") from None


def check_split_codes(path: Path, codes: np.ndarray, splits: Sequence[str], counts: dict[str, int]) -> None:
    """Every code indexes ``splits`` and the per-split counts match the manifest.

    Raises:
        FeatureStoreError: naming the file and the first row whose code is out of range, or the split
            whose count disagrees with ``split_counts``.
    """
    if codes.dtype != np.uint8:
        raise FeatureStoreError(f"{path}: dtype {codes.dtype}, expected uint8 split codes")
    found = np.bincount(np.asarray(codes), minlength=256)
    if found[len(splits) :].any():
        row = int(np.flatnonzero(np.asarray(codes) >= len(splits))[0])
        raise FeatureStoreError(
            f"{path}: row {row}: split code {int(codes[row])} out of range; the manifest has "
            f"{len(splits)} splits {list(splits)}"
        )
    for i, s in enumerate(splits):
        if int(found[i]) != counts[s]:
            raise FeatureStoreError(
                f"{path}: split {s!r} has {int(found[i])} rows, manifest key 'split_counts' says {counts[s]}"
            )


def check_rows(rows: np.ndarray | Sequence[int], num_rows: int, what: str = "rows") -> np.ndarray:
    """``rows`` as int64 indices in ``[0, num_rows)``.

    Raises:
        FeatureStoreError: a non-integer, multi-dimensional, negative or too-large index (naming its
            position and value).
    """
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise FeatureStoreError(
            f"{what}: expected a 1-D array of integer row indices, got {arr.dtype} {arr.shape}"
        )
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((arr < 0) | (arr >= num_rows))
    if bad.size:
        i = int(bad[0])
        raise FeatureStoreError(
            f"{what}[{i}]: row index {int(arr[i])} out of range; expected 0 <= row < {num_rows}"
        )
    return arr


def release_pages(arr: np.ndarray) -> None:
    """Drop a read-only memory map's pages from this process's resident set (``MADV_DONTNEED``).

    Pages of a file mapping stay resident (counted in RSS) after they were read, so a pass over a large
    store would grow the process to the store's size. The data stays in the page cache; a later read
    faults it back in cheaply. Views of the map stay valid. A no-op where ``madvise`` is unavailable.
    """
    mm = getattr(arr, "_mmap", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if mm is not None and advice is not None and hasattr(mm, "madvise"):
        mm.madvise(advice)
