"""Image grids and greyscale PNG files (encoded by Pillow).

:func:`image_grid` tiles decoded images into one ``uint8`` picture; :func:`encode_png` and :func:`save_png`
write it as an 8-bit greyscale PNG with Pillow (``PIL.Image.fromarray(..., mode "L")``), which handles the
format (chunks, CRCs, scanline filters, zlib) — mmgeom no longer carries its own encoder. Pillow is a
dependency of matplotlib (extra ``plot``) and of the image importer; it is imported when a PNG is
written, and its absence raises an :class:`ImportError` naming the pip command.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_write_bytes
from .fid import ArrayLike

__all__ = ["encode_png", "image_grid", "save_grid", "save_png"]

PILLOW_INSTALL = "pip install 'mmgeom[plot]'  (or: pip install pillow)"


def _positive_int(value: int, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def image_grid(
    images: ArrayLike, nrow: int, *, pad: int = 1, scale: int = 1, pad_value: float = 0.5
) -> np.ndarray:
    """Tile single-channel images into one greyscale ``uint8`` picture.

    Images go left to right, ``nrow`` per row (torchvision's ``make_grid`` convention: ``nrow`` is the
    number of images *in* each row), then top to bottom; cells after the last image are filled with
    ``pad_value``. ``pad`` pixels of ``pad_value`` separate the cells and frame the grid. Each image is
    first enlarged ``scale`` times by pixel repetition (nearest neighbour), so 16x15 digits are
    visible; the padding is not scaled.

    Args:
        images: ``(N, 1, H, W)`` or ``(N, H, W)``, values in [0, 1] (clamped: decoder outputs may
            overshoot slightly), N ≥ 1.
        nrow: images per row (≥ 1); the grid has ``ceil(N / nrow)`` rows and ``min(nrow, N)`` columns.
        pad: padding in pixels between cells and around the grid (≥ 0).
        scale: integer enlargement factor (≥ 1).
        pad_value: grey level in [0, 1] of the padding and empty cells (0.5: visible on black and white
            backgrounds).

    Returns:
        ``(rows·(scale·H + pad) + pad, cols·(scale·W + pad) + pad)`` ``uint8`` array, ``round(255·x)``.

    Raises:
        ValueError: other shapes, no images, non-finite values, bad ``nrow``/``pad``/``scale``/
            ``pad_value``.

    Example:
        >>> image_grid(torch.ones(3, 1, 2, 2), nrow=2, pad=1, pad_value=0.0)
        array([[  0,   0,   0,   0,   0,   0,   0],
               [  0, 255, 255,   0, 255, 255,   0],
               [  0, 255, 255,   0, 255, 255,   0],
               [  0,   0,   0,   0,   0,   0,   0],
               [  0, 255, 255,   0,   0,   0,   0],
               [  0, 255, 255,   0,   0,   0,   0],
               [  0,   0,   0,   0,   0,   0,   0]], dtype=uint8)
    """
    if isinstance(images, np.ndarray):
        images = torch.as_tensor(images)
    if not isinstance(images, Tensor):
        raise ValueError(f"images: expected a tensor or array of shape (N, 1, H, W), got {type(images)}")
    x = images
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3 or min(x.shape) < 1:
        raise ValueError(
            f"images: expected shape (N, 1, H, W) or (N, H, W) with N >= 1, got {tuple(images.shape)}"
        )
    nrow = _positive_int(nrow, "nrow")
    pad = _positive_int(pad, "pad", minimum=0)
    scale = _positive_int(scale, "scale")
    if not 0.0 <= float(pad_value) <= 1.0:
        raise ValueError(f"pad_value: expected a grey level in [0, 1], got {pad_value!r}")
    arr = x.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(arr).all():
        raise ValueError(f"images: contains NaN or Inf (shape {tuple(images.shape)})")
    pix = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if scale > 1:
        pix = pix.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w = pix.shape
    cols = min(nrow, n)
    rows = -(-n // nrow)
    grid = np.full(
        (rows * (h + pad) + pad, cols * (w + pad) + pad), round(float(pad_value) * 255.0), dtype=np.uint8
    )
    for i in range(n):
        top = pad + (i // nrow) * (h + pad)
        left = pad + (i % nrow) * (w + pad)
        grid[top : top + h, left : left + w] = pix[i]
    return grid


def encode_png(array: np.ndarray) -> bytes:
    """The bytes of an 8-bit greyscale PNG of a ``(H, W)`` ``uint8`` array (row 0 at the top), by Pillow.

    Raises:
        ValueError: not a 2-D ``uint8`` array with H, W ≥ 1.
        ImportError: Pillow is not installed (the message names the pip command).
    """
    ok = isinstance(array, np.ndarray) and array.ndim == 2 and array.dtype == np.uint8
    if not ok or min(array.shape) < 1:
        got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"array: expected a 2-D uint8 array (H, W) with H, W >= 1, got {got}")
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"writing PNG files needs Pillow: {PILLOW_INSTALL}") from None
    buf = io.BytesIO()
    # A contiguous 2-D uint8 array is Pillow's mode "L" (8-bit greyscale); level 9 as the old encoder.
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def save_png(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a ``(H, W)`` ``uint8`` array as an 8-bit greyscale PNG, all or nothing.

    The bytes go to a temporary file in the target folder, are flushed to disk, then renamed over
    ``path`` with :func:`os.replace` (atomic), so a crash never leaves a half-written image.

    Args:
        path: destination; missing parent folders are created.
        array: ``(H, W)`` ``uint8`` pixels, row 0 at the top (e.g. from :func:`image_grid`).

    Returns:
        The written path.

    Raises:
        ValueError: ``array`` is not 2-D ``uint8``.

    Example:
        >>> save_png(tmp / "ramp.png", np.arange(256, dtype=np.uint8).reshape(16, 16))  # doctest: +SKIP
    """
    return atomic_write_bytes(Path(path), encode_png(array))


def save_grid(
    path: str | os.PathLike[str],
    images: ArrayLike,
    nrow: int,
    *,
    pad: int = 1,
    scale: int = 1,
    pad_value: float = 0.5,
) -> Path:
    """:func:`image_grid` of ``images`` written as a PNG with :func:`save_png`.

    Args:
        path: destination PNG file.
        images: ``(N, 1, H, W)`` or ``(N, H, W)`` in [0, 1].
        nrow: images per row.
        pad: padding in pixels.
        scale: integer enlargement factor.
        pad_value: grey level of the padding.

    Returns:
        The written path.

    Raises:
        ValueError: as :func:`image_grid`.

    Example:
        >>> save_grid("samples.png", decoded.clamp(0, 1), nrow=10, scale=4)  # doctest: +SKIP
    """
    return save_png(path, image_grid(images, nrow, pad=pad, scale=scale, pad_value=pad_value))
