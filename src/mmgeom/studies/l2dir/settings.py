"""Configuration of the L2Dir study: methods, scorings, metrics, sizes (full / quick)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    """One compared method: a loss configuration plus the hyper-parameter values validated for it.

    Attributes:
        loss: registered loss name (``"infonce"`` or ``"l2dir"``).
        loss_kwargs: its keyword arguments (besides temperature and ``lambda_n``).
        magnitude_head: give each modality a :class:`~mmgeom.models.MagnitudeHead` on its frozen features
            (input LayerNorm off, the library default; exempt from weight decay).
        note: one-line description for the results file.
        head_init_scale: the MagnitudeHead's ``init_scale``.
        weight_decay: AdamW weight decay for this method (``None``: the study's).
        reconstruction: pass ``magnitude_targets`` = the L2 norms of the frozen input features (the loss's
            reconstruction term regresses the MagnitudeHead onto them).
        grid: candidate overrides of the loss's keyword arguments (e.g. ``{"lambda_n": 0.1}``); each is
            trained with the study's ``val_seeds`` seeds and the one with the best validation mAP under
            ``select_score`` is kept. ``({},)``: nothing to choose.
        select_score: the scoring whose validation mAP chooses the grid point.
    """

    loss: str
    loss_kwargs: dict[str, Any]
    magnitude_head: bool
    note: str
    head_init_scale: float = 0.1
    weight_decay: float | None = None
    reconstruction: bool = False
    grid: tuple[dict[str, float], ...] = ({},)
    select_score: str = "magnitude"


#: The ``lambda_n`` values validated for every method with a norm term.
LAMBDA_N_GRID: tuple[dict[str, float], ...] = ({"lambda_n": 0.1}, {"lambda_n": 1.0})

#: The compared methods, in report order.
METHODS: dict[str, Method] = {
    "infonce": Method("infonce", {}, False, "InfoNCE only", select_score="cosine"),
    "infonce+norm": Method(
        "l2dir",
        {"norm_term": "tn"},
        False,
        "InfoNCE + TN norm term; magnitudes = raw norms of the head outputs",
        grid=LAMBDA_N_GRID,
    ),
    "l2dir": Method(
        "l2dir",
        {"norm_term": "tn"},
        True,
        "InfoNCE + TN norm term; MagnitudeHead on the frozen features",
        grid=LAMBDA_N_GRID,
    ),
    "l2dir-infotn": Method(
        "l2dir",
        {"norm_term": "tn", "objective": "infotn"},
        True,
        "contrastive CE over the S_TN logits (objective='infotn': magnitude takes part in the ranking) + "
        "TN norm term; MagnitudeHead on the frozen features",
        grid=LAMBDA_N_GRID,
    ),
    "l2dir-recon": Method(
        "l2dir",
        {"norm_term": "tn", "lambda_n": 1.0},
        True,
        "as l2dir, plus the reconstruction term: the MagnitudeHead regresses the frozen feature's own L2 "
        "norm (centred log-magnitudes)",
        reconstruction=True,
        grid=({"reconstruction_weight": 0.1}, {"reconstruction_weight": 1.0}),
    ),
    "headnorm-infotn": Method(
        "l2dir",
        {"norm_term": "tn", "objective": "infotn", "magnitude_source": "head_norm"},
        False,
        "objective='infotn' with magnitudes = the head output's pre-normalisation norm "
        "(magnitude_source='head_norm', what the release carries); no MagnitudeHead",
        grid=LAMBDA_N_GRID,
    ),
    "release": Method(
        "l2dir",
        {"variant": "release"},
        False,
        "the public code's objective: 0.5 · (-log cos)-weighted TN over query row 2k / target row 2k+1 "
        "across the sides + 0.5 · CE of the norm differences of normalised vectors, τ_r = 0.02, "
        "magnitudes detached, no InfoNCE in the loss; no MLP",
    ),
}
SCORES = ("cosine", "magnitude")
#: Retrieval metrics reported in the tables.
METRICS = ("hit@1", "hit@5", "hit@10", "map", "ndcg@10")
TASKS = {
    "fashion": "text → image (Fashion-MNIST, asymmetric)",
    "mfeat": "cross-view digits (symmetric)",
    "store": "a user's feature store (mmgeom study l2dir --store)",
}


@dataclass(frozen=True)
class StudySettings:
    """Sizes and hyper-parameters of one study run (``FULL`` or ``QUICK``)."""

    seeds: int = 5
    dim: int = 64
    hidden: int = 256
    mag_hidden: int = 128
    temperature: float = 0.1
    lambda_n: float = 1.0
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    grad_clip: float = 1.0
    fashion_steps: int = 600  # 1000 before the validation grid; cut so the full run fits in ~30 min
    fashion_batch: int = 256
    fashion_train_rows: int | None = None  # None: all 60000 training images
    fashion_test_rows: int | None = None  # None: all 10000 test images
    mfeat_steps: int = 200  # 300 before the validation grid (same reason)
    mfeat_batch: int = 256
    mfeat_views: tuple[str, ...] | None = None  # None: all six views
    val_seeds: int = 2  # seeds per grid point in the validation phase (the first of the ``seeds``)
    val_fraction: float = 0.1  # training images / mfeat training digits held out for validation


FULL = StudySettings()
QUICK = StudySettings(
    seeds=1,
    fashion_steps=30,
    fashion_batch=64,
    fashion_train_rows=2000,
    fashion_test_rows=1000,
    mfeat_steps=30,
    mfeat_batch=64,
    mfeat_views=("fac", "kar", "pix"),
    warmup_steps=5,
    val_seeds=1,
    val_fraction=0.2,
)
