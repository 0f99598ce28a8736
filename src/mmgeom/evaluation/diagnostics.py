"""Geometry diagnostics of a split's embeddings as flat ``geometry/<name>`` metrics."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ..geometry import diagnose
from ._scalars import scalar_metrics

__all__ = ["geometry_diagnostics"]


def geometry_diagnostics(embeddings: Mapping[str, Tensor], labels: Tensor | None = None) -> dict[str, float]:
    """:func:`mmgeom.geometry.diagnose` on the embeddings, keys prefixed ``geometry/``.

    Args:
        embeddings: view -> ``(N, D)`` embeddings, rows aligned.
        labels: ``(N,)`` class ids for the label-aware diagnostics (``None``: those are skipped).

    Returns:
        ``geometry/<name>`` -> value for every scalar diagnostic.
    """
    return {f"geometry/{k}": v for k, v in scalar_metrics(diagnose(dict(embeddings), labels=labels)).items()}
