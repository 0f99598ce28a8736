"""Diagnostics of multimodal embedding geometry: every value is a plain float, ready to log and plot.

:func:`diagnose` returns all of them as one flat dict with stable keys (``docs/diagnostics.md``); the
individual functions are below. Functions whose definition uses the normalised embedding ``z = h / ||h||``
normalise their inputs themselves; the norm statistics read the raw magnitudes.
"""

from .centroid import centroid_uniformity
from .conflict import conflict_metrics, conflict_per_row
from .diagnose import diagnose
from .drift import drift
from .gap import modality_gap
from .holder import DEFAULT_BANDWIDTH, holder_divergence, holder_method
from .ks import ks_statistic
from .margin import semantic_margin, semantic_margins
from .norms import norm_correlation, norm_stats
from .similarity import (
    cosine_stats,
    negative_cosine_mean,
    negative_cosines,
    negative_shifts,
    positive_cosines,
)
from .spectrum import effective_rank

__all__ = [
    "DEFAULT_BANDWIDTH",
    "centroid_uniformity",
    "conflict_metrics",
    "conflict_per_row",
    "cosine_stats",
    "diagnose",
    "drift",
    "effective_rank",
    "holder_divergence",
    "holder_method",
    "ks_statistic",
    "modality_gap",
    "negative_cosine_mean",
    "negative_cosines",
    "negative_shifts",
    "norm_correlation",
    "norm_stats",
    "positive_cosines",
    "semantic_margin",
    "semantic_margins",
]
