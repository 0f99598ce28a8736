"""Building a run's parts from its config sections: the data split, the encoder, the loss, the optimizer."""

from __future__ import annotations

import torch
from torch import nn

from ..data import SplitDataset, load_dataset, split_and_standardize
from ..losses import create_loss
from ..models import MultiViewEncoder
from .config import DataConfig, ExperimentConfig, LossConfig, ModelConfig

__all__ = ["build_data", "build_encoder", "build_loss", "build_optimizer"]


def build_data(cfg: DataConfig) -> SplitDataset:
    """Load the dataset's selected views, split (stratified, seeded) and standardise with train stats."""
    data = load_dataset(cfg.dataset, cfg.views)
    return split_and_standardize(data, cfg.fractions, cfg.split_seed, cfg.standardize)


def build_encoder(cfg: ModelConfig, view_dims: dict[str, int]) -> MultiViewEncoder:
    """One ``cfg.head`` head per view, all into ``cfg.out_dim``."""
    return MultiViewEncoder.from_dims(view_dims, cfg.head, cfg.out_dim, **cfg.head_kwargs())


def build_loss(cfg: LossConfig) -> nn.Module:
    """``create_loss(cfg.name, **cfg.kwargs)``."""
    return create_loss(cfg.name, **cfg.kwargs)


def build_optimizer(cfg: ExperimentConfig, params: list[nn.Parameter]) -> torch.optim.AdamW:
    """AdamW over ``params`` with the config's lr, betas and weight decay."""
    o = cfg.optim
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
