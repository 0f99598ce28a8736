"""Per-view standardisation fitted on the training rows only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .multiview import MultiViewDataset, check_view_mapping


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / scale`` per view and column.

    ``scale`` is the population standard deviation (``ddof=0``) of the fitting rows; a column whose
    standard deviation is at most ``min_std`` (constant on those rows) gets scale 1, so it maps to
    ``x - mean`` instead of being blown up by a near-zero divisor.

    Attributes:
        mean: view -> ``(D,)`` column means.
        scale: view -> ``(D,)`` column divisors.
    """

    mean: dict[str, Tensor]
    scale: dict[str, Tensor]

    @classmethod
    def fit(cls, data: MultiViewDataset, min_std: float = 1e-6) -> Standardizer:
        """Fit on every row of ``data`` (pass the training subset). Statistics are computed in float64."""
        if len(data) < 1:
            raise ValueError("standardize: cannot fit on an empty dataset")
        mean, scale = {}, {}
        for v, x in data.views.items():
            x64 = x.double()
            mu = x64.mean(dim=0)
            sd = x64.std(dim=0, correction=0)
            sd = torch.where(sd > min_std, sd, torch.ones_like(sd))
            mean[v], scale[v] = mu.float(), sd.float()
        return cls(mean, scale)

    def transform_views(self, views: dict[str, Tensor]) -> dict[str, Tensor]:
        """Standardise a ``view -> (N, D)`` mapping (every view must have been fitted)."""
        check_view_mapping(views, {v: m.shape[0] for v, m in self.mean.items()})
        return {v: (x - self.mean[v]) / self.scale[v] for v, x in views.items()}

    def transform(self, data: MultiViewDataset) -> MultiViewDataset:
        """A standardised copy of ``data``."""
        return MultiViewDataset(self.transform_views(data.views), data.labels, data.name, data.class_names)
