"""Pure functions over tensors: every equation of mmgeom lives here exactly once.

Functions whose definition uses the normalised embedding ``z = h / ||h||`` normalise their inputs
themselves, so raw and pre-normalised inputs give the same value. O(B^2) reductions accumulate in
float32 (float64 inputs stay float64).

The ``*_unit`` functions are the same equations on rows that are already unit vectors, with no checks:
the loss modules validate a batch once, normalise each modality once and call them per pair, which keeps
a small-batch loss call close to the cost of its arithmetic (``benchmarks/bench_losses.py``).

Missing modalities: ``mask=`` arguments (``(B,)`` bool, True = present) give the value over the present
rows through weights, ``-inf`` logits and tensor counts rather than by selecting rows, so shapes never
depend on the mask's values and nothing is read on the host (no device synchronisation); the unit kernels
expect absent rows zeroed by :func:`normalize_present`.
"""

from ._common import masked_mean, normalize, normalize_present
from ._pairwise import gaussian_potential_unit
from .alignment import alignment, alignment_unit, band_hinge, band_hinge_unit, paired_sq_dists
from .centroid import (
    centroid,
    centroid_alignment,
    centroid_alignment_unit,
    check_rows_present,
    tuple_mean,
    tuple_mean_unit,
)
from .conflict import alignment_force, conflict_scores, uniformity_force
from .contrastive import (
    info_nce,
    info_nce_from_logits,
    info_nce_unit,
    positive_targets,
    siglip_loss,
    siglip_unit,
)
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
from .spectral import spectral_entropy, spectral_entropy_unit
from .uniformity import dispersion, gaussian_potential, uniformity
from .volume import gram_det, gram_det_unit, gram_volume, gram_volume_matrix, gram_volume_matrix_unit

__all__ = [
    "alignment",
    "alignment_force",
    "alignment_unit",
    "band_hinge",
    "band_hinge_unit",
    "centroid",
    "centroid_alignment",
    "centroid_alignment_unit",
    "check_rows_present",
    "conflict_scores",
    "dispersion",
    "gaussian_potential",
    "gaussian_potential_unit",
    "gram_det",
    "gram_det_unit",
    "gram_volume",
    "gram_volume_matrix",
    "gram_volume_matrix_unit",
    "holder_alignment_weight",
    "holder_tied_bandwidth",
    "info_nce",
    "info_nce_from_logits",
    "info_nce_unit",
    "info_tn",
    "kde_holder_divergence",
    "kde_log_product_integral",
    "logcos_distance",
    "magnitude_reconstruction",
    "masked_mean",
    "norm_difference_logits",
    "normalize",
    "normalize_present",
    "paired_sq_dists",
    "positive_targets",
    "release_objective",
    "release_pair_term",
    "siglip_loss",
    "siglip_unit",
    "spectral_entropy",
    "spectral_entropy_unit",
    "tn_distance",
    "tn_similarity",
    "tuple_mean",
    "tuple_mean_unit",
    "uniformity",
    "uniformity_force",
]
