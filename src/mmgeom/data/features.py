"""On-disk feature stores: frozen-backbone features written once, read memory-mapped in chunks.

A store is a folder of ``.npy`` files and a ``manifest.json`` (layout: :mod:`mmgeom.data.store_format`).

A frozen backbone runs once (``FeatureStore.write``, or ``mmgeom features SOURCE OUT_DIR`` for the bundled
sources); training then reads features with :meth:`FeatureStore.read` or :meth:`FeatureStore.iter_chunks`
without loading whole arrays. Writing is all or nothing: everything goes into a temporary folder next to
the target, which is renamed into place after every file is flushed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .multiview import MultiViewDataset
from .store_check import check_rows, check_split_codes, load_manifest, load_npy
from .store_format import MANIFEST, FeatureStoreError
from .store_writer import write_store

__all__ = ["FeatureStore", "FeatureStoreError"]


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
        self._fds: dict[str, int] = {}

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):  # already closed
                os.close(fd)

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
        masks: Mapping[str, np.ndarray | Tensor | Sequence[bool]] | None = None,
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
            masks: modality → ``(N,)`` bool presence (True = present); rows where a modality is absent
                are kept (stored as zeros, any NaN there is ignored). ``None``: every modality everywhere.
            overwrite: replace an existing store at ``path`` (never a folder that is not a feature store).

        Raises:
            FeatureStoreError: mismatched row counts, a non-floating or bfloat16 feature dtype, non-finite
                values in a present row (naming row and column), duplicate ids, non-integer labels, a
                missing split, a bad name, a bad mask or a row with no modality present, an existing
                ``path`` without ``overwrite``, or an existing ``path`` that is not a feature store.
        """
        target = write_store(
            path,
            features,
            ids,
            labels,
            split,
            metadata=metadata,
            dtype=dtype,
            masks=masks,
            overwrite=overwrite,
        )
        return cls.open(target)

    # ------------------------------------------------------------------------------------ reading

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        """Open the store at ``path`` and check its manifest against the files.

        Raises:
            FeatureStoreError: no manifest, another format or version, a malformed manifest key, a
                truncated or missing ``.npy`` file, a file whose shape or dtype differs from the manifest,
                or a split code out of range (each names the file and the key or row).
        """
        folder = Path(path)
        if not (folder / MANIFEST).is_file():
            raise FeatureStoreError(f"{folder}: not a feature store (no {MANIFEST})")
        manifest = load_manifest(folder / MANIFEST)
        store = cls(folder, manifest)
        n = store.num_rows
        for m, spec in manifest["modalities"].items():
            arr = store.array(m)
            if list(arr.shape) != [n, spec["shape"][1]] or arr.dtype.name != spec["dtype"]:
                raise FeatureStoreError(
                    f"{folder / spec['file']}: shape {arr.shape} dtype {arr.dtype}, manifest says "
                    f"{tuple(spec['shape'])} {spec['dtype']}"
                )
            if "mask" in spec:
                mask = store._load(spec["mask"])
                if mask.shape != (n,) or mask.dtype != np.bool_:
                    raise FeatureStoreError(
                        f"{folder / spec['mask']}: shape {mask.shape} dtype {mask.dtype}, "
                        f"expected ({n},) bool"
                    )
        kinds = {"ids": "iU", "labels": "i", "split": "u"}
        for name, kind in kinds.items():
            arr = store._load(f"{name}.npy")
            if arr.shape != (n,) or arr.dtype.kind not in kind:
                raise FeatureStoreError(
                    f"{folder / (name + '.npy')}: shape {arr.shape} dtype {arr.dtype}, expected ({n},) "
                    f"{'int64 or str' if name == 'ids' else 'int64' if name == 'labels' else 'uint8'}"
                )
        check_split_codes(
            folder / "split.npy", store._load("split.npy"), manifest["splits"], manifest["split_counts"]
        )
        return store

    def _load(self, file: str) -> np.ndarray:
        if file not in self._arrays:
            self._arrays[file] = load_npy(self.path / file)
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

    def chosen_modalities(self, modalities: Sequence[str] | None) -> list[str]:
        """``modalities`` checked against the store (all of them when None).

        Raises:
            ValueError: a name not in the store, a repeated name or none at all (naming the store).
        """
        names = list(modalities) if modalities is not None else list(self.modalities)
        for m in names:
            if m not in self.modalities:
                raise ValueError(
                    f"{self.path}: modalities: {m!r} is not in the store; "
                    f"expected some of {list(self.modalities)}"
                )
        if not names or len(set(names)) != len(names):
            raise ValueError(
                f"{self.path}: modalities: expected at least one name, all distinct; got {names}"
            )
        return names

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

    @property
    def has_masks(self) -> bool:
        """Whether some modality is absent from some row (a presence mask is stored)."""
        return any("mask" in s for s in self.manifest["modalities"].values())

    def present(self, modality: str, rows: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """``(len(rows),)`` bool: whether ``modality`` is present in each row (all rows when ``None``).

        A modality without a stored mask is present in every row. Absent rows hold zeros.
        """
        if modality not in self.manifest["modalities"]:
            raise FeatureStoreError(f"modality: unknown {modality!r}; the store has {list(self.modalities)}")
        spec = self.manifest["modalities"][modality]
        idx = None if rows is None else check_rows(rows, self.num_rows)
        size = self.num_rows if idx is None else idx.size
        if "mask" not in spec:
            return np.ones(size, dtype=bool)
        mask = self._load(spec["mask"])
        return np.array(mask if idx is None else mask[idx])

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
        idx = check_rows(rows, self.num_rows) if rows is not None else self.indices(split)
        full = rows is None and split is None
        out = torch.from_numpy(np.array(arr if full else arr[idx]))
        return out if dtype is None else out.to(dtype)

    def take(self, modality: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` of ``modality`` in the stored dtype, read with ``os.preadv`` (no memory map).

        Reading from a memory map leaves every touched page mapped into the process (and the kernel maps
        up to 16 neighbouring pages per fault), so random-row batches grow the resident set until the
        pages are released; ``preadv`` copies the bytes from the page cache into ``out`` and maps
        nothing. Runs of consecutive rows are read in one call, so a sorted block of rows costs a few
        large sequential reads.

        Args:
            modality: modality name.
            rows: ``(b,)`` int64 row indices (any order; sorted is fastest).
            out: optional ``(b, D)`` C-contiguous array of the stored dtype to fill (a reused buffer).

        Returns:
            ``out`` (or a new array) holding the rows in the order asked.

        Raises:
            FeatureStoreError: an unknown modality, a bad row index, an ``out`` of the wrong shape/dtype.
        """
        arr = self.array(modality)  # validated header, shape and dtype
        idx = check_rows(rows, self.num_rows)
        dim, dtype = int(arr.shape[1]), arr.dtype
        if out is None:
            out = np.empty((idx.size, dim), dtype)
        elif out.shape != (idx.size, dim) or out.dtype != dtype or not out.flags.c_contiguous:
            raise FeatureStoreError(
                f"out: expected a C-contiguous ({idx.size}, {dim}) {dtype} array, got {out.dtype} {out.shape}"
            )
        if idx.size == 0:
            return out
        offset = getattr(arr, "offset", None)
        if offset is None or not arr.flags.c_contiguous:  # not a plain C-ordered map: slice it
            out[...] = arr[idx]
            return out
        file = self.manifest["modalities"][modality]["file"]
        fd = self._fds.get(file)
        if fd is None:
            fd = self._fds[file] = os.open(self.path / file, os.O_RDONLY)
        row_bytes = dim * dtype.itemsize
        buf = out.reshape(-1).view(np.uint8).data
        # Runs of consecutive rows: one read each.
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks]).tolist()
        ends = np.concatenate([breaks, [idx.size]]).tolist()
        first_rows = idx[starts].tolist()
        for a, b, r in zip(starts, ends, first_rows, strict=True):
            view, pos, done = buf[a * row_bytes : b * row_bytes], int(offset) + r * row_bytes, 0
            while done < len(view):  # preadv may return fewer bytes than asked
                got = os.preadv(fd, [view[done:]], pos + done)
                if got == 0:
                    raise FeatureStoreError(f"{self.path / file}: ends before row {r + b - a - 1}")
                done += got
        return out

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
