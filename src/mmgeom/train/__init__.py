"""Training: the YAML experiment config, the trainer, evaluation, run logging and weights.

Example:
    >>> from mmgeom.train import load_config, Trainer
    >>> cfg = load_config("configs/demo.yaml", overrides=["train.steps=100"])
    >>> result = Trainer(cfg, run_dir="runs/try").fit()
    >>> result.final_eval["retrieval/mean/hit@1"]
"""

from .checkpoint import atomic_save_tensors, atomic_write_text, load_tensors, save_module
from .config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)
from .demo import (
    demo_config,
    diagnostic_summary,
    list_packaged_configs,
    packaged_config_path,
    pair_rows,
    run_demo,
)
from .errors import ConfigError, NonFiniteLossError
from .evaluate import cross_view_retrieval, embed_views, evaluate_split, geometry_diagnostics
from .logging import JsonlWriter, read_jsonl
from .rundir import resolve_run_dir
from .schedule import build_scheduler, warmup_cosine_lr
from .seeding import seed_everything
from .trainer import Trainer, TrainResult, build_data, build_encoder, build_loss, build_optimizer, train

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "JsonlWriter",
    "LossConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_overrides",
    "atomic_save_tensors",
    "atomic_write_text",
    "build_data",
    "build_encoder",
    "build_loss",
    "build_optimizer",
    "build_scheduler",
    "config_from_dict",
    "cross_view_retrieval",
    "demo_config",
    "diagnostic_summary",
    "embed_views",
    "evaluate_split",
    "geometry_diagnostics",
    "list_packaged_configs",
    "load_config",
    "load_tensors",
    "packaged_config_path",
    "pair_rows",
    "read_jsonl",
    "resolve_run_dir",
    "run_demo",
    "save_module",
    "seed_everything",
    "train",
    "warmup_cosine_lr",
]
