"""Files of a store under construction: rows written with ``pwrite``, JSON replaced atomically, fsyncs.

Used by :class:`mmgeom.data.store_builder.StoreBuilder`; see its module docstring for what is made
durable when, and why.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from .store_format import FeatureStoreError

__all__ = [
    "RowFile",
    "boot_id",
    "copy_range",
    "fsync_dir",
    "fsync_json",
    "read_exact",
    "replace_json",
    "save_npy",
]

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


def fsync_dir(path: Path, durable: bool = True) -> None:
    """Make a rename inside ``path`` durable (POSIX: fsync the directory); nothing when not ``durable``."""
    if durable:
        _io.fsync_dir(path)


def fsync_json(path: Path, obj: object, durable: bool = True) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_npy(path: Path, arr: np.ndarray, durable: bool = True) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())


def read_exact(fd: int, out: memoryview, pos: int, where: str) -> None:
    """Fill ``out`` with the bytes of ``fd`` from ``pos`` on (``preadv`` may return fewer than asked).

    Raises:
        FeatureStoreError: the file ends first (``where`` names it).
    """
    done = 0
    while done < len(out):
        got = os.preadv(fd, [out[done:]], pos + done)
        if got == 0:
            raise FeatureStoreError(f"{where}: ends early (truncated while importing?)")
        done += got


# errno values meaning "this kernel / filesystem pair cannot copy in the kernel": try the next way.
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ETXTBSY}
# The ways still worth trying in this process; one that failed as unsupported is not tried again.
_COPY_WAYS = ["copy_file_range", "sendfile"]


def _copy_step(way: str, src: int, src_pos: int, dst: int, dst_pos: int, n: int) -> int:
    if way == "copy_file_range":
        return os.copy_file_range(src, dst, n, src_pos, dst_pos)
    os.lseek(dst, dst_pos, os.SEEK_SET)  # sendfile writes at the output's own file position
    return os.sendfile(dst, src, src_pos, n)


def copy_range(src: int, src_pos: int, dst: int, dst_pos: int, nbytes: int, where: str) -> None:
    """Copy ``nbytes`` from ``src`` at ``src_pos`` to ``dst`` at ``dst_pos`` inside the kernel.

    ``os.copy_file_range`` moves the bytes page cache to page cache (or shares the blocks, on
    filesystems that clone) without passing them through this process; where the kernel or filesystem
    pair does not support it (``EXDEV`` across filesystems, ``ENOSYS``, ``EOPNOTSUPP``, ``EINVAL``)
    ``os.sendfile`` is tried, then plain ``pread`` + ``pwrite``. The bytes written are the same whichever
    way copied them (see ``copy_file_range(2)``, ``sendfile(2)``).

    Raises:
        FeatureStoreError: the source ends before ``src_pos + nbytes`` (``where`` names it).
    """
    done = 0
    while done < nbytes:
        got = -1
        while got < 0 and _COPY_WAYS:
            try:
                got = _copy_step(_COPY_WAYS[0], src, src_pos + done, dst, dst_pos + done, nbytes - done)
            except OSError as err:
                if err.errno not in _UNSUPPORTED:
                    raise
                del _COPY_WAYS[0]  # unsupported here: never try it again in this process
        if got < 0:  # neither kernel copy works here: through a user-space buffer
            data = os.pread(src, min(nbytes - done, 8 << 20), src_pos + done)
            got = len(data)
            view, put = memoryview(data), 0
            while put < got:
                put += os.pwrite(dst, view[put:], dst_pos + done + put)
        if got == 0:
            raise FeatureStoreError(f"{where}: ends early (truncated while importing?)")
        done += got


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
        durable: bool = True,
    ) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        self.writeback, self.durable = writeback, durable
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
        self._written(pos + done)

    def copy_rows(self, start: int, src: int, src_pos: int, nbytes: int, where: str) -> None:
        """Rows from ``start`` on: ``nbytes`` copied in the kernel from ``src`` at ``src_pos``.

        The caller vouches that the source bytes are rows of this file's dtype and width, in C order.
        """
        assert self.fd is not None
        if nbytes % self.row_bytes:
            raise FeatureStoreError(f"{where}: {nbytes} bytes is not a whole number of rows")
        pos = self.offset + start * self.row_bytes
        copy_range(src, src_pos, self.fd, pos, nbytes, where)
        self._written(pos + nbytes)

    def _written(self, end: int) -> None:
        assert self.fd is not None
        if self.writeback is not None and end - self._kicked >= _KICK_BYTES:
            # Start writing the rows behind us to disk now, so the final fsync waits for little. The
            # call submits the writes synchronously, so a helper thread makes it while this one copies
            # the next block.
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self.writeback.submit(_start_writeback, self.fd, self._kicked, end))
            self._kicked = end

    def sync(self) -> None:
        if self.fd is not None and self.durable:
            os.fsync(self.fd)

    def read_all(self) -> np.ndarray:
        # pwrite and read share the page cache: no fsync needed to read back what was written.
        return np.load(self.path, allow_pickle=False)

    def close(self) -> None:
        if self.fd is not None:
            for f in self._pending:  # the helper must be done with the descriptor before it closes
                f.result()
            self._pending = []
            if self.durable:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
