"""Pure functions over tensors: every equation of mmgeom lives here exactly once.

Functions whose definition uses the normalised embedding ``z = h / ||h||`` normalise their inputs
themselves, so raw and pre-normalised inputs give the same value. O(B^2) reductions accumulate in
float32 (float64 inputs stay float64).
"""

from ._common import normalize
from .alignment import alignment, band_hinge, paired_sq_dists
from .centroid import centroid, centroid_alignment, tuple_mean
from .conflict import alignment_force, conflict_scores, uniformity_force
from .contrastive import info_nce, info_nce_from_logits, positive_targets, siglip_loss
from .holder import (
    holder_alignment_weight,
    holder_tied_bandwidth,
    kde_holder_divergence,
    kde_log_product_integral,
)
from .l2dir import (
    info_tn,
    magnitude_reconstruction,
    norm_difference_logits,
    release_objective,
    release_pair_term,
    tn_similarity,
)
from .norms import logcos_distance, tn_distance
from .spectral import spectral_entropy
from .uniformity import dispersion, gaussian_potential, uniformity
from .volume import gram_det, gram_volume, gram_volume_matrix

__all__ = [
    "alignment",
    "alignment_force",
    "band_hinge",
    "centroid",
    "centroid_alignment",
    "conflict_scores",
    "dispersion",
    "gaussian_potential",
    "gram_det",
    "gram_volume",
    "gram_volume_matrix",
    "holder_alignment_weight",
    "holder_tied_bandwidth",
    "info_nce",
    "info_nce_from_logits",
    "info_tn",
    "kde_holder_divergence",
    "kde_log_product_integral",
    "logcos_distance",
    "magnitude_reconstruction",
    "norm_difference_logits",
    "normalize",
    "paired_sq_dists",
    "positive_targets",
    "release_objective",
    "release_pair_term",
    "siglip_loss",
    "spectral_entropy",
    "tn_distance",
    "tn_similarity",
    "tuple_mean",
    "uniformity",
    "uniformity_force",
]
