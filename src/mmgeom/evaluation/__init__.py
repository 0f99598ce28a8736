"""Evaluation of embeddings: embed a split once, score cross-view retrieval, geometry diagnostics,
nearest-centroid and linear-probe accuracy, and evaluate saved runs or feature stores offline.

Example:
    >>> from mmgeom.evaluation import embed_views, cross_view_retrieval
    >>> emb = embed_views(encoder, data.test)                      # doctest: +SKIP
    >>> cross_view_retrieval(emb, [("pix", "fou")])["retrieval/mean/hit@1"]  # doctest: +SKIP
"""

from .centroid import fused_embedding, nearest_centroid_accuracy
from .cross_view import cross_view_retrieval
from .diagnostics import geometry_diagnostics
from .embed import embed, embed_views
from .offline import RELEVANCE_MODES, SCORES, eval_pairs, evaluate_source
from .probe import LinearProbe, fit_linear_probe, linear_probe_accuracy
from .source import EvalSource, open_store_source
from .split import evaluate_split

__all__ = [
    "RELEVANCE_MODES",
    "SCORES",
    "EvalSource",
    "LinearProbe",
    "cross_view_retrieval",
    "embed",
    "embed_views",
    "eval_pairs",
    "evaluate_source",
    "evaluate_split",
    "fit_linear_probe",
    "fused_embedding",
    "geometry_diagnostics",
    "linear_probe_accuracy",
    "nearest_centroid_accuracy",
    "open_store_source",
]
