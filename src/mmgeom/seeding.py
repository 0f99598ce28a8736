"""Seeding and the global random-number generators: seed them, capture and restore their states.

The captured state is made of plain Python values and tensors only (no NumPy arrays), so a checkpoint
holding it loads with ``torch.load(..., weights_only=True)``.

Example:
    >>> import torch
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> with seeded(0):
    ...     b = torch.rand(2)
    >>> bool(torch.equal(a, b))
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state", "seed_everything", "seeded"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    mmgeom's own samplers and splits draw from explicit NumPy generators, not the global one; the global
    one is seeded for user code (custom encoders, augmentations) that does.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator, for user code
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's ``random``, NumPy's global generator, torch's CPU and CUDA generators."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore a state captured by :func:`capture_rng_state` (CUDA only when both sides have it)."""
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    legacy = (str(name), keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached))
    np.random.set_state(legacy)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with the global generators seeded by :func:`seed_everything`; on exit (normal or by
    an exception) every generator is back in the state it had before the block.

    Code after the block therefore draws exactly what it would have drawn without the block: seeding a
    run no longer changes the random numbers of whoever called it.

    Args:
        seed: the seed; ``None`` seeds nothing but still restores the states on exit.
    """
    before = capture_rng_state()
    try:
        if seed is not None:
            seed_everything(int(seed))
        yield
    finally:
        restore_rng_state(before)


def _as_tuple(value: Any) -> Any:
    """Lists back to tuples, recursively (``random.setstate`` needs tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
