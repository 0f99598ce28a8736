"""Per-modality projection heads: map one view's features ``(B, D_in)`` into the shared space."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import Tensor, nn

from .._registry import Registry

#: Every registered head class (``create_head`` / ``list_heads`` are its public face).
HEADS: Registry[type[nn.Module]] = Registry("head", key="kind")

H = TypeVar("H", bound=type[nn.Module])


def register_head(name: str) -> Callable[[H], H]:
    """Class decorator that makes a head constructible by name (``create_head("mlp", ...)``)."""

    def wrap(cls: H) -> H:
        HEADS.register(name)(cls)
        return cls

    return wrap


def list_heads() -> list[str]:
    """Sorted registered head names."""
    return HEADS.list()


def create_head(kind: str, in_dim: int, out_dim: int, *, modality: str = "input", **kwargs: Any) -> nn.Module:
    """Build a registered head: ``create_head("mlp", 240, 64, hidden=256, modality="pix")``.

    Raises:
        ValueError: unknown ``kind`` (the message lists the registered ones) or bad hyper-parameters.
    """
    return HEADS.get(kind)(in_dim, out_dim, modality=modality, **kwargs)


def _check_dim(value: int, name: str, modality: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{modality}: {name} must be an integer >= 1, got {value!r}")
    return value


class ProjectionHead(nn.Module):
    """Base class: checks its input is ``(B, in_dim)`` before :meth:`project`.

    Args:
        in_dim: input feature dimension.
        out_dim: embedding dimension.
        modality: name used in error messages.
    """

    def __init__(self, in_dim: int, out_dim: int, *, modality: str = "input") -> None:
        super().__init__()
        self.modality = str(modality)
        self.in_dim = _check_dim(in_dim, "in_dim", self.modality)
        self.out_dim = _check_dim(out_dim, "out_dim", self.modality)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim) -> (B, out_dim)``.

        Raises:
            ValueError: ``x`` is not a floating ``(B, in_dim)`` tensor; the message names the modality.
        """
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.modality}: expected input of shape (B, {self.in_dim}), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"{self.modality}: expected a floating-point input, got dtype {x.dtype}")
        return self.project(x)

    def project(self, x: Tensor) -> Tensor:
        """The mapping itself (inputs already checked)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"modality={self.modality!r}, in_dim={self.in_dim}, out_dim={self.out_dim}"


@register_head("linear")
class LinearHead(ProjectionHead):
    """``z = x Wᵀ + b``: one affine map.

    Args:
        in_dim: input feature dimension.
        out_dim: embedding dimension.
        bias: learn ``b``.
        modality: name used in error messages.
    """

    def __init__(self, in_dim: int, out_dim: int, *, bias: bool = True, modality: str = "input") -> None:
        super().__init__(in_dim, out_dim, modality=modality)
        self.linear = nn.Linear(self.in_dim, self.out_dim, bias=bias)

    def project(self, x: Tensor) -> Tensor:
        return self.linear(x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


@register_head("mlp")
class MLPHead(ProjectionHead):
    """``depth`` linear layers; each hidden block is Linear → [LayerNorm] → activation → [Dropout].

    ``depth=1`` is a linear head; ``depth=2`` is ``Linear(in, hidden) → ... → Linear(hidden, out)``.

    Args:
        in_dim: input feature dimension.
        out_dim: embedding dimension.
        hidden: width of the hidden layers.
        depth: number of linear layers (>= 1).
        dropout: dropout probability after each hidden activation, in ``[0, 1)``.
        layer_norm: put a LayerNorm after each hidden linear layer.
        activation: ``"gelu"``, ``"relu"``, ``"silu"`` or ``"tanh"``.
        modality: name used in error messages.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        hidden: int = 256,
        depth: int = 2,
        dropout: float = 0.0,
        layer_norm: bool = False,
        activation: str = "gelu",
        modality: str = "input",
    ) -> None:
        super().__init__(in_dim, out_dim, modality=modality)
        _check_dim(hidden, "hidden", self.modality)
        _check_dim(depth, "depth", self.modality)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{self.modality}: dropout must lie in [0, 1), got {dropout!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{self.modality}: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        layers: list[nn.Module] = []
        width = self.in_dim
        for _ in range(depth - 1):
            layers.append(nn.Linear(width, hidden))
            if layer_norm:
                layers.append(nn.LayerNorm(hidden))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            width = hidden
        layers.append(nn.Linear(width, self.out_dim))
        self.net = nn.Sequential(*layers)

    def project(self, x: Tensor) -> Tensor:
        return self.net(x)
