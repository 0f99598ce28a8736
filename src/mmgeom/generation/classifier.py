"""A small CNN classifier of real images whose penultimate layer is the feature space for FID and P/R.

**This is not Inception-FID.** No pretrained ImageNet network is available offline, and Inception
features of 16x15 digits would mean little anyway. FID, precision and recall computed from
:meth:`FeatureClassifier.features` are measured in *this classifier's* feature space: they rank image sets
scored by one trained classifier, but their values are not comparable with published FIDs, nor between
two classifiers (another seed, architecture or training set gives another scale).

Its accuracy on held-out real images says how much the space knows about the classes; the accuracy of
generated images under it (e.g. decoded from another modality's embedding, labelled with the source's
class) is the usual "classification accuracy score" of conditional generation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["FeatureClassifier", "train_feature_classifier"]

#: Images per forward pass in :meth:`FeatureClassifier.features` / ``predict`` (bounds memory).
_EVAL_BATCH = 1024


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    dims = tuple(image_shape)
    if len(dims) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"image_shape: expected (H, W) positive integers, got {dims!r}")
    return (dims[0], dims[1])


class FeatureClassifier(nn.Module):
    """Conv classifier for single-channel images with a ``feature_dim`` penultimate layer.

    ``len(channels)`` blocks of 3x3 conv (padding 1) → ReLU → 2x2 max-pool (ceil mode), flatten, a linear
    layer to ``feature_dim`` → ReLU (the *features*), and a linear layer to the class logits. Flattening
    (not global pooling) keeps where strokes are, and ceil-mode pooling accepts odd sizes (16x15 mfeat
    ``pix``, 28x28 Fashion-MNIST) without cropping.

    FID / precision / recall from :meth:`features` live in this network's feature space, **not**
    Inception's: compare them only between image sets scored by the same trained classifier.

    Args:
        image_shape: ``(H, W)`` of the images it accepts.
        num_classes: number of classes (≥ 2).
        feature_dim: size of the penultimate (feature) layer.
        channels: output channels of each conv block.

    Raises:
        ValueError: bad ``image_shape``, ``num_classes``, ``feature_dim`` or ``channels``.

    Example:
        >>> clf = FeatureClassifier((16, 15), num_classes=10)
        >>> clf.features(torch.rand(5, 1, 16, 15)).shape
        torch.Size([5, 64])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        *,
        feature_dim: int = 64,
        channels: Sequence[int] = (16, 32),
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(f"feature_dim: expected an integer >= 1, got {feature_dim!r}")
        chans = [int(c) for c in channels]
        if not chans or any(c < 1 for c in chans):
            raise ValueError(f"channels: expected a non-empty list of integers >= 1, got {list(channels)}")
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        layers: list[nn.Module] = []
        width, (h, w) = 1, self.image_shape
        for c in chans:
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            width, h, w = c, -(-h // 2), -(-w // 2)
        self.conv = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(width * h * w, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def check_images(self, images: object, name: str = "images") -> Tensor:
        """Check ``(N, 1, H, W)`` floating images in [0, 1] of this classifier's ``image_shape``.

        Raises:
            ValueError: another shape (the message names the expected ``(N, 1, H, W)``), a non-floating
                dtype, non-finite values or values outside [0, 1] (clamp decoder outputs first).
        """
        h, w = self.image_shape
        if not isinstance(images, Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor of shape (N, 1, {h}, {w}), got {type(images)}")
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, h, w) or images.shape[0] < 1:
            raise ValueError(f"{name}: expected shape (N, 1, {h}, {w}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor in [0, 1], got dtype {images.dtype}")
        if not bool(torch.isfinite(images).all()):
            raise ValueError(f"{name}: contains NaN or Inf (shape {tuple(images.shape)})")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            # Catches 0..255 pixels and unclamped decoder outputs, which would shift every feature.
            raise ValueError(f"{name}: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
        return images

    def _param(self) -> Tensor:
        return next(self.parameters())

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``(N, num_classes)`` of ``(N, 1, H, W)`` images (with gradient; no checks)."""
        return self.head(self.embed(self.conv(images)))

    def _batched(self, images: Tensor, fn: str) -> Tensor:
        images = self.check_images(images)
        was_training = self.training
        self.eval()
        outs: list[Tensor] = []
        try:
            with torch.no_grad():
                for start in range(0, images.shape[0], _EVAL_BATCH):
                    x = images[start : start + _EVAL_BATCH].to(self._param().device, self._param().dtype)
                    f = self.embed(self.conv(x))
                    outs.append(f if fn == "features" else self.head(f).argmax(dim=1))
        finally:
            self.train(was_training)
        return torch.cat(outs)

    def features(self, images: Tensor) -> Tensor:
        """Penultimate-layer features ``(N, feature_dim)`` (the classifier's dtype and device).

        Raises:
            ValueError: images not ``(N, 1, H, W)`` of ``image_shape`` with values in [0, 1].
        """
        return self._batched(images, "features")

    def predict(self, images: Tensor) -> Tensor:
        """Predicted class ids ``(N,)`` (int64, on the classifier's device).

        Raises:
            ValueError: images not ``(N, 1, H, W)`` of ``image_shape`` with values in [0, 1].
        """
        return self._batched(images, "predict")

    def predict_from_features(self, features: Tensor) -> Tensor:
        """Predicted class ids ``(N,)`` from :meth:`features` output (skips the conv layers again)."""
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features: expected shape (N, {self.feature_dim}), got {tuple(features.shape)}")
        with torch.no_grad():
            return self.head(features.to(self._param().device, self._param().dtype)).argmax(dim=1)

    def accuracy(self, images: Tensor, labels: Tensor) -> float:
        """Fraction of ``images`` whose predicted class equals ``labels`` ``(N,)``.

        Raises:
            ValueError: bad images, or labels not ``(N,)`` integer class ids.
        """
        images = self.check_images(images)
        _check_labels(labels, images.shape[0], self.num_classes)
        pred = self.predict(images)
        return float((pred == labels.to(pred.device)).double().mean())

    def extra_repr(self) -> str:
        shape, classes, dim = self.image_shape, self.num_classes, self.feature_dim
        return f"image_shape={shape}, num_classes={classes}, feature_dim={dim}"


def _check_labels(labels: object, rows: int, num_classes: int | None) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != rows:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected shape ({rows},) to match the images, got {got}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels: expected integer class ids, got dtype {labels.dtype}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"labels: expected class ids >= 0, got {int(labels.min())}")
    if num_classes is not None and labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"labels: expected class ids < num_classes = {num_classes}, got {int(labels.max())}")
    return labels


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return value


def train_feature_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    feature_dim: int = 64,
    channels: Sequence[int] = (16, 32),
    device: str | torch.device | None = None,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on real images with Adam and cross-entropy.

    Deterministic under ``seed``: the initial weights and the mini-batches come from seeded generators
    (the global RNG state is saved and restored, so the caller's random stream is not disturbed). On the
    CPU two calls give bit-identical weights; on CUDA that also needs deterministic cuDNN kernels
    (``torch.use_deterministic_algorithms(True)``).

    Args:
        images: ``(N, 1, H, W)`` real images, floating, values in [0, 1]; ``(H, W)`` becomes the
            classifier's ``image_shape``.
        labels: ``(N,)`` integer class ids.
        num_classes: number of classes; default ``labels.max() + 1``.
        steps: optimiser steps.
        batch_size: images per step (sampled without replacement within each pass over the data).
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        seed: seed of the initialisation and the batch order.
        feature_dim: size of the feature layer.
        channels: conv widths.
        device: where to train; default the images' device.

    Returns:
        The trained classifier, in eval mode.

    Raises:
        ValueError: bad image or label shapes, values outside [0, 1], fewer than 2 classes, bad
            hyper-parameters.

    Example:
        >>> x = torch.rand(64, 1, 8, 8); y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
        >>> clf = train_feature_classifier(x, y, steps=5, seed=0)
        >>> clf.features(x).shape
        torch.Size([64, 64])
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 1:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images: expected shape (N, 1, H, W) of single-channel images, got {got}")
    n = images.shape[0]
    _check_labels(labels, n, num_classes)
    if n < 2:
        raise ValueError(f"images: expected at least 2 images to train on, got {tuple(images.shape)}")
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    steps = _check_positive_int(steps, "steps")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if not lr > 0:
        raise ValueError(f"lr: expected a value > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay: expected a value >= 0, got {weight_decay!r}")
    dev = torch.device(device) if device is not None else images.device
    # Build under a forked global RNG so that init is a function of seed alone and the caller's
    # stream is left where it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(
            (images.shape[2], images.shape[3]), classes, feature_dim=feature_dim, channels=channels
        )
    model.check_images(images)
    model.to(dev)
    x_all = images.to(dev, torch.float32)
    y_all = labels.to(dev, torch.int64)
    order_gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    order = torch.randperm(n, generator=order_gen)
    pos = 0
    bs = min(batch_size, n)
    for _ in range(steps):
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=order_gen), 0
        idx = order[pos : pos + bs].to(dev)
        pos += bs
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x_all[idx]), y_all[idx])
        loss.backward()
        opt.step()
    model.eval()
    return model
