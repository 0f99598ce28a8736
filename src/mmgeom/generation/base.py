"""What every decoder shares: the image/embedding contract and its validation.

Images at the API are float tensors ``(B, C, H, W)`` with values in ``[0, 1]``; a decoder may work in
another range internally (the diffusion decoder uses ``[-1, 1]``) but always returns ``[0, 1]``.
Conditions are ``(B, embed_dim)`` embeddings; they are L2-normalised inside the decoder, because the
aligned spaces that feed it are compared by cosine and a modality's norms carry no meaning there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def image_shape_tuple(shape: Sequence[int]) -> tuple[int, int, int]:
    """``(H, W)`` or ``(C, H, W)`` -> ``(C, H, W)``; ``ValueError`` unless all are positive integers."""
    dims = tuple(shape)
    if len(dims) == 2:
        dims = (1, *dims)
    if len(dims) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"image_shape: expected (H, W) or (C, H, W) positive integers, got {tuple(shape)!r}")
    return (dims[0], dims[1], dims[2])


class ImageDecoder(nn.Module):
    """Base class of the decoders: holds the shapes and validates conditions and images.

    Subclasses implement :meth:`loss` (the training objective on a batch of ``(condition, image)`` pairs)
    and :meth:`sample` (images from conditions).

    Args:
        embed_dim: dimension of the conditioning embedding.
        image_shape: ``(H, W)`` or ``(C, H, W)`` of the images.
    """

    def __init__(self, embed_dim: int, image_shape: Sequence[int]) -> None:
        super().__init__()
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim: expected a positive integer, got {embed_dim!r}")
        self.embed_dim = embed_dim
        self.image_shape = image_shape_tuple(image_shape)

    @property
    def num_pixels(self) -> int:
        """``C * H * W``."""
        return math.prod(self.image_shape)

    def check_condition(self, cond: Tensor, modality: str = "condition") -> Tensor:
        """Validate a ``(B, embed_dim)`` condition and return it L2-normalised (float32 or float64).

        Raises:
            ValueError: wrong rank or dimension (names ``modality``, the shape and ``embed_dim``), a
                non-floating dtype, or non-finite values.
        """
        if not isinstance(cond, Tensor) or cond.dim() != 2 or cond.shape[1] != self.embed_dim:
            got = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
            raise ValueError(
                f"{modality}: expected embeddings of shape (B, {self.embed_dim}) — the dimension the decoder "
                f"was trained on — got {got}"
            )
        if not cond.is_floating_point():
            raise ValueError(f"{modality}: expected floating-point embeddings, got dtype {cond.dtype}")
        if not bool(torch.isfinite(cond).all()):
            raise ValueError(f"{modality}: embeddings contain NaN or Inf")
        if cond.dtype not in (torch.float32, torch.float64):
            cond = cond.float()
        return torch.nn.functional.normalize(cond, dim=1, eps=1e-12)

    def check_images(self, images: Tensor, batch: int | None = None) -> Tensor:
        """Validate images ``(B, C, H, W)`` or ``(B, C*H*W)`` in ``[0, 1]``; return ``(B, C, H, W)``.

        Raises:
            ValueError: wrong shape, batch size different from ``batch``, or non-finite values.
        """
        c, h, w = self.image_shape
        ok = isinstance(images, Tensor) and (
            (images.dim() == 4 and tuple(images.shape[1:]) == (c, h, w))
            or (images.dim() == 2 and images.shape[1] == c * h * w)
        )
        if not ok:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images: expected shape (B, {c}, {h}, {w}) or (B, {c * h * w}), got {got}")
        if batch is not None and images.shape[0] != batch:
            raise ValueError(f"images: expected {batch} rows (one per condition), got {images.shape[0]}")
        if not images.is_floating_point() or not bool(torch.isfinite(images).all()):
            raise ValueError("images: expected finite floating-point values in [0, 1]")
        return images.reshape(images.shape[0], c, h, w)

    def loss(self, cond: Tensor, images: Tensor) -> Tensor:
        """Training objective on a batch of paired conditions and images (a scalar)."""
        raise NotImplementedError

    def sample(self, cond: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Images ``(B, C, H, W)`` in ``[0, 1]`` decoded from conditions ``(B, embed_dim)``."""
        raise NotImplementedError
