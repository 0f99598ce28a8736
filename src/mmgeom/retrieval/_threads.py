"""Thread count for the small operations around the big matrix multiplies (not public API).

The score blocks are one large GEMM each and use every torch thread. The top-k merge, the rescoring and
the rank counting are many small operations; their intra-op parallelism pays little and, when the cores
are shared with other processes, each parallel region can stall on a descheduled thread (measured on a
shared 2-core machine: a 4 ms merge became 100 ms). They run with a quarter of the threads, at least one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def helper_threads() -> int:
    """Threads for the small operations: ``max(1, torch.get_num_threads() // 4)``."""
    return max(1, torch.get_num_threads() // 4)


@contextlib.contextmanager
def limited_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with at most ``n`` (default :func:`helper_threads`) intra-op threads."""
    previous = torch.get_num_threads()
    n = helper_threads() if n is None else n
    if n >= previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_thread_here() -> None:
    """Make torch's operations on the calling worker thread single-threaded.

    ``torch.set_num_threads`` on the main thread does not reach threads that already exist: OpenMP keeps
    the thread count per thread, so a pool thread would open a team of all cores for every torch
    operation and oversubscribe the machine while its siblings work. Worker tasks call this first.
    """
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
