"""Running a study: one torch thread, the seed loop and the command line that reproduces a results folder.

* :func:`torch_threads` — context manager: set torch's intra-op threads, restore afterwards;
* :func:`run_seeds` — ``[fn(seed) for seed in seeds]`` with :func:`mmgeom.train.seed_everything` first;
* :func:`study_command` — the exact ``mmgeom study`` command line that reproduces a results folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch

from ..seeding import seed_everything

T = TypeVar("T")

__all__ = ["run_seeds", "study_command", "torch_threads"]


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; the previous count is restored on exit.

    Small studies on a shared CPU run fastest (and most predictably) on one thread.

    Args:
        n: intra-op threads, ``>= 1``.
    """
    if int(n) < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_seeds(fn: Callable[[int], T], seeds: int | Iterable[int]) -> list[T]:
    """Call ``fn(seed)`` for each seed (``seeds=N`` means ``0..N-1``), seeding torch/random first.

    Args:
        fn: one run of a setting; receives the seed.
        seeds: a count ``N >= 1`` or explicit seeds.

    Returns:
        The results in seed order.
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds: expected >= 1, got {seeds}")
        seeds = range(seeds)
    out = []
    for s in seeds:
        seed_everything(int(s))
        out.append(fn(int(s)))
    return out


def study_command(name: str, out: str | Path, seeds: int | None = None, quick: bool = False) -> str:
    """The ``mmgeom study`` command line that reproduces a results folder."""
    parts = ["mmgeom", "study", name]
    if quick:
        parts.append("--quick")
    if seeds is not None:
        parts += ["--seeds", str(int(seeds))]
    parts += ["--out", str(out)]
    return " ".join(parts)
