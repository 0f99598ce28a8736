"""A module's weights in safetensors, written atomically (:mod:`mmgeom._io`), and read back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from .._io import atomic_save_tensors
from ..errors import CheckpointError


def save_module(path: str | Path, module: nn.Module, metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically save the parameters and buffers of ``module.state_dict()`` as safetensors.

    Entries that are not tensors (what a module returns from ``get_extra_state``) are not weights and
    are left out; checkpoints keep them in their state file.
    """
    tensors = {k: v for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    return atomic_save_tensors(path, tensors, metadata)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a safetensors file into a ``name -> tensor`` dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not valid safetensors (truncated by a crash or a full disk, or
            another format); the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such weights file")
    try:
        return load_file(str(p), device=str(device))
    except OSError:
        raise
    except Exception as err:  # safetensors raises its own SafetensorError (not importable by name)
        raise CheckpointError(
            f"{p}: not a readable safetensors file ({type(err).__name__}: {err}); it may be truncated: "
            "use a checkpoint (--checkpoint latest) or retrain"
        ) from None
