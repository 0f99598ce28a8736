"""A small convolutional encoder for image views (the 16x15 mfeat ``pix`` digit, 28x14 image halves)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from .heads import ProjectionHead, register_head


def _image_shape(shape: Sequence[int], modality: str) -> tuple[int, int, int]:
    dims = tuple(shape)
    if len(dims) == 2:
        dims = (1, *dims)
    if len(dims) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(
            f"{modality}: image_shape must be (H, W) or (C, H, W) positive integers, got {tuple(shape)!r}"
        )
    return (dims[0], dims[1], dims[2])


@register_head("cnn")
class ImageCNN(ProjectionHead):
    """Conv encoder: ``len(channels)`` blocks of 3x3 conv (padding 1) → ReLU → 2x2 max-pool (ceil mode),
    then the flattened feature map → linear map to ``out_dim``.

    Flattening (rather than global average pooling) keeps *where* a stroke is, which digits and clothing
    halves need. The input is a flattened image ``(B, C*H*W)`` (how views are stored in a
    :class:`~mmgeom.data.MultiViewDataset`, row-major) or the image itself ``(B, C, H, W)`` / ``(B, H, W)``
    for one channel. Small on purpose: two blocks of 8 and 16 channels train in seconds on a CPU core.

    Args:
        in_dim: flattened input size; must equal ``C * H * W``.
        out_dim: embedding dimension.
        image_shape: ``(H, W)`` or ``(C, H, W)``, e.g. ``(16, 15)`` for mfeat ``pix``, ``(28, 14)`` for a
            Fashion-MNIST half.
        channels: output channels of each conv block.
        modality: name used in error messages.

    Raises:
        ValueError: ``in_dim`` differs from the image size, or bad ``image_shape`` / ``channels``.

    Example:
        >>> cnn = ImageCNN(240, 32, image_shape=(16, 15), modality="pix")
        >>> cnn(torch.randn(4, 240)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        image_shape: Sequence[int],
        channels: Sequence[int] = (8, 16),
        modality: str = "input",
    ) -> None:
        super().__init__(in_dim, out_dim, modality=modality)
        self.image_shape = _image_shape(image_shape, self.modality)
        if math.prod(self.image_shape) != self.in_dim:
            raise ValueError(
                f"{self.modality}: image_shape {self.image_shape} holds {math.prod(self.image_shape)} "
                f"values, but in_dim is {self.in_dim}"
            )
        chans = [int(c) for c in channels]
        if not chans or any(c < 1 for c in chans):
            raise ValueError(f"{self.modality}: channels must be a non-empty list of integers >= 1")
        layers: list[nn.Module] = []
        width, (h, w) = self.image_shape[0], self.image_shape[1:]
        for c in chans:
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            width, h, w = c, -(-h // 2), -(-w // 2)
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(width * h * w, self.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C*H*W)``, ``(B, C, H, W)`` or (one channel) ``(B, H, W)`` → ``(B, out_dim)``.

        Raises:
            ValueError: any other shape or a non-floating dtype; the message names the modality and the
                expected shapes.
        """
        c, h, w = self.image_shape
        ok = isinstance(x, Tensor) and (
            (x.dim() == 2 and x.shape[1] == self.in_dim)
            or (x.dim() == 4 and tuple(x.shape[1:]) == (c, h, w))
            or (x.dim() == 3 and c == 1 and tuple(x.shape[1:]) == (h, w))
        )
        if not ok:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{self.modality}: expected input of shape (B, {self.in_dim}) or (B, {c}, {h}, {w}), "
                f"got {got}"
            )
        if not x.is_floating_point():
            raise ValueError(f"{self.modality}: expected a floating-point input, got dtype {x.dtype}")
        return self.project(x.reshape(x.shape[0], c, h, w))

    def project(self, x: Tensor) -> Tensor:
        return self.proj(self.features(x).flatten(1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, image_shape={self.image_shape}"
