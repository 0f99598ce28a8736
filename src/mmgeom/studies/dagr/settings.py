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
_BANDS: tuple[float | str, ...] = ("auto", 0.5)
#: The validation sweep: (lambda_d, lambda_a, delta) candidates for the full regulariser. On exact ties
#: the first wins: the calibrated band, then the library's default lambda_a = 1.
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

    @property
    def name(self) -> str:
        head = "" if self.fusion == "concat" else f"{self.fusion}/"
        return head + self.mode + ("" if self.variant == "none" else f"+{self.variant}")


def _settings(ablate: tuple[str, ...], late: bool) -> list[Setting]:
    out = []
    for mode in ("joint", "dgl", "ogm_ge"):
        variants = list(VARIANTS) if mode in ablate else ["none", "dagr"]
        out += [Setting(mode, v) for v in variants]
    return [*out, Setting("joint", "none", "late"), Setting("joint", "dagr", "late")] if late else out


Parts = tuple[MultiViewDataset, MultiViewDataset, MultiViewDataset]
