"""Multimodal fusion classification: training modes (joint, DGL-style, OGM-GE-style), DAGR wiring and
evaluation (fused, unimodal, missing-modality accuracy; geometry of the pre-fusion embeddings).

Example:
    >>> from mmgeom.classify import ClassifyConfig, train_classifier, evaluate_classifier
    >>> from mmgeom.models import FusionClassifier, create_head
    >>> model = FusionClassifier({"fac": create_head("mlp", 216, 32), "mor": create_head("mlp", 6, 32)}, 10)
    >>> cfg = ClassifyConfig(mode="dgl", epochs=5, dagr={"lambda_d": 0.1, "lambda_a": 1.0, "delta": "auto"})
    >>> result = train_classifier(model, train_data, cfg, monitor=test_data)   # doctest: +SKIP
    >>> evaluate_classifier(model, test_data, train=train_data)["missing/mean"]  # doctest: +SKIP
"""

from .config import MODES, OPTIMIZERS, ClassifyConfig
from .evaluate import (
    accuracy_metrics,
    embed,
    evaluate_classifier,
    geometry_metrics,
    probe_metrics,
)
from .modulation import add_gradient_noise, modality_scores, ogm_ge_coefficients, scale_grad
from .store import ClassifyStoreParts, load_classify_store
from .trainer import ClassifyResult, build_regularizer, task_loss, train_classifier

__all__ = [
    "MODES",
    "OPTIMIZERS",
    "ClassifyConfig",
    "ClassifyResult",
    "ClassifyStoreParts",
    "accuracy_metrics",
    "add_gradient_noise",
    "build_regularizer",
    "embed",
    "evaluate_classifier",
    "geometry_metrics",
    "load_classify_store",
    "modality_scores",
    "ogm_ge_coefficients",
    "probe_metrics",
    "scale_grad",
    "task_loss",
    "train_classifier",
]
