"""What every importer produces (row blocks of a :class:`Source`) and the loop that writes them.

A source knows its row count and each modality's ``(dim, dtype)`` before reading a row, reads rows in
order from any starting row (so an interrupted import resumes without re-reading what is done), and can
say which file and row a store row came from (so a bad value is reported where the user can fix it).

A source may hand over a modality's rows as :class:`FileRows` (byte ranges of files that already hold
them in the store's dtype, width and C order) instead of values: :func:`run_import` then checks them
by reading the file in cache-sized steps and copies each checked step into the store inside the
kernel (``copy_file_range``), so the bytes never pass through a block-sized buffer.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..split import DEFAULT_FRACTIONS
from ..store_builder import StoreBuilder
from ..store_files import read_exact
from ..store_format import FEATURE_DTYPES, FeatureStoreError

__all__ = ["Block", "FileRows", "Source", "any_nonfinite", "encode_texts", "run_import"]


@dataclass
class FileRows:
    """A block's rows of one modality as bytes of open files, already in the store's dtype and width.

    Attributes:
        parts: ``(fd, byte offset, rows, file name)`` in row order; the source keeps each ``fd`` open
            until it is asked for a later block.
        shape: ``(rows, D)`` of the whole block.
        dtype: the rows' dtype (native byte order, equal to the store's).
    """

    parts: list[tuple[int, int, int, str]]
    shape: tuple[int, int]
    dtype: np.dtype


@dataclass
class Block:
    """Rows ``start .. start + len(ids)`` of a source.

    Attributes:
        start: first row.
        features: modality → ``(b, D)`` float values (absent rows: any finite values, e.g. zeros), or
            :class:`FileRows` (every row present).
        present: modality → ``(b,)`` bool; a modality not named is present in every row.
        ids: ``(b,)`` int64 or str ids; ``None``: the row numbers.
        labels: ``(b,)`` int class ids or str class names (``-1``/``""``: none); ``None``: no labels.
        split: ``(b,)`` split names (``""``: none); ``None``: no split column.
    """

    start: int
    features: dict[str, np.ndarray | FileRows]
    present: dict[str, np.ndarray] = field(default_factory=dict)
    ids: np.ndarray | None = None
    labels: np.ndarray | None = None
    split: np.ndarray | None = None

    def __len__(self) -> int:
        return int(next(iter(self.features.values())).shape[0])


class Source(abc.ABC):
    """Rows to import (see the module docstring)."""

    num_rows: int
    specs: dict[str, tuple[int, str]]

    @abc.abstractmethod
    def blocks(self, start: int, chunk_rows: int) -> Iterator[Block]:
        """Blocks of at most ``chunk_rows`` rows, in order, from row ``start`` to the end."""

    @abc.abstractmethod
    def locate(self, modality: str, row: int) -> str:
        """Where store row ``row`` of ``modality`` came from (``"FILE, row R"``)."""

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """JSON description of the input (paths, sizes, modification times, options)."""

    def metadata(self) -> dict[str, Any]:
        """What the store's metadata records about the source."""
        return {}


def file_fingerprint(paths: Sequence[Path]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of each file: a changed input restarts an import instead of resuming it."""
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def encode_texts(encoder: Any, texts: Sequence[str | None], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode the non-missing texts in one batched call: ``(features (b, dim), present (b,))``."""
    present = np.asarray([t is not None for t in texts], dtype=bool)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if present.any():
        pooled = encoder.encode([t for t in texts if t is not None]).pooled
        out[present] = pooled.numpy() if hasattr(pooled, "numpy") else np.asarray(pooled)
    return out, present


def check_float(arr: np.ndarray, where: str) -> None:
    """A feature array must hold floating values the store can keep."""
    if arr.dtype.name not in FEATURE_DTYPES:
        raise FeatureStoreError(
            f"{where}: dtype {arr.dtype}, expected floating features ({', '.join(FEATURE_DTYPES)})"
        )


_EXPONENT = {
    np.dtype(np.float16): (np.uint16, 0x7C00),
    np.dtype(np.float32): (np.uint32, 0x7F800000),
    np.dtype(np.float64): (np.uint64, 0x7FF0000000000000),
}
_SIGNED = {np.uint16: np.int16, np.uint32: np.int32, np.uint64: np.int64}
# Elements per step of the check: 512 KB of float16, 1 MB of float32, so the second reduction finds the
# step in the L2 cache; smaller steps pay numpy's per-call overhead more often for nothing.
_STEP = 1 << 18


def any_nonfinite(x: np.ndarray) -> bool:
    """Whether ``x`` holds a NaN or Inf anywhere: two read-only reductions per cache-sized step.

    IEEE 754 keeps the exponent in the bits just below the sign; a value is NaN or Inf iff they are all
    ones. Read as a signed integer, a value with the sign bit clear is non-finite iff it is
    ``>= exponent mask`` (e.g. ``0x7C00`` for float16); read as an unsigned integer, one with the sign
    bit set is non-finite iff it is ``>= sign | exponent mask`` (``0xFC00``), since every pattern above
    has the sign and all exponent bits set. So the signed maximum and the unsigned maximum of a step
    decide it, with no masked copy written; the exact rows are found only when this says there is
    something to find (:func:`nonfinite_rows`).
    """
    bits = _EXPONENT.get(x.dtype)
    if bits is None or not x.flags.c_contiguous:
        return not bool(np.isfinite(x).all())
    utype, exp = bits
    flat = x.reshape(-1).view(utype)
    signed = flat.view(_SIGNED[utype])
    width = 8 * flat.itemsize
    pos_top = _SIGNED[utype](exp)  # sign clear, exponent all ones: +Inf, the smallest of these NaN/Inf
    neg_top = utype(exp | (1 << (width - 1)))  # sign set, exponent all ones: -Inf
    for i in range(0, flat.size, _STEP):
        if signed[i : i + _STEP].max() >= pos_top or flat[i : i + _STEP].max() >= neg_top:
            return True
    return False


def nonfinite_rows(x: np.ndarray) -> np.ndarray:
    """``(b,)`` bool: rows holding a NaN or Inf.

    For float16/float32 the exponent bits are tested directly (all ones <=> NaN or Inf, IEEE 754), which
    is exact and several times faster than ``np.isfinite`` on float16, which numpy emulates in software.
    """
    bits = _EXPONENT.get(x.dtype)
    if bits is None or not x.flags.c_contiguous:
        return ~np.isfinite(x).all(axis=1)
    utype, exp = bits
    u = x.view(utype)
    # The largest masked exponent per row equals the all-ones pattern iff some value is NaN/Inf.
    return np.bitwise_and(u, utype(exp)).max(axis=1) == utype(exp)


def _raise_nonfinite(source: Source, m: str, row: int, x: np.ndarray) -> None:
    col = int(np.flatnonzero(~np.isfinite(x))[0])
    raise FeatureStoreError(f"{source.locate(m, row)}, column {col}: modality {m!r} has a NaN or Inf value")


# Bytes of a FileRows part read, checked and copied at a time: small enough that the step is still in
# the CPU cache when the kernel copies it, large enough that the two system calls per step are cheap.
_COPY_STEP = 1 << 20


def _copy_checked(source: Source, builder: StoreBuilder, m: str, start: int, rows: FileRows) -> None:
    """Check ``rows`` for NaN/Inf step by step and copy each checked step into the store.

    A step is copied only after it was checked, and the block counts as done only when
    :meth:`StoreBuilder.write` records it afterwards: rows that were copied but not both checked and
    recorded are redone by a resumed import.
    """
    dim, itemsize = rows.shape[1], rows.dtype.itemsize
    row_bytes = dim * itemsize
    step = max(1, _COPY_STEP // row_bytes)
    scratch = np.empty(step * dim, rows.dtype)
    raw = scratch.view(np.uint8).data
    r = start
    for fd, pos, n, where in rows.parts:
        for a in range(0, n, step):
            k = min(step, n - a)
            read_exact(fd, raw[: k * row_bytes], pos + a * row_bytes, where)
            x = scratch[: k * dim].reshape(k, dim)
            if any_nonfinite(x):
                bad = int(np.flatnonzero(nonfinite_rows(x))[0])
                _raise_nonfinite(source, m, r + bad, x[bad])
            builder.copy_rows(m, r, fd, pos + a * row_bytes, k * row_bytes, where)
            r += k


def _check_block(source: Source, block: Block, dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    b = len(block)
    present: dict[str, np.ndarray] = {}
    for m, (dim, _) in source.specs.items():
        x = block.features[m]
        if tuple(x.shape) != (b, dim):
            raise FeatureStoreError(
                f"{source.locate(m, block.start)}: modality {m!r}: shape {x.shape}, expected ({b}, {dim})"
            )
        if isinstance(x, FileRows):  # checked while it is copied (_copy_checked)
            if x.dtype != np.dtype(dtypes[m]):
                raise FeatureStoreError(
                    f"{source.locate(m, block.start)}: dtype {x.dtype}, store {dtypes[m]}"
                )
            present[m] = np.ones(b, dtype=bool)
            continue
        keep = block.present.get(m)
        keep = np.ones(b, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        bad = nonfinite_rows(x) & keep if any_nonfinite(x) else None  # fast path: one fused pass
        if bad is not None and bad.any():
            row = int(np.flatnonzero(bad)[0])
            _raise_nonfinite(source, m, block.start + row, x[row])
        if not keep.all():
            x = np.where(keep[:, None], x, 0)
        block.features[m] = x.astype(dtypes[m], copy=False)
        present[m] = keep
    return present


def run_import(
    source: Source,
    target: str | Path,
    *,
    chunk_rows: int = 16384,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    commit_seconds: float = 2.0,
    durable: bool = True,
) -> Path:
    """Write ``source`` as a feature store at ``target``: chunked, resumable, atomic.

    Args:
        source: the rows (an importer from :mod:`mmgeom.data.importers`).
        target: the store folder.
        chunk_rows: rows per block (memory is about ``chunk_rows`` rows of every modality).
        fractions: ``(train, val, test)`` of the seeded split written when the source has no split column.
        seed: split seed.
        overwrite: replace an existing store at ``target``.
        progress: show a progress bar on stderr.
        commit_seconds: how often finished rows are recorded for a resume.
        durable: fsync the finished store before renaming it into place (a store that exists survives
            a power cut). ``False`` (``mmgeom import --no-sync``): no fsync, as ``cp``; the kernel writes
            the store back later, and an operating-system crash or power cut before then can lose or
            corrupt a finished store. A killed process loses nothing either way.

    Returns:
        The store folder.

    Raises:
        FeatureStoreError: a bad value (naming file, row and column) or target.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise FeatureStoreError(f"chunk_rows: expected an integer >= 1, got {chunk_rows!r}")
    from tqdm.auto import tqdm

    options = {"fractions": list(fractions), "seed": seed, "chunk_rows": chunk_rows}
    fingerprint = {"source": source.fingerprint(), "options": options}
    builder = StoreBuilder(
        target,
        source.num_rows,
        source.specs,
        fingerprint,
        overwrite=overwrite,
        commit_seconds=commit_seconds,
        durable=durable,
    )
    dtypes = {m: t for m, (_, t) in source.specs.items()}
    with tqdm(
        total=source.num_rows, initial=builder.rows_done, unit="row", unit_scale=True, disable=not progress
    ) as bar:
        for block in source.blocks(builder.rows_done, chunk_rows):
            present = _check_block(source, block, dtypes)
            features: dict[str, np.ndarray | None] = {}
            for m, x in block.features.items():
                if isinstance(x, FileRows):
                    _copy_checked(source, builder, m, block.start, x)
                    features[m] = None  # in place already
                else:
                    features[m] = x
            b = len(block)
            rows = np.arange(block.start, block.start + b, dtype=np.int64)
            builder.write(
                block.start,
                features,
                present,
                rows if block.ids is None else np.asarray(block.ids),
                np.full(b, -1, np.int64) if block.labels is None else np.asarray(block.labels),
                np.zeros(b, "<U1") if block.split is None else np.asarray(block.split, dtype=str),
            )
            bar.update(b)
    return builder.finalise(metadata=source.metadata(), fractions=fractions, seed=seed)
