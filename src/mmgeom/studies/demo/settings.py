"""What the comparison demo trains: the losses, the shared training settings, the classification part."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LossSpec:
    """One column of the demo: a display label, a registered loss name and its keyword arguments.

    Attributes:
        label: shown in the table header.
        folder: the run's sub-folder.
        name: registered loss (:func:`mmgeom.losses.create_loss`).
        kwargs: its arguments (the rest are the loss's defaults).
    """

    label: str
    folder: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


#: The anchor of the anchored losses: the 16x15 pixel image, the view an image-text user would anchor on.
ANCHOR = "pix"

#: The three columns: a contrastive baseline, the geometry-aware method, the classic geometric pair.
LOSSES: tuple[LossSpec, ...] = (
    LossSpec("InfoNCE (anchor)", "infonce", "infonce", {"temperature": 0.1, "anchor": ANCHOR}),
    LossSpec("UniAlign", "unialign", "unialign", {"anchor": ANCHOR}),
    LossSpec("align + uniform", "align_uniform", "align_uniform", {}),
)


@dataclass(frozen=True)
class DemoSettings:
    """Settings of ``mmgeom demo`` (the comparison).

    Attributes:
        steps: training steps of each retrieval run (``None``: the packaged demo config's).
        overrides: dotted config overrides applied to every run (``train.seed=1`` …).
        losses: the columns.
        classify: run the classification part.
        classify_views: the two views of the fusion classifier (unequal quality: ``fac`` is the best single
            view, ``mor`` the weakest).
        classify_epochs: its epochs (the part takes a few seconds).
        dagr: DAGR keyword arguments of the "with DAGR" run (``{}``: the library's defaults).
        seed: seed of the classification runs (model initialisation and batch order).
    """

    steps: int | None = None
    overrides: tuple[str, ...] = ()
    losses: tuple[LossSpec, ...] = LOSSES
    classify: bool = True
    classify_views: tuple[str, str] = ("fac", "mor")
    classify_epochs: int = 15
    dagr: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
