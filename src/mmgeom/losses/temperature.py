"""Fixed or learnable softmax temperature stored as a clamped log-scale."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import check_positive

#: Learnable log-scales ``ln(1/tau)`` are clamped to ``[0, ln 100]``, i.e. ``tau in [0.01, 1]`` (as CLIP).
MAX_LOG_SCALE = math.log(100.0)


class Temperature(nn.Module):
    """Holds ``tau``. A learnable one is stored as ``log_scale = ln(1/tau)`` and clamped to ``[0, ln 100]``.

    Args:
        init: initial ``tau > 0``; a learnable one must lie in ``[0.01, 1]``.
        learnable: make ``log_scale`` a parameter.
    """

    def __init__(self, init: float = 0.07, learnable: bool = False) -> None:
        super().__init__()
        tau = check_positive(init, "temperature")
        self.learnable = bool(learnable)
        if self.learnable and not (1.0 / 100.0 <= tau <= 1.0):
            raise ValueError(f"temperature: a learnable temperature must start in [0.01, 1], got {init!r}")
        if self.learnable:
            self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / tau)))
        else:
            # float64 keeps a fixed tau exact; a 0-dim tensor does not promote fp32/bf16 logits.
            self.register_buffer("log_scale", torch.tensor(math.log(1.0 / tau), dtype=torch.float64))

    def forward(self) -> Tensor:
        """Current ``tau`` as a scalar tensor (differentiable when learnable)."""
        ls = self.log_scale.clamp(0.0, MAX_LOG_SCALE) if self.learnable else self.log_scale
        return torch.exp(-ls)

    def extra_repr(self) -> str:
        return f"tau={float(self()):.4g}, learnable={self.learnable}"
