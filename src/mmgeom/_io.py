"""Atomic file writes: a temporary file in the same folder, fsynced, then ``os.replace``d over the target.

A reader (or a crash) never sees a half-written file: the target holds either its previous content or the
new one. Used for checkpoints, weights, configs, reports and results files.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

__all__ = ["atomic_save_tensors", "atomic_write_bytes", "atomic_write_text", "write_json"]


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
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        failure = _write_failure(err, target)
        if failure is not None:
            raise failure from err
        raise
    return target


#: How torch's zip writer and safetensors report a write that failed underneath (ENOSPC, EIO...).
WRITE_FAILURES = (
    "unexpected pos",
    "PytorchStreamWriter failed",
    "file write failed",
    "I/O error",
    "os error",
)


def _write_failure(err: BaseException, target: Path) -> OSError | None:
    """An ``OSError`` naming ``target`` for a failed write that does not name it, else ``None``.

    A buffered Python write reports ENOSPC without a file name; safetensors and ``torch.save`` report it
    as their own exception types. The message says the previous content is intact (nothing replaced it).
    """
    if isinstance(err, OSError):
        if err.filename is not None:
            return None
        return OSError(
            err.errno, f"{err.strerror or err}; {target.name} keeps its previous content", str(target)
        )
    if isinstance(err, Exception) and any(s in str(err) for s in WRITE_FAILURES):
        text = str(err).splitlines()[0]
        code = errno.ENOSPC if "No space" in text or "unexpected pos" in text else errno.EIO
        return OSError(
            code, f"writing failed ({text}); {target.name} keeps its previous content", str(target)
        )
    return None


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


def _json_ready(obj: Any, digits: int) -> Any:
    """``obj`` with floats rounded to ``digits`` significant digits, NaN/Inf as ``None``, tensors as lists,
    paths as strings and mapping keys as strings (what :func:`json.dumps` accepts)."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v, digits) for v in obj]
    if isinstance(obj, Tensor):
        return _json_ready(obj.tolist(), digits)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: Any, digits: int = 6) -> Path:
    """Write ``data`` as indented JSON, all or nothing: floats to ``digits`` significant digits, NaN/Inf as
    ``null`` (small, diffable results files).

    Example:
        >>> write_json("out/r.json", {"acc": 0.912345678, "loss": float("nan")})  # doctest: +SKIP
        # out/r.json: {"acc": 0.912346, "loss": null}
    """
    return atomic_write_text(path, json.dumps(_json_ready(data, digits), indent=1) + "\n")


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside the folder ``path`` durable (POSIX: fsync the directory; a no-op where
    directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
