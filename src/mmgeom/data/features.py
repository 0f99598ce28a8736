"""On-disk feature stores: frozen-backbone features written once, read memory-mapped in chunks.

A store is a folder::

    manifest.json            format, version, row count, modalities (file, dtype, shape), splits, metadata
    features-<modality>.npy  (N, D_m) float16/32/64, one per modality, rows aligned
    ids.npy                  (N,) unique ids (int64 or unicode strings; never pickled objects)
    labels.npy               (N,) int64 class ids
    split.npy                (N,) uint8 codes into manifest["splits"]

A frozen backbone runs once (``FeatureStore.write``, or ``mmgeom features SOURCE OUT_DIR`` for the bundled
sources); training then reads features with :meth:`FeatureStore.read` or :meth:`FeatureStore.iter_chunks`
without loading whole arrays. Writing is all or nothing: everything goes into a temporary folder next to
the target, which is renamed into place after every file is flushed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .multiview import MultiViewDataset

#: ``manifest.json`` "format" value and the version this code reads and writes.
STORE_FORMAT = "mmgeom-feature-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
#: Feature dtypes a store holds (what ``.npy`` stores natively; bfloat16 is not among them).
FEATURE_DTYPES = ("float16", "float32", "float64")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class FeatureStoreError(ValueError):
    """A store that cannot be written or read as asked; the message says what and where."""


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


def _features(features: Mapping[str, object], dtype: str | None) -> tuple[dict[str, np.ndarray], int]:
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
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).any(axis=1).sum())
            raise FeatureStoreError(f"features[{name!r}]: {bad} row(s) contain NaN or Inf")
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
    return out, rows


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


def _save_npy(folder: Path, name: str, arr: np.ndarray) -> None:
    with open(folder / name, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


class FeatureStore:
    """A read-only, memory-mapped feature store (see the module docstring for the layout).

    Build one with :meth:`write`, open an existing one with :meth:`open`.

    Example:
        >>> store = FeatureStore.write(
        ...     "feats", {"text": torch.randn(4, 8)}, ids=["a", "b", "c", "d"],
        ...     labels=[0, 1, 0, 1], split=["train", "train", "test", "test"])
        >>> store.read("text", split="test").shape
        torch.Size([2, 8])
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._arrays: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------------------------ writing

    @classmethod
    def write(
        cls,
        path: str | Path,
        features: Mapping[str, Tensor | np.ndarray],
        ids: Sequence[str] | Sequence[int] | np.ndarray | Tensor,
        labels: Sequence[int] | np.ndarray | Tensor,
        split: str | Sequence[str] | np.ndarray,
        *,
        metadata: Mapping[str, Any] | None = None,
        dtype: str | None = None,
        overwrite: bool = False,
    ) -> FeatureStore:
        """Validate and write a store at ``path`` atomically, then open it.

        Args:
            path: the store folder (its parent is created).
            features: modality name → ``(N, D_m)`` floating array/tensor; all share ``N``.
            ids: ``N`` unique ids (ints or non-empty strings).
            labels: ``N`` integer class ids.
            split: a split name per row (``"train"``, ``"test"``, …) or one name for every row.
            metadata: JSON-serialisable description (source, backbone, preprocessing).
            dtype: convert every modality to this dtype first (``None``: keep each one's own).
            overwrite: replace an existing store at ``path``.

        Raises:
            FeatureStoreError: mismatched row counts, a non-floating or bfloat16 feature dtype, non-finite
                values, duplicate ids, non-integer labels, a missing split, a bad name, or an existing
                ``path`` without ``overwrite``.
        """
        target = Path(path)
        arrays, n = _features(features, dtype)
        id_arr, label_arr = _ids(ids, n), _labels(labels, n)
        codes, split_names = _split(split, n)
        try:
            meta_json = json.loads(json.dumps(dict(metadata or {})))
        except (TypeError, ValueError) as err:
            raise FeatureStoreError(f"metadata: not JSON-serialisable ({err})") from None
        if target.exists() and not overwrite:
            raise FeatureStoreError(f"{target}: already exists; pass overwrite=True (CLI: --overwrite)")
        manifest = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "num_rows": n,
            "modalities": {
                m: {"file": f"features-{m}.npy", "dtype": a.dtype.name, "shape": list(a.shape)}
                for m, a in arrays.items()
            },
            "ids_dtype": "int64" if id_arr.dtype.kind == "i" else "str",
            "splits": split_names,
            "split_counts": {s: int((codes == i).sum()) for i, s in enumerate(split_names)},
            "metadata": meta_json,
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            for m, a in arrays.items():
                _save_npy(tmp, manifest["modalities"][m]["file"], a)
            _save_npy(tmp, "ids.npy", id_arr)
            _save_npy(tmp, "labels.npy", label_arr)
            _save_npy(tmp, "split.npy", codes)
            with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            if target.exists():
                old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
                os.replace(target, old / "store")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.open(target)

    # ------------------------------------------------------------------------------------ reading

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        """Open the store at ``path`` and check its manifest against the files.

        Raises:
            FeatureStoreError: no manifest, another format or version, or a file whose shape or dtype
                differs from the manifest.
        """
        folder = Path(path)
        if not (folder / MANIFEST).is_file():
            raise FeatureStoreError(f"{folder}: not a feature store (no {MANIFEST})")
        with open(folder / MANIFEST, encoding="utf-8") as fh:
            manifest = json.load(fh)
        if manifest.get("format") != STORE_FORMAT or manifest.get("version") != STORE_VERSION:
            raise FeatureStoreError(
                f"{folder}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                f"expected {STORE_FORMAT!r} version {STORE_VERSION}"
            )
        store = cls(folder, manifest)
        n = store.num_rows
        for m, spec in manifest["modalities"].items():
            arr = store.array(m)
            if list(arr.shape) != [n, spec["shape"][1]] or arr.dtype.name != spec["dtype"]:
                raise FeatureStoreError(
                    f"{folder / spec['file']}: shape {arr.shape} dtype {arr.dtype}, manifest says "
                    f"{tuple(spec['shape'])} {spec['dtype']}"
                )
        for name in ("ids", "labels", "split"):
            arr = store._load(f"{name}.npy")
            if arr.shape != (n,):
                raise FeatureStoreError(f"{folder / (name + '.npy')}: shape {arr.shape}, expected ({n},)")
        return store

    def _load(self, file: str) -> np.ndarray:
        if file not in self._arrays:
            path = self.path / file
            if not path.is_file():
                raise FeatureStoreError(f"{path}: missing file of the feature store")
            self._arrays[file] = np.load(path, mmap_mode="r", allow_pickle=False)
        return self._arrays[file]

    @property
    def num_rows(self) -> int:
        """``N``, the number of examples."""
        return int(self.manifest["num_rows"])

    def __len__(self) -> int:
        return self.num_rows

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in the order they were written."""
        return tuple(self.manifest["modalities"])

    @property
    def dims(self) -> dict[str, int]:
        """Modality → feature dimension."""
        return {m: int(s["shape"][1]) for m, s in self.manifest["modalities"].items()}

    @property
    def dtypes(self) -> dict[str, str]:
        """Modality → stored dtype name."""
        return {m: str(s["dtype"]) for m, s in self.manifest["modalities"].items()}

    @property
    def split_names(self) -> tuple[str, ...]:
        """The split names present (sorted)."""
        return tuple(self.manifest["splits"])

    @property
    def metadata(self) -> dict[str, Any]:
        """The JSON metadata given at write time."""
        return dict(self.manifest["metadata"])

    @property
    def ids(self) -> np.ndarray:
        """``(N,)`` ids (a read-only memory map)."""
        return self._load("ids.npy")

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 class ids (a read-only memory map)."""
        return self._load("labels.npy")

    @property
    def split(self) -> np.ndarray:
        """``(N,)`` split name of each row."""
        return np.asarray(self.split_names)[self._load("split.npy")]

    def array(self, modality: str) -> np.ndarray:
        """The read-only memory-mapped ``(N, D)`` array of ``modality`` (nothing is read yet)."""
        if modality not in self.manifest["modalities"]:
            raise FeatureStoreError(f"modality: unknown {modality!r}; the store has {list(self.modalities)}")
        return self._load(self.manifest["modalities"][modality]["file"])

    def indices(self, split: str | Sequence[str] | None = None) -> np.ndarray:
        """Sorted int64 rows of ``split`` (a name or several; ``None``: every row).

        Raises:
            FeatureStoreError: a split name the store does not have.
        """
        if split is None:
            return np.arange(self.num_rows, dtype=np.int64)
        names = [split] if isinstance(split, str) else list(split)
        missing = [s for s in names if s not in self.split_names]
        if missing:
            raise FeatureStoreError(
                f"split: {missing[0]!r} not in the store {self.path} (it has {list(self.split_names)})"
            )
        codes = [self.split_names.index(s) for s in names]
        return np.flatnonzero(np.isin(self._load("split.npy"), codes)).astype(np.int64)

    def read(
        self,
        modality: str,
        split: str | Sequence[str] | None = None,
        *,
        rows: np.ndarray | Sequence[int] | None = None,
        dtype: torch.dtype | None = torch.float32,
    ) -> Tensor:
        """Copy the rows of ``split`` (or explicit ``rows``) of ``modality`` into a tensor.

        Args:
            modality: modality name.
            split: split name(s), ignored when ``rows`` is given.
            rows: explicit row indices.
            dtype: output dtype (``None``: the stored one).
        """
        arr = self.array(modality)
        idx = np.asarray(rows, dtype=np.int64) if rows is not None else self.indices(split)
        full = rows is None and split is None
        out = torch.from_numpy(np.array(arr if full else arr[idx]))
        return out if dtype is None else out.to(dtype)

    def iter_chunks(
        self, modality: str, chunk_size: int = 4096, split: str | Sequence[str] | None = None
    ) -> Iterator[tuple[np.ndarray, Tensor]]:
        """Yield ``(row_indices, features)`` blocks of at most ``chunk_size`` rows (float32 copies)."""
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise FeatureStoreError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
        idx = self.indices(split)
        for start in range(0, idx.size, chunk_size):
            part = idx[start : start + chunk_size]
            yield part, self.read(modality, rows=part)

    def to_dataset(
        self, split: str | Sequence[str] | None = None, modalities: Sequence[str] | None = None
    ) -> MultiViewDataset:
        """The rows of ``split`` as an in-memory float32 :class:`MultiViewDataset` (views = modalities)."""
        names = list(modalities) if modalities is not None else list(self.modalities)
        idx = self.indices(split)
        views = {m: self.read(m, rows=idx) for m in names}
        labels = torch.from_numpy(np.array(self.labels[idx]))
        return MultiViewDataset(views, labels, str(self.metadata.get("source", self.path.name)))

    def __repr__(self) -> str:
        dims = ", ".join(f"{m}: {d}" for m, d in self.dims.items())
        counts = ", ".join(f"{s}: {c}" for s, c in self.manifest["split_counts"].items())
        return f"FeatureStore({str(self.path)!r}, N={self.num_rows}, dims={{{dims}}}, splits={{{counts}}})"


# ------------------------------------------------------------------------------ bundled sources

#: Sources ``mmgeom features SOURCE OUT_DIR`` can write, with what they hold.
FEATURE_SOURCES: dict[str, str] = {
    "mfeat": "UCI Multiple Features: the six views of 2000 digits as modalities (raw, unstandardised), "
    "labels, a stratified train/val/test split (seed 0); one store in OUT_DIR",
    "fashion-text": "OUT_DIR/text: frozen all-MiniLM-L6-v2 features of 120 Fashion-MNIST class phrasings "
    "('text' = pooled, un-normalised; 'text_direction' = its direction; split train/test = held-out "
    "phrasings); OUT_DIR/images: the 70000 Fashion-MNIST images as 784 pixels in [0, 1], split train/test",
}


def list_feature_sources() -> list[str]:
    """Names accepted by :func:`write_feature_source`."""
    return sorted(FEATURE_SOURCES)


def write_feature_source(name: str, out: str | Path, *, overwrite: bool = False) -> dict[str, FeatureStore]:
    """Write the stores of a bundled source (see :data:`FEATURE_SOURCES`) under ``out``.

    Returns:
        Store name → the opened store (``{"mfeat": ...}`` or ``{"text": ..., "images": ...}``).

    Raises:
        ValueError: an unknown source name.
        DataUnavailableError: the package with the data or the backbone is missing (the message gives the
            install command).
    """
    from .split import stratified_split

    root = Path(out)
    if name == "mfeat":
        from .mfeat import load_mfeat

        data = load_mfeat()
        split = stratified_split(data.labels, seed=0)
        names = np.empty(len(data), dtype="<U5")
        for part in ("train", "val", "test"):
            names[split[part].numpy()] = part
        store = FeatureStore.write(
            root,
            data.views,
            ids=[f"digit{i:04d}" for i in range(len(data))],
            labels=data.labels,
            split=names,
            metadata={"source": "mfeat", "split_seed": 0, "standardised": False},
            overwrite=overwrite,
        )
        return {"mfeat": store}
    if name == "fashion-text":
        from ..studies.prompts import write_prompt_store

        return {
            "text": write_prompt_store(root / "text", overwrite),
            "images": write_fashion_image_store(root / "images", overwrite=overwrite),
        }
    raise ValueError(f"source: unknown name {name!r}; available: {list_feature_sources()}")


def write_fashion_image_store(
    path: str | Path,
    *,
    train_rows: int | None = None,
    test_rows: int | None = None,
    overwrite: bool = False,
) -> FeatureStore:
    """Fashion-MNIST images as ``pixels`` (784 values ``uint8 / 255``), labels and train/test split.

    Args:
        path: the store folder.
        train_rows: keep the first ``train_rows`` training images (``None``: all 60000).
        test_rows: keep the first ``test_rows`` test images (``None``: all 10000).
        overwrite: replace an existing store.
    """
    from .fashion_mnist import load_fashion_mnist

    limits = {"train": train_rows, "test": test_rows}
    parts = {s: tuple(t[: limits[s]] for t in load_fashion_mnist(s)) for s in ("train", "test")}
    pixels = torch.cat([x.reshape(len(x), -1) for x, _ in parts.values()]).float() / 255.0
    return FeatureStore.write(
        path,
        {"pixels": pixels},
        ids=[f"{s}{i:05d}" for s, (x, _) in parts.items() for i in range(len(x))],
        labels=torch.cat([y for _, y in parts.values()]),
        split=[s for s, (x, _) in parts.items() for _ in range(len(x))],
        metadata={"source": "fashion-mnist", "pixels": "uint8 / 255, row-major 28x28", "limits": limits},
        overwrite=overwrite,
    )
