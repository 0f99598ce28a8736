"""A fast deterministic convolutional decoder: embedding -> image in one forward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import ImageDecoder


def _up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(min(8, c_out), c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(min(8, c_out), c_out),
        nn.SiLU(),
    )


class ConvDecoder(ImageDecoder):
    """Deterministic decoder: MLP to a coarse feature map, then upsample + conv blocks, sigmoid output.

    The quick, strong baseline of UnCLIP-style evaluation: it is trained by pixel MSE to reconstruct
    the image from its own (frozen) embedding, so it returns the *mean* image consistent with an
    embedding — sharp where the embedding pins the image down, blurred where it does not. The
    diffusion decoder (:class:`~mmgeom.generation.DiffusionDecoder`) samples instead.

    Images whose sides are not a multiple of ``2 ** len(channels)`` are generated at the padded size
    and cropped (top-left), e.g. the 16x15 mfeat digit is decoded at 16x16.

    Args:
        embed_dim: conditioning embedding dimension.
        image_shape: ``(H, W)`` or ``(C, H, W)``.
        channels: widths of the feature maps from coarse to fine; one 2x upsampling per entry.
        hidden: width of the MLP that lifts the embedding.

    Example:
        >>> dec = ConvDecoder(64, (16, 15))
        >>> dec.sample(torch.randn(4, 64)).shape
        torch.Size([4, 1, 16, 15])
    """

    def __init__(
        self,
        embed_dim: int,
        image_shape: Sequence[int],
        *,
        channels: Sequence[int] = (64, 32),
        hidden: int = 256,
    ) -> None:
        super().__init__(embed_dim, image_shape)
        chans = [int(c) for c in channels]
        if not chans or any(c < 1 for c in chans):
            raise ValueError(f"channels: expected a non-empty list of integers >= 1, got {list(channels)!r}")
        if hidden < 1:
            raise ValueError(f"hidden: expected >= 1, got {hidden}")
        c, h, w = self.image_shape
        factor = 2 ** len(chans)
        self._base = (-(-h // factor), -(-w // factor))
        self.lift = nn.Sequential(
            nn.Linear(embed_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, chans[0] * self._base[0] * self._base[1]),
            nn.SiLU(),
        )
        blocks = [_up_block(a, b) for a, b in zip([chans[0], *chans[:-1]], chans, strict=True)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(chans[-1], c, 3, padding=1)
        self.channels = tuple(chans)

    def forward(self, cond: Tensor) -> Tensor:
        """Logits ``(B, C, H, W)`` of the pixel values (sigmoid gives the image)."""
        z = self.check_condition(cond).to(self.out.weight.dtype)
        x = self.lift(z).reshape(z.shape[0], self.channels[0], *self._base)
        x = self.out(self.blocks(x))
        _, h, w = self.image_shape
        return x[:, :, :h, :w]

    def loss(self, cond: Tensor, images: Tensor) -> Tensor:
        """Mean squared pixel error of ``sigmoid(forward(cond))`` against ``images`` in ``[0, 1]``."""
        target = self.check_images(images, batch=cond.shape[0] if isinstance(cond, Tensor) else None)
        pred = torch.sigmoid(self(cond))
        return torch.mean((pred - target.to(pred.dtype)) ** 2)

    def sample(
        self, cond: Tensor, *, generator: torch.Generator | None = None, batch_size: int = 1024
    ) -> Tensor:
        """Decoded images ``(B, C, H, W)`` in ``[0, 1]``; deterministic (``generator`` is unused)."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.check_condition(cond)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                parts = [torch.sigmoid(self(c)) for c in cond.split(batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(parts)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, image_shape={self.image_shape}, channels={self.channels}"
