"""L2Dir's magnitude head: a small MLP that maps frozen backbone features to one positive scalar.

L2Dir (Zong et al., ACL 2026) splits an embedding into a direction ``ẑ`` (from the projection head,
trained by a contrastive term) and a magnitude ``r`` reconstructed from the frozen backbone feature of
the same example: ``r = softplus(MLP(x))``; the full vector is ``u = r·ẑ``. The head learns through the
terms of :class:`mmgeom.losses.L2DirLoss` that see ``r`` with its gradient (the norm alignment, InfoTN,
and the reconstruction target :meth:`MagnitudeHead.reconstruction_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from ..functional import magnitude_reconstruction

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def _positive_int(value: object, name: str, modality: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{modality}: {name} must be an integer >= 1, got {value!r}")
    return value


def _positive_float(value: object, name: str, modality: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{modality}: {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{modality}: {name} must be finite and {bound}, got {value!r}")
    return v


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) = log(1 + e^x) = y`` for ``y > 0`` (stable for large ``y``)."""
    if not y > 0:
        raise ValueError(f"inverse_softplus: expected y > 0, got {y!r}")
    return y + math.log(-math.expm1(-y))


class MagnitudeHead(nn.Module):
    """``r = softplus(MLP(x)) + min_magnitude``: one positive magnitude per example, ``(B, D) -> (B,)``.

    The MLP has ``depth`` linear layers (``depth=1`` is affine) with ``hidden`` units and ``activation``
    between them. ``input_norm=True`` puts a LayerNorm on the input first; it is off by default because it
    removes each feature's overall scale — the very quantity a magnitude can be reconstructed from. The
    last layer's bias starts at ``softplus⁻¹(init_magnitude)`` and its weights at ``init_scale`` times
    PyTorch's default initialisation (default a tenth), so every example starts near ``init_magnitude``
    and the head learns deviations from it (small rather than zero weights, so that the gradient reaches
    every layer from the first step); ``min_magnitude`` keeps ``r`` strictly positive where softplus
    underflows, as :class:`~mmgeom.losses.L2DirLoss` requires.

    Weight decay: :meth:`no_weight_decay` names the parameters an optimiser should not decay — by default
    all of them, because decay pulls the weights to zero, i.e. towards a constant magnitude (the collapse
    this head is meant to avoid); ``decay_weights=True`` exempts only biases and LayerNorm parameters (the
    usual convention). :func:`weight_decay_groups` turns that into AdamW parameter groups for any model.

    Gradients reach the head's parameters through ``L2DirLoss(variant="paper")`` (the default); the
    ``"release"`` variant detaches the magnitudes as the authors' public code does, so the head does not
    train there.

    Reference: Zong et al., "L2-norm alignment and Directional consistency", ACL 2026 (the lightweight
    MLP that reconstructs each example's magnitude from frozen backbone features).

    Args:
        in_dim: feature dimension ``D`` of the frozen backbone.
        hidden: width of the hidden layers.
        depth: number of linear layers (>= 1).
        activation: ``"gelu"``, ``"relu"``, ``"silu"`` or ``"tanh"``.
        input_norm: apply a (learnable) LayerNorm to the features first (default off, see above).
        init_magnitude: magnitude of every example at initialisation (> 0).
        init_scale: factor on the default initialisation of the last layer's weights (>= 0).
        min_magnitude: floor added to the softplus output (>= 0).
        modality: name used in error messages.
        decay_weights: let weight decay act on the linear weights (default: exempt every parameter).

    Raises:
        ValueError: a non-integer or non-positive size, an unknown activation, a non-positive
            ``init_magnitude``, a negative ``min_magnitude`` or a non-bool flag.

    Example:
        >>> head = MagnitudeHead(384, hidden=64, init_magnitude=3.0)
        >>> r = head(torch.randn(8, 384))
        >>> r.shape, bool((r > 0).all())
        (torch.Size([8]), True)
    """

    def __init__(
        self,
        in_dim: int,
        *,
        hidden: int = 128,
        depth: int = 2,
        activation: str = "gelu",
        input_norm: bool = False,
        init_magnitude: float = 1.0,
        init_scale: float = 0.1,
        min_magnitude: float = 1e-4,
        modality: str = "input",
        decay_weights: bool = False,
    ) -> None:
        super().__init__()
        self.modality = str(modality)
        self.in_dim = _positive_int(in_dim, "in_dim", self.modality)
        self.hidden = _positive_int(hidden, "hidden", self.modality)
        self.depth = _positive_int(depth, "depth", self.modality)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{self.modality}: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.init_magnitude = _positive_float(init_magnitude, "init_magnitude", self.modality)
        self.min_magnitude = _positive_float(min_magnitude, "min_magnitude", self.modality, allow_zero=True)
        self.init_scale = _positive_float(init_scale, "init_scale", self.modality, allow_zero=True)
        if self.init_magnitude <= self.min_magnitude:
            raise ValueError(
                f"{self.modality}: init_magnitude ({init_magnitude}) must exceed min_magnitude "
                f"({min_magnitude})"
            )
        for flag, value in (("input_norm", input_norm), ("decay_weights", decay_weights)):
            if not isinstance(value, bool):
                raise ValueError(f"{self.modality}: {flag} must be a bool, got {value!r}")
        self.input_norm = input_norm
        self.decay_weights = decay_weights
        layers: list[nn.Module] = [nn.LayerNorm(self.in_dim)] if input_norm else []
        width = self.in_dim
        for _ in range(self.depth - 1):
            layers += [nn.Linear(width, self.hidden), _ACTIVATIONS[activation]()]
            width = self.hidden
        last = nn.Linear(width, 1)
        with torch.no_grad():
            last.weight.mul_(self.init_scale)
            last.bias.fill_(inverse_softplus(self.init_magnitude - self.min_magnitude))
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim)`` features → ``(B,)`` magnitudes ``> 0``.

        Raises:
            ValueError: ``x`` is not a floating ``(B, in_dim)`` tensor; the message names the modality.
        """
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.modality}: expected features of shape (B, {self.in_dim}), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"{self.modality}: expected floating-point features, got dtype {x.dtype}")
        return nnf.softplus(self.net(x).squeeze(1)) + self.min_magnitude

    def reconstruction_loss(self, x: Tensor, r: Tensor | None = None, *, centered: bool = True) -> Tensor:
        """Regress the frozen feature's own L2 norm: ``magnitude_reconstruction(r, ||x||, centered)``.

        ``mean_i (log r_i - log ||x_i||)²``, or with ``centered=True`` the same on log-values minus their
        batch means (only the relative pattern of the norms; the overall level is left to the other
        terms). ``||x||`` is the raw feature's norm, taken before any input LayerNorm and as a constant.

        Args:
            x: ``(B, in_dim)`` frozen features.
            r: this head's output on ``x`` if already computed (saves a forward pass).
            centered: reconstruct only the relative pattern.
        """
        if r is None:
            r = self(x)
        elif not isinstance(r, Tensor) or tuple(r.shape) != (x.shape[0],):
            got = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ValueError(f"{self.modality}: r: expected shape ({x.shape[0]},), got {got}")
        return magnitude_reconstruction(r, x.detach().norm(dim=1), centered=centered)

    def no_weight_decay(self) -> set[str]:
        """Names (relative to this head) of the parameters an optimiser should not decay."""
        if not self.decay_weights:
            return {name for name, _ in self.named_parameters()}
        return {
            name
            for name, p in self.named_parameters()
            if name.endswith("bias") or p.dim() < 2  # biases and LayerNorm gains
        }

    def extra_repr(self) -> str:
        return (
            f"modality={self.modality!r}, in_dim={self.in_dim}, hidden={self.hidden}, depth={self.depth}, "
            f"init_magnitude={self.init_magnitude:g}, input_norm={self.input_norm}"
        )


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: decay everything except what submodules' ``no_weight_decay()`` name.

    Any submodule with a ``no_weight_decay()`` method (e.g. :class:`MagnitudeHead`) contributes its
    names, prefixed with its path in ``model``. Parameters that do not require a gradient are left out;
    empty groups are dropped.

    Example:
        >>> model = nn.ModuleDict({"proj": nn.Linear(4, 2), "mag": MagnitudeHead(4)})
        >>> [(len(g["params"]), g["weight_decay"]) for g in weight_decay_groups(model, 0.1)]
        [(2, 0.1), (4, 0.0)]
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay!r}")
    exempt: set[str] = set()
    for prefix, module in model.named_modules():
        names = getattr(module, "no_weight_decay", None)
        if callable(names):
            exempt |= {f"{prefix}.{n}" if prefix else n for n in names()}
    decay: list[nn.Parameter] = []
    keep: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (keep if name in exempt else decay).append(p)
    groups: Iterable[dict[str, Any]] = (
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": keep, "weight_decay": 0.0},
    )
    return [g for g in groups if g["params"]]
