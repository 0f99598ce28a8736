"""Settings of one fusion-classification training run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Training modes accepted by :class:`ClassifyConfig`.
MODES = ("joint", "dgl", "dgl-aux", "ogm_ge")
#: Optimisers accepted by :class:`ClassifyConfig`.
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class ClassifyConfig:
    """How to train a :class:`~mmgeom.models.FusionClassifier`.

    Training modes (``mode``):

    * ``"joint"``: cross-entropy of the fused logits, back-propagated through every encoder.
    * ``"dgl"``: disentangled gradient learning as in the public DGL code (Wei et al., "Boosting
      Multimodal Learning via Disentangled Gradient Learning", ICCV 2025): the fusion head ``f`` is trained
      on *detached* pre-fusion embeddings, so its loss sends no gradient into the encoders; each encoder is
      trained by the cross-entropy of the *shared* fusion head given that modality alone (the others
      zero-padded in the concatenation head, omitted in late fusion), whose gradient reaches the encoder
      only (the public code clears it from the fusion module):
      ``L = CE(f(sg(h_1), ..., sg(h_M)), y) + dgl_alpha * sum_m CE(f_sg(h_m alone), y)``.
    * ``"dgl-aux"``: the earlier variant, one separate linear unimodal head ``g_m`` per modality
      (``model.aux``) instead of the shared head: ``... + dgl_alpha * sum_m CE(g_m(h_m), y)``.
    * ``"ogm_ge"``: on-the-fly gradient modulation with generalisation enhancement (Peng et al.,
      "Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022); see
      :mod:`mmgeom.classify.modulation` for the exact reading.

    DAGR (``dagr``, keyword arguments of :class:`mmgeom.losses.DAGRRegularizer`) is added to the task loss
    of any mode, on the raw pre-fusion embeddings (it normalises them itself). With ``delta="auto"`` and no
    ``calibration_steps`` given, the band is calibrated on the first epoch (``calibration_steps`` = steps
    per epoch).

    Attributes:
        mode: ``"joint"``, ``"dgl"``, ``"dgl-aux"`` or ``"ogm_ge"``.
        epochs: passes over the training rows (``>= 1``).
        batch_size: rows per step (``>= 2``; the last incomplete batch of an epoch is dropped).
        optimizer: ``"sgd"`` (momentum 0.9, as in OGM-GE and DGL) or ``"adamw"``.
        lr: peak learning rate (linear warm-up over ``warmup_epochs``, then cosine decay to 0).
        weight_decay: L2 / decoupled weight decay.
        warmup_epochs: length of the linear warm-up, in epochs (may be fractional).
        grad_clip: max global gradient norm (``None``: no clipping).
        dgl_alpha: weight of the unimodal losses in the DGL modes (the public code's default is 4).
        ogm_alpha: modulation strength ``alpha`` in ``"ogm_ge"`` mode.
        ogm_noise: scale of the generalisation-enhancement noise (``0``: plain OGM without GE).
        dagr: DAGR keyword arguments, or ``None`` for no regulariser.
        seed: batch-order and noise seed (model initialisation is the caller's).
    """

    mode: str = "joint"
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float | None = 5.0
    dgl_alpha: float = 1.0
    ogm_alpha: float = 0.5
    ogm_noise: float = 1.0
    dagr: dict[str, Any] | None = field(default=None)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: unknown training mode {self.mode!r}; expected one of {list(MODES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown {self.optimizer!r}; expected one of {list(OPTIMIZERS)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            low = 2 if name == "batch_size" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        for name in ("lr", "weight_decay", "warmup_epochs", "dgl_alpha", "ogm_alpha", "ogm_noise"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, got {self.lr!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip: expected > 0 or None, got {self.grad_clip!r}")
        if self.dagr is not None and not isinstance(self.dagr, dict):
            raise ValueError(f"dagr: expected a dict of DAGRRegularizer arguments or None, got {self.dagr!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict copy (for JSON)."""
        return asdict(self)
