"""The native running top-k merge: a small C kernel built at first use (not public API).

:func:`mmgeom.retrieval.topk` merges every score block into a running top-c. In torch that takes a
dozen small operations per block (group maxima, compare, ``nonzero``, gathers, a small ``topk``), which
at 10^5 gallery items cost as much as a fifth of the matrix multiplies. ``_merge.c`` does it in one pass
over the block, keeping each row's top-c as a heap, with the same order and tie rule as
:mod:`mmgeom.retrieval._select` (the tests check both paths give identical results).

The kernel is compiled once per machine with the system C compiler (``$CC``, else cc/gcc/clang) into
``native/`` of mmgeom's cache folder (:func:`mmgeom._paths.cache_root`), keyed by the source, the compiler and
the CPU's feature flags, and loaded with ctypes. Without a compiler, on other devices or dtypes, or with
``MMGEOM_NATIVE=0``, the torch merge runs instead: same results, slower. :func:`native_status` says which.

Row ranges of a block run on a few Python threads: ctypes releases the GIL, and unlike an OpenMP region
a thread that waits for a core (on a shared machine) does not make the others spin.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._paths import cache_root

_log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_merge.c")
#: Version of the kernel's calling convention, checked against ``mmgeom_merge_abi()`` after loading.
ABI = 5
#: Blocks with fewer elements than this are merged on the calling thread only.
MIN_PARALLEL_ELEMENTS = 1 << 18
#: Rows per thread never drop below this.
MIN_ROWS_PER_THREAD = 16

_pool: tuple[tuple[int, int], ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``native/`` in :func:`mmgeom._paths.cache_root`."""
    return cache_root() / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _build(cc: str, target: Path) -> None:
    """Compile ``SOURCE`` into ``target`` (written atomically: several processes may race here)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        base = [cc, "-O3", "-fPIC", "-shared", "-std=c99", str(SOURCE), "-o", tmp, "-lm"]
        for extra in (["-march=native"], []):  # some compilers/targets reject -march=native
            done = subprocess.run(base[:1] + extra + base[1:], capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(done.stderr.strip()[-2000:] or f"{cc} exited with {done.returncode}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str]:
    """The kernel (built if needed) and a line saying what was loaded, or why nothing was."""
    if os.environ.get("MMGEOM_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "disabled by MMGEOM_NATIVE"
    cc = _compiler()
    if cc is None:
        return None, "unavailable: no C compiler found ($CC, cc, gcc or clang)"
    parts = [SOURCE.read_bytes(), cc.encode(), platform.machine().encode(), _cpu_flags().encode()]
    key = hashlib.sha256(b"\0".join([*parts, bytes([ABI])])).hexdigest()[:20]
    try:
        target = cache_dir() / f"merge-{key}.so"  # Path.home() can fail without a home directory
        if not target.exists():
            _build(cc, target)
        lib = ctypes.CDLL(str(target))
        if lib.mmgeom_merge_abi() != ABI:
            raise RuntimeError(f"{target} has ABI {lib.mmgeom_merge_abi()}, expected {ABI}")
    except Exception as err:  # any build or load failure falls back to the torch merge
        status = f"unavailable: {type(err).__name__}: {err}"
        _log.info("mmgeom native merge %s", status)
        return None, status
    args: list[Any] = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    for fn in (lib.mmgeom_merge_f32, lib.mmgeom_merge_f64):
        fn.restype = None
        fn.argtypes = [*args, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    for fn in (lib.mmgeom_count_f32, lib.mmgeom_count_f64):
        fn.restype = ctypes.c_int64
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
        fn.argtypes += [ctypes.c_void_p] * 2 + [ctypes.c_int64] + [ctypes.c_void_p] * 2 + [ctypes.c_int64]
    pair_args: list[Any] = [ctypes.c_void_p, ctypes.c_int64] * 2 + [ctypes.c_int64]
    for fn in (lib.mmgeom_pair_dots_f32, lib.mmgeom_pair_dots_q64):
        fn.restype = ctypes.c_int64
        fn.argtypes = pair_args + [ctypes.c_void_p] * 2 + [ctypes.c_int64] + [ctypes.c_void_p] * 3
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64  # mmgeom_settle_f32, called from _settle.py
    lib.mmgeom_settle_f32.restype = i64
    lib.mmgeom_settle_f32.argtypes = [ptr, i64, ptr, i64, i64, ptr, i64, i64, ptr, i64, i64, i64, ptr, ptr]
    lib.mmgeom_settle_f32.argtypes += [
        i64,
        ptr,
        ctypes.c_int,
        ptr,
        ptr,
        ctypes.c_double,
        ctypes.c_double,
        ptr,
    ]
    return lib, f"loaded {target}"


def _library() -> ctypes.CDLL | None:
    return _load()[0]


def native_status() -> str:
    """How :func:`mmgeom.retrieval.topk` merges blocks on CPU: the kernel it loaded, or why not."""
    return _load()[1]


def reset() -> None:
    """Forget the loaded kernel (tests change ``MMGEOM_NATIVE`` / ``$CC`` and load again)."""
    _load.cache_clear()


def executor(workers: int) -> ThreadPoolExecutor:
    """The module's thread pool with ``workers`` threads (made anew after a fork or a size change)."""
    global _pool
    with _pool_lock:
        # a pool inherited through fork() has no threads behind it: the child makes its own
        key = (os.getpid(), workers)
        if _pool is None or _pool[0] != key:
            if _pool is not None and _pool[0][0] == key[0]:
                _pool[1].shutdown(wait=False)
            _pool = (key, ThreadPoolExecutor(workers, thread_name_prefix="mmgeom-merge"))
        return _pool[1]


def available(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernel is built and can merge score blocks of this dtype on this device."""
    return device.type == "cpu" and dtype in (torch.float32, torch.float64) and _library() is not None


def _check_merge_args(block: Tensor, run_values: Tensor, run_index: Tensor) -> None:
    rows, width = block.shape
    if not (
        block.dtype == run_values.dtype
        and run_index.dtype == torch.int64
        and (block.stride(1) == 1 or width <= 1)
        and run_values.is_contiguous()
        and run_index.is_contiguous()
        and run_values.shape == run_index.shape == (rows, run_values.shape[1])
    ):
        raise ValueError(
            "merge_into needs a row-contiguous block and contiguous (rows, c) running tensors of the "
            f"block's dtype; got block {tuple(block.shape)} {block.dtype} strides {block.stride()}, "
            f"run_values {tuple(run_values.shape)} {run_values.dtype}, run_index {tuple(run_index.shape)}"
        )


def _kernel(dtype: torch.dtype) -> Any:
    lib = _library()
    if lib is None:
        raise RuntimeError(f"the native merge is {native_status()}")
    return lib.mmgeom_merge_f32 if dtype == torch.float32 else lib.mmgeom_merge_f64


def merge_rows(block: Tensor, offset: int, run_values: Tensor, run_index: Tensor) -> None:
    """:func:`merge_into` on the calling thread only (for callers that run their own worker threads)."""
    _check_merge_args(block, run_values, run_index)
    rows, width = block.shape
    c = run_values.shape[1]
    if rows and width and c:
        fn = _kernel(block.dtype)
        values, index = run_values.data_ptr(), run_index.data_ptr()
        fn(block.data_ptr(), rows, width, block.stride(0), offset, values, index, c)


def merge_into(block: Tensor, offset: int, run_values: Tensor, run_index: Tensor) -> None:
    """Merge ``block`` into the running top-c ``(run_values, run_index)`` in place.

    Same contract as :func:`mmgeom.retrieval._select.merge_block` (gallery indices of the block are
    ``offset ..``, all larger than every kept index; rows come back unordered), but the running
    tensors are updated in place. Call :func:`available` first.
    """
    fn = _kernel(block.dtype)
    _check_merge_args(block, run_values, run_index)
    rows, width = block.shape
    c = run_values.shape[1]
    if rows == 0 or width == 0 or c == 0:
        return
    ld = block.stride(0)
    item = block.element_size()
    base_b, base_v, base_i = block.data_ptr(), run_values.data_ptr(), run_index.data_ptr()

    def run(lo: int, hi: int) -> None:
        rows_ptr = base_b + lo * ld * item
        fn(rows_ptr, hi - lo, width, ld, offset, base_v + lo * c * item, base_i + lo * c * 8, c)

    threads = min(torch.get_num_threads(), rows // MIN_ROWS_PER_THREAD)
    if threads <= 1 or rows * width < MIN_PARALLEL_ELEMENTS:
        run(0, rows)
        return
    step = -(-rows // threads)
    futures = [executor(threads).submit(run, lo, min(rows, lo + step)) for lo in range(0, rows, step)]
    for f in futures:
        f.result()


def count_rows(block: Tensor, lo: Tensor, hi: Tensor, above: Tensor, band: Tensor) -> int:
    """Count, on the calling thread, the entries of each row of ``block`` above each positive's band.

    Args:
        block: ``(r, w)`` row-contiguous scores (float32/float64).
        lo: ``(r, P)`` contiguous lower band edges (``+inf`` for padding), block dtype.
        hi: ``(r, P)`` upper band edges (``+inf`` for padding).
        above: ``(r, P)`` contiguous int64 counts, incremented in place by the entries ``> hi``.
        band: ``(cap, 3)`` contiguous int64 output: ``(row, column, p)`` of the entries inside a band.

    Returns:
        How many band entries there are; only the first ``cap`` are written (more: settle another way).
    """
    rows, width = block.shape
    npos = lo.shape[1]
    if not (
        (block.stride(1) == 1 or width <= 1)
        and lo.dtype == hi.dtype == block.dtype
        and above.dtype == band.dtype == torch.int64
        and all(t.is_contiguous() for t in (lo, hi, above, band))
        and lo.shape == hi.shape == above.shape == (rows, npos)
        and band.dim() == 2
        and band.shape[1] == 3
    ):
        raise ValueError("count_rows: mismatched block, band edges, counts or band buffer")
    if rows == 0 or width == 0 or npos == 0:
        return 0
    lib = _library()
    if lib is None:
        raise RuntimeError(f"the native kernels are {native_status()}")
    fn = lib.mmgeom_count_f32 if block.dtype == torch.float32 else lib.mmgeom_count_f64
    found: int = fn(
        block.data_ptr(),
        rows,
        width,
        block.stride(0),
        lo.data_ptr(),
        hi.data_ptr(),
        npos,
        above.data_ptr(),
        band.data_ptr(),
        band.shape[0],
    )
    return found


def pair_dots(
    q: Tensor, g: Tensor, rows: Tensor, cols: Tensor, *, absdot: bool, norms: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """float64 dot products of the row pairs ``(q[rows[i]], g[cols[i]])`` of two float32 matrices.

    Runs on the calling thread (ctypes releases the GIL). Each product of two float32 values is exact in
    float64; only the summation over ``D`` rounds, in the kernel's own order (not torch's).

    Args:
        q: ``(N_q, D)`` CPU float32 matrix, rows contiguous (``stride(1) == 1``); or float64 holding
            float32 values (rows widened once, for pairs that reuse few query rows: same results).
        g: ``(N_g, D)`` CPU float32 matrix, rows contiguous.
        rows: ``(n,)`` int64 row indices into ``q``.
        cols: ``(n,)`` int64 row indices into ``g`` (pairs sorted by ``cols`` read ``g`` in order, each
            row once from memory: 2-4x faster than unsorted pairs at 10^5 x 512).
        absdot: also return ``sum_k |q_k g_k|``.
        norms: also return ``sum_k g_k^2`` of each pair's gallery row.

    Returns:
        ``(dot, absdot, gsq)``, each ``(n,)`` float64 or None when not asked for.
    """
    d = q.shape[1] if q.dim() == 2 else -1
    if not (
        q.dtype in (torch.float32, torch.float64)
        and g.dtype == torch.float32
        and q.device.type == g.device.type == "cpu"
        and q.dim() == g.dim() == 2
        and g.shape[1] == d
        and (q.stride(1) == 1 or d <= 1)
        and (g.stride(1) == 1 or d <= 1)
        and rows.dtype == cols.dtype == torch.int64
        and rows.shape == cols.shape
        and rows.dim() == 1
    ):
        raise ValueError(
            "pair_dots: expected row-contiguous CPU float32 (or float64 query) matrices (N_q, D), (N_g, D) "
            "and int64 (n,) "
            f"row/col indices; got q {tuple(q.shape)} {q.dtype}, g {tuple(g.shape)} {g.dtype}, "
            f"rows {tuple(rows.shape)} {rows.dtype}, cols {tuple(cols.shape)} {cols.dtype}"
        )
    n = rows.numel()
    rows, cols = rows.contiguous(), cols.contiguous()
    # out-of-range indices would read outside the matrices in C: checked here (two cheap passes)
    for name, index, size in (("rows", rows, q.shape[0]), ("cols", cols, g.shape[0])):
        if n and (int(index.min()) < 0 or int(index.max()) >= size):
            raise ValueError(
                f"pair_dots: {name} must lie in [0, {size}), got {int(index.min())}..{int(index.max())}"
            )
    dot = torch.empty(n, dtype=torch.float64)
    out_abs = torch.empty(n, dtype=torch.float64) if absdot else None
    gsq = torch.empty(n, dtype=torch.float64) if norms else None
    if n == 0:
        return dot, out_abs, gsq
    lib = _library()
    if lib is None:
        raise RuntimeError(f"the native kernels are {native_status()}")

    def ptr(t: Tensor | None) -> int | None:
        return None if t is None else t.data_ptr()

    kernel = lib.mmgeom_pair_dots_q64 if q.dtype == torch.float64 else lib.mmgeom_pair_dots_f32
    kernel(
        q.data_ptr(),
        q.stride(0),
        g.data_ptr(),
        g.stride(0),
        d,
        rows.data_ptr(),
        cols.data_ptr(),
        n,
        dot.data_ptr(),
        ptr(out_abs),
        ptr(gsq),
    )
    return dot, out_abs, gsq
