"""Single-threaded GEMM of a score block through torch's BLAS or numpy's (not public API).

The fused engines run one GEMM per block inside each worker thread, so any BLAS with a single-threaded
call and a released GIL will do. torch's wheels link MKL, numpy's link OpenBLAS; on a 2-core AMD EPYC
(Zen 4) OpenBLAS's AVX-512 kernels ran a quarter faster than MKL's for these blocks, on Intel the
reverse is expected, so :mod:`mmgeom.retrieval._tune` measures both and records the faster one.

numpy's BLAS keeps its own thread pool; :func:`single_threaded` pins it (and torch's) to one thread for
the duration of a search with ``threadpoolctl``, without which only torch's BLAS is offered.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._threads import limited_threads

GEMMS = ("torch", "numpy")


def available() -> tuple[str, ...]:
    """The GEMMs usable here: numpy's only when ``threadpoolctl`` can pin its thread pool."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return ("torch",)
    return GEMMS


@contextlib.contextmanager
def single_threaded(gemm: str) -> Iterator[None]:
    """Every BLAS call inside runs on its caller's thread only (the workers are the parallelism)."""
    with limited_threads(1):
        if gemm != "numpy":
            yield
            return
        with _controller().limit(limits=1, user_api="blas"):
            yield


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, found once: finding them reads the process's
    memory map (0.6 ms, more than a small search)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def block_scores(gemm: str, q: Tensor, g: Tensor, out: Tensor) -> None:
    """``out = q @ g.T`` (``q`` ``(r, D)``, ``g`` ``(w, D)``, ``out`` a contiguous ``(r, w)``), CPU."""
    if gemm == "numpy":
        np.matmul(q.numpy(), g.numpy().T, out=out.numpy())
    else:
        torch.mm(q, g.T, out=out)
