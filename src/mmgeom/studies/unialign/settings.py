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
ABLATIONS: dict[str, LossFactory] = {
    "UniAlign (anchor), default": LOSSES["UniAlign (anchor)"],
    "- U(Z) (lambda_uni = 0)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_uni=0.0),
    "- alignment (lambda_align = 0)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_align=0.0),
    "+ U(C) + volume (lambda_vol = 1)": lambda a, m, s: create_loss("unialign", anchor=a, lambda_vol=1.0),
    "+ U(C) only": lambda a, m, s: create_loss("unialign", anchor=a, lambda_centroid=1.0, lambda_det=0.0),
    "+ volume only": lambda a, m, s: create_loss("unialign", anchor=a, lambda_centroid=0.0, lambda_det=1.0),
    "lambda_uni = 1/M (mean over views)": lambda a, m, s: create_loss(
        "unialign", anchor=a, lambda_uni=1.0 / m
    ),
}

#: Losses of the anchor sweep.
ANCHOR_LOSSES = ("UniAlign (anchor)", "InfoNCE (anchor)")
