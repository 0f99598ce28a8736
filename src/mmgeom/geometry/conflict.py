"""UniAlign's conflict measures between the alignment and uniformity forces of multimodal InfoNCE."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .._validation import check_anchor, check_positive
from ..functional.conflict import conflict_scores
from ._batch import present_rows, select_rows, split_batch


@torch.no_grad()
def conflict_per_row(
    batch: Mapping[str, Tensor], anchor: str | None = None, temperature: float = 0.07
) -> dict[str, Tensor]:
    """Per-row conflict measures ``{"zeta": (B,), "chi": (B,)}`` on the anchor's InfoNCE gradient.

    With the other modalities ``n != a`` and ``p_ij^n = softmax_j(z_i^a . z_j^n / tau)``:
    alignment force ``V_i = sum_n z_i^n``, uniformity force ``Phi_i = sum_n sum_j p_ij^n z_j^n``,
    ``zeta_i = <Phi_i, V_i> / ||V_i||^2`` and ``chi_i = 1 - ||V_i|| / sum_n ||z_i^n||`` (normalised rows).
    The equations live in :func:`mmgeom.functional.conflict.conflict_scores`.

    Reference: Yin et al., "Towards Uniformity and Alignment for Multimodal Representation Learning",
    arXiv 2602.09507.

    Args:
        batch: ``{modality: (B, D)}`` raw embeddings, ``M >= 2``, ``B >= 2``; with a ``"mask"``, only rows
            where every modality is present are used.
        anchor: anchor modality (default: the first of the batch).
        temperature: InfoNCE temperature ``tau > 0``.

    Example:
        >>> b = {"a": torch.randn(8, 4), "b": torch.randn(8, 4)}
        >>> conflict_per_row(b)["chi"].abs().max() < 1e-6  # M = 2: one positive cannot disagree with itself
        tensor(True)
    """
    mods, mask = split_batch(batch)
    names = list(mods)
    a = check_anchor(anchor, names)
    tau = check_positive(temperature, "temperature")
    mods = select_rows(mods, names, present_rows(mask, names), min_rows=2, what="conflict_metrics")
    others = [mods[n] for n in names if n != a]
    zeta, chi = conflict_scores(mods[a], *others, temperature=tau)
    return {"zeta": zeta, "chi": chi}


@torch.no_grad()
def conflict_metrics(
    batch: Mapping[str, Tensor], anchor: str | None = None, temperature: float = 0.07
) -> dict[str, float]:
    """Batch means ``{"zeta": mean_i zeta_i, "chi": mean_i chi_i}`` of :func:`conflict_per_row`.

    ``zeta`` is the uniformity force's component along the alignment force (``zeta = 1``: InfoNCE's
    gradient on the anchor cancels along the direction of its positives); ``chi`` in ``[0, 1]`` measures
    how much the non-anchor modalities disagree (0 when they coincide, always 0 for ``M = 2``).

    Reference: Yin et al., arXiv 2602.09507.

    Example:
        >>> z = torch.randn(8, 4)
        >>> abs(conflict_metrics({"a": z, "b": z, "c": z})["chi"]) < 1e-6
        True
    """
    rows = conflict_per_row(batch, anchor, temperature)
    return {k: float(v.mean()) for k, v in rows.items()}
