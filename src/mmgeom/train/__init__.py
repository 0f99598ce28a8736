"""Training: the YAML experiment config, the trainer, evaluation, run logging and weights.

Example:
    >>> from mmgeom.train import load_config, Trainer
    >>> cfg = load_config("configs/demo.yaml", overrides=["train.steps=100"])
    >>> result = Trainer(cfg, run_dir="runs/try").fit()
    >>> result.final_eval["retrieval/mean/hit@1"]
"""

from .._io import atomic_save_tensors, atomic_write_text
from ..errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingInterrupted

# Evaluation lives one floor down (mmgeom.evaluation); the docs name these under mmgeom.train too.
from ..evaluation import (
    cross_view_retrieval,
    embed_views,
    evaluate_split,
    geometry_diagnostics,
    nearest_centroid_accuracy,
)
from ..seeding import capture_rng_state, restore_rng_state, seed_everything
from .builders import build_data, build_encoder, build_loss, build_optimizer
from .checkpoint import load_tensors, save_module
from .checkpoint_store import Checkpoint, CheckpointStore, CheckpointWarning
from .config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from .config_load import apply_overrides, config_from_dict, load_config
from .config_runtime import CheckpointConfig, DistributedConfig, FaultsConfig, LoggingConfig
from .faults import Fault, StopSignals
from .logging import JsonlWriter, read_jsonl
from .presets import demo_config, list_packaged_configs, packaged_config_path, run_demo
from .result import TrainResult
from .resume import check_resume_config, find_resumable_run, trim_metrics
from .rundir import resolve_run_dir
from .runload import LoadedRun, load_run
from .schedule import build_scheduler, warmup_cosine_lr
from .trainer import Trainer, train

__all__ = [
    "Checkpoint",
    "CheckpointConfig",
    "CheckpointError",
    "CheckpointStore",
    "CheckpointWarning",
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "EvalConfig",
    "ExperimentConfig",
    "Fault",
    "FaultsConfig",
    "JsonlWriter",
    "LoadedRun",
    "LoggingConfig",
    "LossConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "RunConfig",
    "StopSignals",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "apply_overrides",
    "atomic_save_tensors",
    "atomic_write_text",
    "build_data",
    "build_encoder",
    "build_loss",
    "build_optimizer",
    "build_scheduler",
    "capture_rng_state",
    "check_resume_config",
    "config_from_dict",
    "cross_view_retrieval",
    "demo_config",
    "embed_views",
    "evaluate_split",
    "find_resumable_run",
    "geometry_diagnostics",
    "list_packaged_configs",
    "load_config",
    "load_run",
    "load_tensors",
    "nearest_centroid_accuracy",
    "packaged_config_path",
    "read_jsonl",
    "resolve_run_dir",
    "restore_rng_state",
    "run_demo",
    "save_module",
    "seed_everything",
    "train",
    "trim_metrics",
    "warmup_cosine_lr",
]
