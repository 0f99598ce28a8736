"""Configuration of the L2Dir study: methods, scorings, metrics, sizes (full / quick)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    """One compared configuration.

    Attributes:
        loss: registered loss name (``"infonce"`` or ``"l2dir"``).
        loss_kwargs: its keyword arguments (besides temperature and ``lambda_n``).
        magnitude_head: give each modality a :class:`~mmgeom.models.MagnitudeHead` on its frozen features.
        head_init_scale: the MagnitudeHead's ``init_scale``.
        weight_decay: AdamW weight decay for this method (``None``: the study's).
        note: one-line description for the results file.
    """

    loss: str
    loss_kwargs: dict[str, Any]
    magnitude_head: bool
    note: str
    head_init_scale: float = 0.1
    weight_decay: float | None = None


#: The compared methods, in report order.
METHODS: dict[str, Method] = {
    "infonce": Method("infonce", {}, False, "InfoNCE only"),
    "infonce+norm": Method(
        "l2dir",
        {"norm_term": "tn"},
        False,
        "InfoNCE + TN norm term; magnitudes = raw norms of the head outputs",
    ),
    "l2dir": Method(
        "l2dir", {"norm_term": "tn"}, True, "InfoNCE + TN norm term; MagnitudeHead on the frozen features"
    ),
    "l2dir-logcos": Method(
        "l2dir", {"norm_term": "logcos"}, True, "as l2dir with the -log cos weighted term"
    ),
    "l2dir-free": Method(
        "l2dir",
        {"norm_term": "tn"},
        True,
        "as l2dir, MagnitudeHead at full default init and no weight decay anywhere (ablation)",
        head_init_scale=1.0,
        weight_decay=0.0,
    ),
    "release": Method(
        "l2dir",
        {"norm_term": "tn", "variant": "release"},
        False,
        "the public code: no MLP, magnitudes detached, norm term pairs rows 2k and 2k+1",
    ),
}
SCORES = ("cosine", "magnitude")
#: Retrieval metrics reported in the tables.
METRICS = ("hit@1", "hit@5", "hit@10", "map", "ndcg@10")
TASKS = {"fashion": "text → image (Fashion-MNIST, asymmetric)", "mfeat": "cross-view digits (symmetric)"}


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
    fashion_steps: int = 1000
    fashion_batch: int = 256
    fashion_train_rows: int | None = None  # None: all 60000 training images
    fashion_test_rows: int | None = None  # None: all 10000 test images
    mfeat_steps: int = 300
    mfeat_batch: int = 256
    mfeat_views: tuple[str, ...] | None = None  # None: all six views


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
)
