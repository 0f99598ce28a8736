"""Weights in safetensors, written atomically (temporary file in the same folder, then ``os.replace``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn


def _atomic_replace(path: str | Path, write: Callable[[str], object]) -> Path:
    """Run ``write(tmp)`` on a temporary file next to ``path``, fsync it, then :func:`os.replace` it over
    ``path`` (atomic on POSIX and Windows). On any error the temporary file is removed and ``path`` keeps
    its previous content."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def atomic_save_tensors(
    path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``tensors`` to ``path`` in safetensors format, all or nothing (:func:`_atomic_replace`)."""
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = dict(metadata) if metadata else None
    return _atomic_replace(path, lambda tmp: save_file(plain, tmp, metadata=meta))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file all or nothing (:func:`_atomic_replace`)."""
    return _atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file all or nothing (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_module(path: str | Path, module: nn.Module, metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically save ``module.state_dict()`` (parameters and buffers) as safetensors."""
    return atomic_save_tensors(path, module.state_dict(), metadata)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a safetensors file into a ``name -> tensor`` dict."""
    return load_file(str(path), device=str(device))
