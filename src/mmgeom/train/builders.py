"""Building a run's parts from its config sections: the data split, the encoder, the loss, the optimizer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data import SplitDataset, load_dataset, split_and_standardize
from ..losses import create_loss
from ..models import MultiViewEncoder, weight_decay_groups
from .config import DataConfig, ExperimentConfig, LossConfig, ModelConfig

__all__ = ["build_data", "build_encoder", "build_loss", "build_optimizer"]


def build_data(cfg: DataConfig) -> SplitDataset:
    """Load the dataset's selected views, split (stratified, seeded) and standardise with train stats.

    With ``cfg.store`` the parts come from the feature store instead: its own split, training rows read
    batch by batch from the memory maps, statistics from a streaming pass
    (:func:`~mmgeom.data.store_training.load_store_split`).
    """
    if cfg.store is not None:
        from ..data.store_training import load_store_split

        return load_store_split(
            cfg.store, cfg.modalities, split=cfg.split, standardize=cfg.standardize, labels=cfg.labels
        )
    data = load_dataset(cfg.dataset, cfg.views)
    return split_and_standardize(data, cfg.fractions, cfg.split_seed, cfg.standardize)


def build_encoder(cfg: ModelConfig, view_dims: dict[str, int]) -> MultiViewEncoder:
    """One ``cfg.head`` head per view, all into ``cfg.out_dim``."""
    return MultiViewEncoder.from_dims(view_dims, cfg.head, cfg.out_dim, **cfg.head_kwargs())


def build_loss(cfg: LossConfig) -> nn.Module:
    """``create_loss(cfg.name, **cfg.kwargs)`` with the loss's own value checks off.

    ``check_values = False``: the trainer checks the embeddings, the loss and the gradient norm for
    NaN/Inf itself (``faults.on_non_finite``), so the loss need not scan its inputs (and sync) again.
    """
    loss = create_loss(cfg.name, **cfg.kwargs)
    # setattr: nn.Module's __setattr__ is typed for tensors and modules; this is a plain attribute.
    setattr(loss, "check_values", False)  # noqa: B010
    return loss


def build_optimizer(cfg: ExperimentConfig, modules: Sequence[nn.Module]) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``modules`` with the config's lr, betas and weight decay.

    Parameters a submodule names in ``no_weight_decay()`` (e.g. a :class:`~mmgeom.models.MagnitudeHead`,
    whose scale weight decay would pull towards a constant) form a second group without decay; without
    such modules there is one group, in the order of ``modules``' parameters.
    """
    o = cfg.optim
    groups = weight_decay_groups(nn.ModuleList(modules), o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
