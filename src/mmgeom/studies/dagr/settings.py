"""Configuration of the DAGR study: settings (training mode x fusion x regulariser variant) and the sweep."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ...data import (
    MultiViewDataset,
)

#: Regulariser variants: name -> DAGR ``mode`` (``None``: no regulariser).
VARIANTS: dict[str, str | None] = {
    "none": None,
    "dagr": "full",
    "disp-only": "dispersion_only",
    "anchor-only": "anchor_only",
    "always-on": "always_on",
}
#: Bands: quantiles of the first-epoch drift (``delta="qP"``); always-on (delta = 0) is its own variant.
_BANDS: tuple[float | str, ...] = ("q0.1", "q0.25", "q0.5")
#: Training modes of the study: DGL as published (shared head) and the auxiliary-head variant.
MODES: tuple[str, ...] = ("joint", "dgl", "dgl-aux", "ogm_ge")
#: The validation sweep: (lambda_d, lambda_a, delta) candidates for the full regulariser. On exact ties
#: the first wins: the lowest quantile, then the library's default lambda_a = 1.
SWEEP: list[tuple[float, float, float | str]] = [
    (ld, la, d) for d, ld, la in itertools.product(_BANDS, (0.1, 0.3, 1.0), (1.0, 0.1))
]
#: Metrics whose per-epoch curves are kept (mean over modalities / pairs).
CURVES = ("fused", "unimodal/mean", "drift/mean", "rank/mean", "margin/mean", "cos_gap/mean")


@dataclass(frozen=True)
class Setting:
    """One row of the results: training mode, fusion head, regulariser variant."""

    mode: str
    variant: str
    fusion: str = "concat"
    warm: bool = False

    @property
    def name(self) -> str:
        head = ("warm/" if self.warm else "") + ("" if self.fusion == "concat" else f"{self.fusion}/")
        return head + self.mode + ("" if self.variant == "none" else f"+{self.variant}")


def _settings(ablate: tuple[str, ...], late: bool, warm: bool = False) -> list[Setting]:
    """Every mode with and without DAGR (all variants for the modes in ``ablate``), late fusion, and the
    warm-started regime (encoders pre-aligned by a cross-modal InfoNCE phase: drift well below 2)."""
    out = []
    for mode in MODES:
        variants = list(VARIANTS) if mode in ablate else ["none", "dagr"]
        out += [Setting(mode, v) for v in variants]
    if late:
        out += [Setting("joint", "none", "late"), Setting("joint", "dagr", "late")]
    if warm:
        out += [Setting("joint", v, warm=True) for v in ("none", "dagr", "always-on")]
    return out


Parts = tuple[MultiViewDataset, MultiViewDataset, MultiViewDataset]
