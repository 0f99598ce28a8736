"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement, for M >= 2 modalities.

Reading of Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022:

1. *Scores.* For each modality ``m``, ``s_m = sum_i softmax(o_i^m)[y_i]``: the summed softmax probability
   of the true class under the modality's own share of the fused output. For the concatenation head this
   share is ``o^m = W_m h_m + b / M`` (the paper splits the bias equally between its two modalities); for
   late fusion it is the modality's own head ``W_m h_m + b_m``.
2. *Discrepancy ratio.* The paper's two-modality ratio ``rho_m = s_m / s_n`` generalises to M modalities
   as ``rho_m = s_m / mean_{n != m} s_n`` (identical for M = 2).
3. *Coefficient.* A dominant modality (``rho_m > 1``) gets ``k_m = 1 - tanh(alpha (rho_m - offset))``,
   the others ``k_m = 1``. ``offset = 1`` (the default, as the issue specifies) makes ``k`` continuous at
   ``rho = 1``; ``offset = 0`` is the form of the paper's Eq. (10) and released code, which jumps from 1 to
   ``1 - tanh(alpha)`` at ``rho = 1``.
4. *Modulation.* The *task* gradient reaching encoder ``m`` through the fused logits is multiplied by
   ``k_m`` (:func:`scale_grad` on the pre-fusion embedding; the fusion head itself is not modulated).
   In the paper only the task loss exists; here a regulariser such as DAGR keeps its unmodulated gradient.
5. *Generalisation enhancement (GE).* After back-propagation every encoder weight tensor (matrices and
   conv kernels; biases excluded) of every modality gets i.i.d. Gaussian noise
   ``N(0, (noise * std(g))^2)`` added to its gradient ``g`` (the released code adds it to conv kernels
   with the std of the unmodulated gradient; here ``g`` is the accumulated, already modulated gradient).
   The paper modulates during a window of epochs; here it is on for the whole run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor


def modality_scores(logits: Mapping[str, Tensor], labels: Tensor) -> dict[str, float]:
    """``s_m = sum_i softmax(o_i^m)[y_i]`` for each modality's logits ``o^m`` of shape ``(B, C)``.

    Raises:
        ValueError: a logits tensor that is not ``(B, C)`` for the ``B`` labels (names the modality).
    """
    out = {}
    for m, o in logits.items():
        if o.dim() != 2 or o.shape[0] != labels.shape[0]:
            raise ValueError(f"{m}: expected logits of shape ({labels.shape[0]}, C), got {tuple(o.shape)}")
        p = torch.softmax(o.detach().float(), dim=1)
        out[m] = float(p.gather(1, labels.long()[:, None]).sum())
    return out


def ogm_ge_coefficients(scores: Mapping[str, float], alpha: float, offset: float = 1.0) -> dict[str, float]:
    """Modulation coefficients ``k_m`` from the per-modality scores (see the module docstring).

    ``rho_m = s_m / mean_{n != m} s_n``; ``k_m = 1 - tanh(alpha * (rho_m - offset))`` if ``rho_m > 1``,
    else 1.

    Args:
        scores: modality -> ``s_m >= 0`` (at least two modalities).
        alpha: modulation strength ``>= 0``.
        offset: ``1`` (continuous form) or ``0`` (the paper's Eq. 10).

    Example:
        >>> k = ogm_ge_coefficients({"audio": 3.0, "video": 1.0}, alpha=0.5)
        >>> round(k["audio"], 4), k["video"]   # 1 - tanh(0.5 * (3 - 1))
        (0.2384, 1.0)
    """
    if len(scores) < 2:
        raise ValueError(f"scores: expected at least 2 modalities, got {list(scores)}")
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha: expected a finite value >= 0, got {alpha!r}")
    total = sum(scores.values())
    others = len(scores) - 1
    out = {}
    for m, s in scores.items():
        if s < 0 or not math.isfinite(s):
            raise ValueError(f"{m}: expected a finite score >= 0, got {s!r}")
        rest = (total - s) / others
        ratio = s / rest if rest > 0 else (math.inf if s > 0 else 1.0)
        out[m] = 1.0 - math.tanh(alpha * (ratio - offset)) if ratio > 1.0 else 1.0
    return out


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the incoming gradient is multiplied by a constant in backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, coefficient: float) -> Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.coefficient, None


def scale_grad(x: Tensor, coefficient: float) -> Tensor:
    """``x`` in the forward pass; its gradient is multiplied by ``coefficient`` in the backward pass."""
    out: Tensor = _ScaleGrad.apply(x, float(coefficient))
    return out


@torch.no_grad()
def add_gradient_noise(
    params: Iterable[torch.nn.Parameter], scale: float, generator: torch.Generator
) -> None:
    """GE step: ``g <- g + N(0, (scale * std(g))^2)`` for every weight tensor (``dim >= 2``) with a gradient.

    Args:
        params: encoder parameters.
        scale: noise scale relative to the gradient's own standard deviation (``0``: no-op).
        generator: seeded CPU generator (the noise is drawn on the CPU, then moved).
    """
    if scale <= 0:
        return
    for p in params:
        g = p.grad
        if g is None or g.dim() < 2 or g.numel() < 2:
            continue
        std = float(g.float().std()) * scale + 1e-8
        noise = torch.randn(g.shape, generator=generator, dtype=torch.float32) * std
        g.add_(noise.to(device=g.device, dtype=g.dtype))
