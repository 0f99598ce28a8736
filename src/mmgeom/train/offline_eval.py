"""Open a saved run or a feature store for retrieval evaluation (``mmgeom eval``).

Two kinds of source hold paired embeddings (row ``i`` of every modality is the same example):

* a **run directory** (``mmgeom train`` / ``mmgeom demo``): the trained encoder is loaded
  (:func:`~mmgeom.train.load_run`) and embeds one split of the run's data, as training evaluated it;
* a **feature store** (:class:`~mmgeom.data.FeatureStore`, ``mmgeom features``): the stored features are
  evaluated as they are (:func:`~mmgeom.evaluation.open_store_source`).

:func:`open_eval_source` reads either; it lives in ``train`` because reading a run back is training's
business. Scoring is evaluation's: :func:`~mmgeom.evaluation.eval_pairs` and
:func:`~mmgeom.evaluation.evaluate_source`, re-exported here with :class:`~mmgeom.evaluation.EvalSource`
because this module is the documented home of offline evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.store_format import MANIFEST, STORE_FORMAT, is_feature_store
from ..evaluation import (
    RELEVANCE_MODES,
    SCORES,
    EvalSource,
    embed_views,
    eval_pairs,
    evaluate_source,
    open_store_source,
)
from .runload import is_run_dir, load_run

__all__ = [
    "RELEVANCE_MODES",
    "SCORES",
    "EvalSource",
    "eval_pairs",
    "evaluate_source",
    "open_eval_source",
]


def open_eval_source(
    path: str | Path,
    split: str | None = None,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> EvalSource:
    """Open a run directory or a feature store for evaluation.

    Args:
        path: a run directory (``config.yaml``) or a feature store folder (``manifest.json``).
        split: runs: ``"train"``, ``"val"`` or ``"test"`` (default: the run's ``eval.split``); stores: one
            of the store's split names (default: every row).
        checkpoint: runs only: which weights (see :func:`~mmgeom.train.load_run`).
        device: runs only: where the encoder runs.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is neither a run nor a feature store.
        ValueError: an unknown split; ``checkpoint`` given for a feature store.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory (expected a run directory or a feature store)")
    if is_run_dir(root):
        run = load_run(root, checkpoint, device=device)
        name = split if split is not None else run.config.eval.split
        data = run.data.part(name)  # ValueError naming the parts for an unknown split
        embeddings: dict[str, Tensor | np.ndarray] = dict(embed_views(run.encoder, data, device))
        info: dict[str, Any] = {
            "weights": str(run.weights),
            "step": run.step,
            "dataset": run.config.data.dataset
            if run.config.data.store is None
            else f"store {run.config.data.store}",
        }
        return EvalSource("run", root, name, embeddings, data.labels.to(torch.long), info)
    if is_feature_store(root):
        if checkpoint is not None:
            raise ValueError(f"checkpoint: {root} is a feature store, which has no checkpoints")
        return open_store_source(root, split)
    raise FileNotFoundError(
        f"{root}: neither a run directory (no config.yaml; written by mmgeom train / mmgeom demo) nor a "
        f"feature store (no {MANIFEST} of format {STORE_FORMAT!r}; written by mmgeom features)"
    )
