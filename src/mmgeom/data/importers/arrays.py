"""Per-modality arrays: ``.npy`` (memory-mapped), ``.npz`` and ``.safetensors`` shards, concatenated in order.

Each modality is a list of shard files; shard ``k + 1``'s rows follow shard ``k``'s. A ``.npz`` or
``.safetensors`` file holding one array uses it; one holding several uses the array named like the
modality. ``.npy`` and ``.safetensors`` are read slice by slice (never whole); a ``.npz`` member is
compressed or zipped, so one shard's array is loaded at a time.

A C-ordered ``.npy`` shard is read with ``os.preadv`` straight into a buffer the source allocates once
and reuses for every block: one copy from the page cache, large sequential reads, and no pages of a
memory map left in the process's resident set (a map's pages count in RSS until released). A
modality whose ``.npy`` shards already hold the store's dtype (native byte order, C order, no conversion)
is not read into that buffer at all: its blocks are :class:`~.base.FileRows`, byte ranges that
:func:`~.base.run_import` checks in cache-sized steps and copies into the store inside the kernel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..store_check import release_pages
from ..store_files import read_exact
from ..store_format import FeatureStoreError
from .base import Block, FileRows, Source, check_float, file_fingerprint

__all__ = ["ArraysSource", "ShardedArray", "expand_shards"]


def _natural(path: Path) -> list[Any]:
    # img_emb_2.npy sorts before img_emb_10.npy, as the writer numbered them.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def expand_shards(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard files from a path, a glob (``emb/img_emb_*.npy``) or a list of either, in natural order.

    Raises:
        FeatureStoreError: a path or glob that matches no file.
    """
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    out: list[Path] = []
    for item in items:
        text = str(item)
        if any(c in text for c in "*?["):
            base = Path(text).parent
            found = sorted(base.glob(Path(text).name), key=_natural)
            if not found:
                raise FeatureStoreError(f"{text}: no file matches")
            out.extend(found)
        else:
            if not Path(text).is_file():
                raise FeatureStoreError(f"{text}: no such file")
            out.append(Path(text))
    return out


class _Shard:
    """One file's ``(rows, dim)`` array, opened lazily."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        suffix = path.suffix.lower()
        self._loaded: np.ndarray | None = None
        self.data_offset: int | None = None
        self._fd: int | None = None
        if suffix == ".npy":
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as err:
                raise FeatureStoreError(f"{path}: not a readable .npy array ({err})") from None
            self.shape, self.dtype = tuple(arr.shape), arr.dtype
            if arr.flags.c_contiguous and isinstance(arr, np.memmap):
                # Rows are contiguous after the header: read them with preadv, keep no map.
                self.data_offset = int(arr.offset)
                del arr
            else:  # Fortran order (or an empty array): slice the map
                self.data_offset = None
                self._loaded = arr
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                self.member = self._pick(list(z.files))
                arr = z[self.member]  # the header is inside the zip member: read it once for the shape
                self.shape, self.dtype = tuple(arr.shape), arr.dtype
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as f:
                self.member = self._pick(list(f.keys()))
                sl = f.get_slice(self.member)
                self.shape, dt = tuple(sl.get_shape()), sl.get_dtype()
            table = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
            if dt not in table:
                raise FeatureStoreError(
                    f"{path}: array {self.member!r} has dtype {dt}, expected F16, F32 or F64 "
                    "(convert bfloat16 to float32 first)"
                )
            self.dtype = np.dtype(table[dt])
        else:
            raise FeatureStoreError(
                f"{path}: unknown array format {suffix!r}; expected .npy, .npz or .safetensors"
            )
        if len(self.shape) != 2 or self.shape[1] < 1:
            raise FeatureStoreError(f"{path}: shape {self.shape}, expected (rows, dim)")
        check_float(np.empty(0, self.dtype), str(path))

    def _pick(self, names: list[str]) -> str:
        if len(names) == 1:
            return names[0]
        if self.key in names:
            return self.key
        raise FeatureStoreError(f"{self.path}: holds arrays {names}; expected one, or one named {self.key!r}")

    def read_into(self, a: int, out: np.ndarray) -> None:
        """Rows ``a .. a + len(out)`` into ``out`` (C-contiguous, this shard's dtype and width)."""
        if self.data_offset is None:
            out[...] = self.read(a, a + len(out))
            return
        view = out.reshape(-1).view(np.uint8).data
        read_exact(self.fd(), view, self.byte_offset(a), str(self.path))

    def fd(self) -> int:
        """A read-only descriptor of the file, opened once (closed by :meth:`release`)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def byte_offset(self, row: int) -> int:
        assert self.data_offset is not None
        return self.data_offset + row * self.shape[1] * self.dtype.itemsize

    def read(self, a: int, b: int) -> np.ndarray:
        if self.data_offset is not None:
            out = np.empty((b - a, self.shape[1]), self.dtype)
            self.read_into(a, out)
            return out
        if self._loaded is not None:
            release_pages(self._loaded)  # the previous block was written already
            return np.asarray(self._loaded[a:b])
        if self.path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(self.path), framework="np") as f:
                return np.asarray(f.get_slice(self.member)[a:b])
        with np.load(self.path, allow_pickle=False) as z:
            self._loaded = z[self.member]
        return np.asarray(self._loaded[a:b])

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path.suffix.lower() == ".npz":
            self._loaded = None
        elif self._loaded is not None:
            release_pages(self._loaded)


class ShardedArray:
    """Several shard files of one modality read as one ``(N, D)`` array, in row ranges."""

    def __init__(self, paths: Sequence[Path], key: str) -> None:
        self.shards = [_Shard(p, key) for p in paths]
        dims = {s.shape[1] for s in self.shards}
        if len(dims) != 1:
            first = self.shards[0]
            other = next(s for s in self.shards if s.shape[1] != first.shape[1])
            raise FeatureStoreError(
                f"{other.path}: dim {other.shape[1]}, but {first.path} has {first.shape[1]}; "
                "the shards of one modality must share their width"
            )
        self.dim = dims.pop()
        kinds = {s.dtype for s in self.shards}
        self.dtype = np.result_type(*kinds)
        self.offsets = np.cumsum([0] + [s.shape[0] for s in self.shards])
        self.num_rows = int(self.offsets[-1])

    def locate(self, row: int) -> str:
        k = int(np.searchsorted(self.offsets, row, side="right")) - 1
        k = min(max(k, 0), len(self.shards) - 1)
        return f"{self.shards[k].path}, row {row - int(self.offsets[k])}"

    def _spans(self, a: int, b: int) -> Iterator[tuple[_Shard, int, int, int]]:
        """``(shard, first, stop, at)`` for each shard overlapping rows ``a .. b``: its local rows
        ``first .. stop`` are rows ``at ..`` of the array. Shards wholly before ``a`` are released (rows
        are read in order, so they are done with)."""
        for k, shard in enumerate(self.shards):
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            if hi <= a:
                shard.release()
            elif lo < b:
                yield shard, max(a, lo) - lo, min(b, hi) - lo, max(a, lo)

    def read(self, a: int, b: int) -> np.ndarray:
        """Rows ``a .. b`` (crossing shard boundaries as needed)."""
        parts = [
            s.read(first, stop).astype(self.dtype, copy=False) for s, first, stop, _ in self._spans(a, b)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def copyable(self, dtype: np.dtype) -> bool:
        """Whether every shard holds C-ordered ``.npy`` rows of exactly ``dtype`` (bytes copy as they are)."""
        return all(s.data_offset is not None and s.dtype == dtype for s in self.shards)

    def file_rows(self, a: int, b: int) -> FileRows:
        """Rows ``a .. b`` as byte ranges of the shard files (see :meth:`copyable`)."""
        parts = [
            (shard.fd(), shard.byte_offset(first), stop - first, str(shard.path))
            for shard, first, stop, _ in self._spans(a, b)
        ]
        return FileRows(parts, (b - a, self.dim), self.dtype)

    def read_into(self, a: int, out: np.ndarray) -> np.ndarray:
        """Rows ``a .. a + len(out)`` into the preallocated ``out`` (dtype :attr:`dtype`); returns ``out``."""
        for shard, first, stop, at in self._spans(a, a + len(out)):
            part = out[at - a : at - a + stop - first]
            if shard.dtype == self.dtype:
                shard.read_into(first, part)
            else:  # shards of mixed precision: the widest wins
                part[...] = shard.read(first, stop)
        return out


class ArraysSource(Source):
    """Modality → shard list, plus optional ``.npy`` ids / labels / split arrays.

    Args:
        modalities: modality → a path, glob or list of shard paths.
        ids, labels, split: optional ``(N,)`` ``.npy`` files (ints or strings).
        dtype: store dtype of every modality (``None``: the shards' own).
        kernel_copy: copy the rows of modalities whose ``.npy`` shards match the store byte for byte
            inside the kernel (module docstring); ``False``: read and write them like the others (the
            store's bytes are the same either way).

    Raises:
        FeatureStoreError: no match for a path, mismatched row counts or widths (naming the files).
    """

    def __init__(
        self,
        modalities: Mapping[str, str | Path | Sequence[str | Path]],
        *,
        ids: str | Path | None = None,
        labels: str | Path | None = None,
        split: str | Path | None = None,
        dtype: str | None = None,
        kernel_copy: bool = True,
    ) -> None:
        if not modalities:
            raise FeatureStoreError("modalities: expected at least one modality=PATH")
        self.arrays = {m: ShardedArray(expand_shards(spec), m) for m, spec in modalities.items()}
        counts = {m: a.num_rows for m, a in self.arrays.items()}
        first = next(iter(counts))
        for m, n in counts.items():
            if n != counts[first]:
                raise FeatureStoreError(
                    f"modality {m!r} ({self.arrays[m].shards[0].path} ...): {n} rows, but {first!r} has "
                    f"{counts[first]}; every modality needs one row per example"
                )
        self.num_rows = counts[first]
        self.specs = {m: (a.dim, dtype or a.dtype.name) for m, a in self.arrays.items()}
        self.copied = {
            m for m, a in self.arrays.items() if kernel_copy and a.copyable(np.dtype(self.specs[m][1]))
        }
        self.columns: dict[str, np.ndarray] = {}
        for name, path in (("ids", ids), ("labels", labels), ("split", split)):
            if path is None:
                continue
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.shape != (self.num_rows,):
                raise FeatureStoreError(f"{path}: {name} of shape {arr.shape}, expected ({self.num_rows},)")
            self.columns[name] = arr
        self._files = [s.path for a in self.arrays.values() for s in a.shards]
        self._extra = [Path(p) for p in (ids, labels, split) if p is not None]

    def read_features(self, a: int, b: int, chunk_rows: int) -> dict[str, np.ndarray | FileRows]:
        """Rows ``a .. b`` of every modality, in buffers reused from block to block.

        The arrays returned are overwritten by the next call: the import writes a block before it reads
        the next, so one buffer per modality bounds memory and spares an allocation per block.
        Modalities in :attr:`copied` come as :class:`FileRows`, valid until the next call too.
        """
        bufs = getattr(self, "_buffers", None)
        if bufs is None or any(len(v) < b - a for v in bufs.values()):
            rows = max(chunk_rows, b - a)
            read = (m for m in self.arrays if m not in self.copied)  # copied modalities need no buffer
            bufs = {m: np.empty((rows, self.arrays[m].dim), self.arrays[m].dtype) for m in read}
            self._buffers = bufs
        return {
            m: arr.file_rows(a, b) if m in self.copied else arr.read_into(a, bufs[m][: b - a])
            for m, arr in self.arrays.items()
        }

    def blocks(self, start: int, chunk_rows: int) -> Iterator[Block]:
        for a in range(start, self.num_rows, chunk_rows):
            b = min(a + chunk_rows, self.num_rows)
            cols = {k: np.asarray(v[a:b]) for k, v in self.columns.items()}
            yield Block(
                a,
                self.read_features(a, b, chunk_rows),
                ids=cols.get("ids"),
                labels=cols.get("labels"),
                split=cols.get("split"),
            )

    def locate(self, modality: str, row: int) -> str:
        return self.arrays[modality].locate(row)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "arrays",
            "files": file_fingerprint(self._files + self._extra),
            "specs": {m: list(s) for m, s in self.specs.items()},
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "source": "arrays",
            "files": {m: [str(s.path) for s in a.shards] for m, a in self.arrays.items()},
        }
