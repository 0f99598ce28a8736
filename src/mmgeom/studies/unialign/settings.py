"""Configuration of the UniAlign study: views, sizes (full / quick), the losses and ablations compared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ...losses import create_loss

#: Anchor first (``pix``, the 16x15 image), then the other views in the dataset's canonical order.
VIEW_ORDER: tuple[str, ...] = ("pix", "fou", "fac", "kar", "zer", "mor")
ANCHOR = "pix"


@dataclass(frozen=True)
class Settings:
    """Everything that defines a run of the study (stored in ``results.json``).

    Attributes:
        ms: numbers of views ``M`` (the first ``M`` of :data:`VIEW_ORDER`).
        seeds: seeds per setting (model init and batch order; the data split is fixed).
        steps: updates per training.
        batch_size: rows per batch.
        lr: AdamW peak learning rate (linear warm-up, then cosine to 0).
        weight_decay: AdamW weight decay.
        warmup_steps: warm-up updates.
        grad_clip: global gradient-norm clip.
        hidden: MLP head hidden width (2 layers, LayerNorm, GELU).
        out_dim: embedding dimension.
        curve_every: evaluate ``zeta``/``chi``/Hölder every this many steps in the ``M = max`` runs.
        temperature: InfoNCE training temperature, also the ``tau`` of ``zeta`` for every loss.
        bandwidth: Hölder KDE bandwidth on the unit sphere.
        probe_l2: weight penalty of the linear probe.
        probe_tolerance: L-BFGS tolerance of the probe (at 1e-6 the test accuracies agree with 1e-10's).
        holder_samples: Monte-Carlo samples per term of the Hölder estimate (M >= 3).
        split_seed: seed of the stratified 70/10/20 split.
        val_seeds: seeds per configuration of the sensitivity grid (the validation phase); the chosen
            configurations are then evaluated with ``seeds`` seeds (the first ``val_seeds`` are shared).
        anchor_seeds: seeds per setting of the anchor sweep (fewer than ``seeds`` to fit the time budget).
        uniformity_t: the UniAlign losses' ``t``; the tied Hölder diagnostic uses the bandwidth
            ``sqrt((M - 1) / (4 t))`` at which such a loss bounds ``D_H``.
    """

    ms: tuple[int, ...] = (2, 3, 4, 5, 6)
    seeds: int = 5
    steps: int = 200
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    grad_clip: float = 1.0
    hidden: int = 128
    out_dim: int = 64
    curve_every: int = 20
    temperature: float = 0.1
    bandwidth: float = 0.5
    probe_l2: float = 1e-3
    probe_tolerance: float = 1e-6
    holder_samples: int = 2048
    split_seed: int = 0
    val_seeds: int = 2
    anchor_seeds: int = 3
    uniformity_t: float = 2.0

    @property
    def max_m(self) -> int:
        """The largest ``M``: where the ablation, the anchor sweep and the curves run."""
        return max(self.ms)


FULL = Settings()
QUICK = Settings(
    ms=(2, 3),
    seeds=1,
    steps=20,
    batch_size=128,
    warmup_steps=2,
    curve_every=10,
    probe_tolerance=1e-4,
    holder_samples=256,
    val_seeds=1,
    anchor_seeds=1,
)

#: ``(anchor, M, settings) -> loss``.
LossFactory = Callable[[str, int, Settings], nn.Module]


#: Loss label -> factory ``(anchor, M) -> loss``; library defaults unless stated (docs/losses.md).
LOSSES: dict[str, LossFactory] = {
    "InfoNCE (all pairs)": lambda a, m, s: create_loss("infonce", temperature=s.temperature, pairs="all"),
    "InfoNCE (anchor)": lambda a, m, s: create_loss("infonce", temperature=s.temperature, anchor=a),
    "GRAM": lambda a, m, s: create_loss("gram", anchor=a),
    "Align+Uniform": lambda a, m, s: create_loss("align_uniform"),
    "UniAlign (anchor)": lambda a, m, s: create_loss("unialign", anchor=a),
    "UniAlign (centroid)": lambda a, m, s: create_loss("unialign", anchor=a, alignment="centroid"),
}

#: Ablation label -> factory, all at ``M = max``; the first is the full default UniAlign (anchor).
#: (The reduction and ``lambda_vol`` choices are covered at every ``M`` by :data:`GRID`.)
ABLATIONS: dict[str, LossFactory] = {
    "UniAlign (anchor), default": LOSSES["UniAlign (anchor)"],
    "- U(Z) (lambda_uni = 0)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_uni=0.0),
    "- alignment (lambda_align = 0)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_align=0.0),
    "+ U(C) + volume (lambda_vol = 1)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_vol=1.0),
    "+ U(C) only": lambda a, m, s: create_loss("unialign", anchor=a, lambda_centroid=1.0, lambda_det=0.0),
    "+ volume only": lambda a, m, s: create_loss("unialign", anchor=a, lambda_centroid=0.0, lambda_det=1.0),
}

#: The baselines the best validated UniAlign is compared with (each at its library defaults).
BASELINES: tuple[str, ...] = ("InfoNCE (all pairs)", "InfoNCE (anchor)", "GRAM", "Align+Uniform")


@dataclass(frozen=True)
class GridPoint:
    """One configuration of UniAlign's sensitivity grid (every other argument at the library default).

    Attributes:
        alignment: ``"anchor"`` or ``"centroid"``.
        reduction: ``uniformity_reduction``, ``"mean"`` or ``"sum"``.
        align_weight: ``"fixed"`` (weight 1) or ``"holder"`` (the Hölder-derived weight, bandwidth tied to t).
        lambda_vol: 0 (no U(C), no volume) or 1 (the ``"retrieval"`` preset's value).
    """

    alignment: str
    reduction: str
    align_weight: str
    lambda_vol: float

    @property
    def label(self) -> str:
        """``"UniAlign (anchor; sum, w = holder, vol 1)"``; the defaults' labels are :data:`LOSSES` keys."""
        if (self.reduction, self.align_weight, self.lambda_vol) == ("mean", "fixed", 0.0):
            return f"UniAlign ({self.alignment})"
        w = "1" if self.align_weight == "fixed" else "holder"
        return f"UniAlign ({self.alignment}; {self.reduction}, w = {w}, vol {self.lambda_vol:g})"

    def factory(self) -> LossFactory:
        """The loss factory of this configuration."""

        def make(a: str, m: int, s: Settings) -> nn.Module:
            return create_loss(
                "unialign",
                anchor=a,
                alignment=self.alignment,
                uniformity_reduction=self.reduction,
                align_weight=self.align_weight,
                lambda_vol=self.lambda_vol,
                t=s.uniformity_t,
            )

        return make


#: The sensitivity grid the reviewers asked for, at every M: reduction sum/mean × alignment weight
#: {1, Hölder} × without/with U(C) + volume (lambda_vol 0 / 1), for anchor and centroid alignment.
GRID: tuple[GridPoint, ...] = tuple(
    GridPoint(al, red, w, vol)
    for al in ("anchor", "centroid")
    for red in ("mean", "sum")
    for w in ("fixed", "holder")
    for vol in (0.0, 1.0)
)

#: The selection criterion of every validated choice: this metric on the validation split, higher wins.
SELECTION_KEY = "val/hit@1"

#: Losses of the anchor sweep.
ANCHOR_LOSSES = ("UniAlign (anchor)", "InfoNCE (anchor)")
