"""A module's weights in safetensors, written atomically (:mod:`mmgeom._io`), and read back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from .._io import atomic_save_tensors


def save_module(path: str | Path, module: nn.Module, metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically save the parameters and buffers of ``module.state_dict()`` as safetensors.

    Entries that are not tensors (what a module returns from ``get_extra_state``) are not weights and
    are left out; checkpoints keep them in their state file.
    """
    tensors = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    return atomic_save_tensors(path, tensors, metadata)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a safetensors file into a ``name -> tensor`` dict."""
    return load_file(str(path), device=str(device))
