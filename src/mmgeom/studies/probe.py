"""The studies' linear probe: multinomial logistic regression (L2 on the weights) fitted by L-BFGS in
float64 on frozen embeddings.

Kept in its own module so that it can be redirected to :mod:`mmgeom.evaluation` in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["LinearProbe", "fit_linear_probe", "linear_probe_accuracy"]


@dataclass(frozen=True)
class LinearProbe:
    """A fitted multinomial logistic regression on (standardised) features.

    ``logits(x) = ((x - mean) / scale) @ weight.T + bias``.

    Attributes:
        weight: ``(C, D)`` float64.
        bias: ``(C,)`` float64.
        mean: ``(D,)`` feature means of the training rows (zeros without standardisation).
        scale: ``(D,)`` feature standard deviations of the training rows (ones without standardisation).
        iterations: L-BFGS iterations used.
    """

    weight: Tensor
    bias: Tensor
    mean: Tensor
    scale: Tensor
    iterations: int = 0

    def logits(self, x: Tensor) -> Tensor:
        """``(N, D) -> (N, C)`` float64 logits."""
        if x.dim() != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x: expected shape (N, {self.weight.shape[1]}), got {tuple(x.shape)}")
        return ((x.double() - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict(self, x: Tensor) -> Tensor:
        """``(N,)`` predicted class ids."""
        return self.logits(x).argmax(dim=1)

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        """Fraction of rows of ``x`` whose predicted class equals ``y``."""
        if y.shape != (x.shape[0],):
            raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
        return float((self.predict(x) == y.to(torch.long)).double().mean())


def fit_linear_probe(
    x: Tensor,
    y: Tensor,
    *,
    num_classes: int | None = None,
    l2: float = 1e-3,
    standardize: bool = True,
    max_iter: int = 500,
    tolerance: float = 1e-10,
) -> LinearProbe:
    """Fit multinomial logistic regression ``min_W,b mean_i CE(W x_i + b, y_i) + (l2 / 2) ||W||_F^2``.

    Full-batch L-BFGS (strong-Wolfe line search) in float64 from zero weights: deterministic, and with
    ``l2 > 0`` the objective is strictly convex in ``W`` so the fitted probabilities are unique. The bias
    is not penalised. Features are standardised with the training rows' mean and std first (constant
    features are left unscaled) unless ``standardize=False``.

    Args:
        x: ``(N, D)`` training features (e.g. frozen embeddings).
        y: ``(N,)`` integer class ids in ``[0, num_classes)``.
        num_classes: ``C`` (default ``max(y) + 1``).
        l2: weight penalty ``>= 0``.
        standardize: standardise features with training statistics.
        max_iter: L-BFGS iteration cap.
        tolerance: gradient / step tolerance of L-BFGS.

    Returns:
        The fitted :class:`LinearProbe`.
    """
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"x: expected a non-empty (N, D) tensor, got {tuple(x.shape)}")
    if y.shape != (x.shape[0],) or y.is_floating_point():
        raise ValueError(f"y: expected ({x.shape[0]},) integer class ids, got {tuple(y.shape)} {y.dtype}")
    if l2 < 0 or not math.isfinite(l2):
        raise ValueError(f"l2: expected a finite value >= 0, got {l2!r}")
    xd = x.detach().double().cpu()
    yl = y.detach().long().cpu()
    c = int(num_classes) if num_classes is not None else int(yl.max()) + 1
    if int(yl.min()) < 0 or int(yl.max()) >= c:
        raise ValueError(f"y: class ids must lie in [0, {c}), got [{int(yl.min())}, {int(yl.max())}]")
    d = xd.shape[1]
    if standardize:
        mean = xd.mean(dim=0)
        scale = xd.std(dim=0, unbiased=False)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    else:
        mean, scale = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    xs = (xd - mean) / scale
    weight = torch.zeros(c, d, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=int(max_iter),
        tolerance_grad=tolerance,
        tolerance_change=tolerance * 1e-2,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ weight.T + bias, yl) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    iterations = int(opt.state[weight].get("n_iter", 0))
    return LinearProbe(weight.detach(), bias.detach(), mean, scale, iterations)


def linear_probe_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, **kwargs: Any
) -> float:
    """Test accuracy of :func:`fit_linear_probe` fitted on the training rows (``kwargs`` passed on)."""
    num_classes = int(max(int(train_y.max()), int(test_y.max()))) + 1
    kwargs.setdefault("num_classes", num_classes)
    return fit_linear_probe(train_x, train_y, **kwargs).accuracy(test_x, test_y)
