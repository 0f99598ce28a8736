"""Seeding for reproducible runs."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and torch (CPU and every CUDA device).

    mmgeom's own samplers and splits draw from explicit NumPy generators, not the global one.
    """
    random.seed(seed)
    torch.manual_seed(seed)
