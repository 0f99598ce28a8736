"""Seeding for reproducible runs."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    mmgeom's own samplers and splits draw from explicit NumPy generators, not the global one; the global
    one is seeded for user code (custom encoders, augmentations) that does.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator, for user code
    torch.manual_seed(seed)
