"""Files of a store under construction: rows written with ``pwrite``, JSON replaced atomically, fsyncs.

Used by :class:`mmgeom.data.store_builder.StoreBuilder`; see its module docstring for what is made
durable when, and why.
"""

from __future__ import annotations

import ctypes
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .store_format import FeatureStoreError

__all__ = ["RowFile", "boot_id", "fsync_dir", "fsync_json", "replace_json", "save_npy"]

# Hand written rows to the kernel's writeback in steps of this many bytes (see RowFile.write_rows).
_KICK_BYTES = 64 << 20


def boot_id() -> str:
    """This boot's id (Linux), or ``""`` where unknown: unsynced rows of another boot are not trusted."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def replace_json(path: Path, obj: object) -> None:
    """Write ``path`` atomically against a killed process (no fsync: see mmgeom.data.store_builder)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (POSIX: fsync the directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_json(path: Path, obj: object) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _libc_sync_file_range() -> Any:
    """glibc's ``sync_file_range`` (Linux), or ``None``: Python's ``os`` module does not expose it."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages in the range, do not wait


def _start_writeback(fd: int, start: int, end: int) -> None:
    """Start writing ``[start, end)`` of ``fd`` to disk now, keeping the pages cached (advice only).

    ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` submits the dirty pages without waiting for them and,
    unlike ``posix_fadvise(DONTNEED)``, leaves them in the page cache, so a store read right after its
    import (training) is still served from memory, as a ``cp`` copy would be. It gives no durability
    by itself: the final fsync does.
    """
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, start, end - start, _SYNC_FILE_RANGE_WRITE)  # errors: the fsync reports


class RowFile:
    """A preallocated ``.npy`` file written row block by row block with ``pwrite``.

    Plain positional writes, not a memory map: pages of a shared map stay in the process's resident set
    until unmapped, which would grow memory with the store; written pages here live only in the page
    cache. The header is numpy's own (``open_memmap`` creates the file), so the bytes match ``np.save``.
    """

    def __init__(
        self,
        path: Path,
        dtype: str,
        shape: tuple[int, ...],
        *,
        create: bool,
        writeback: ThreadPoolExecutor | None = None,
    ) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        self.writeback = writeback
        self._pending: list[Future[None]] = []
        if create:
            arr = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
            del arr  # a sparse file: header + zero-length holes, nothing resident
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.row_bytes = row_bytes
        self.offset = path.stat().st_size - shape[0] * row_bytes
        if self.offset <= 0:
            raise FeatureStoreError(f"{path}: size {path.stat().st_size} does not fit {shape} {self.dtype}")
        self.fd: int | None = os.open(path, os.O_RDWR)
        self._kicked = 0  # bytes before this offset were handed to writeback (see write_rows)

    def write_rows(self, start: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype)
        assert self.fd is not None
        view = data.reshape(-1).view(np.uint8).data
        pos, done = self.offset + start * self.row_bytes, 0
        while done < len(view):  # pwrite may write less than asked
            done += os.pwrite(self.fd, view[done:], pos + done)
        end = pos + done
        if self.writeback is not None and end - self._kicked >= _KICK_BYTES:
            # Start writing the rows behind us to disk now, so the final fsync waits for little. The
            # call submits the writes synchronously, so a helper thread makes it while this one copies
            # the next block.
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self.writeback.submit(_start_writeback, self.fd, self._kicked, end))
            self._kicked = end

    def sync(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)

    def read_all(self) -> np.ndarray:
        # pwrite and read share the page cache: no fsync needed to read back what was written.
        return np.load(self.path, allow_pickle=False)

    def close(self) -> None:
        if self.fd is not None:
            for f in self._pending:  # the helper must be done with the descriptor before it closes
                f.result()
            self._pending = []
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
