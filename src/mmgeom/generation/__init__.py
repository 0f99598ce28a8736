"""Cross-modal generation from an aligned space (UnCLIP-style decoders) and its evaluation.

A decoder is trained to reconstruct images from *frozen* embeddings of the image modality; at test time
it is fed embeddings of any other modality (or a mix of several). In a well-aligned space those land
where the image embeddings were, so the decoded images look right. No prior network is involved.

* decoders: :class:`ConvDecoder` (deterministic, fast) and :class:`DiffusionDecoder` (conditional DDPM
  trained with condition dropout; DDIM/DDPM sampling with classifier-free guidance);
* training: :func:`fit_decoder`; conditions from several modalities: :func:`mix_embeddings`;
* evaluation: :class:`GenerationScorer` (FID, precision/recall, class accuracy, paired pixel error) in
  the feature space of a :class:`FeatureClassifier` trained on the real images — not Inception-FID;
* pictures: :func:`save_grid` writes PNG grids without matplotlib.

Example:
    >>> dec = ConvDecoder(64, (16, 15))
    >>> fit_decoder(dec, image_emb_train, pix_train, steps=1500)
    >>> images = dec.sample(text_emb_test)            # decode another modality's embeddings
"""

from __future__ import annotations

from .base import ImageDecoder, image_shape_tuple
from .classifier import FeatureClassifier, train_feature_classifier
from .conv import ConvDecoder
from .diffusion import DiffusionDecoder
from .evaluate import GenerationScorer
from .fid import feature_statistics, fid_from_features, frechet_distance
from .fit import fit_decoder, mix_embeddings
from .grid import image_grid, save_grid, save_png
from .precision_recall import PrecisionRecall, precision_recall

__all__ = [
    "ConvDecoder",
    "DiffusionDecoder",
    "FeatureClassifier",
    "GenerationScorer",
    "ImageDecoder",
    "PrecisionRecall",
    "feature_statistics",
    "fid_from_features",
    "fit_decoder",
    "frechet_distance",
    "image_grid",
    "image_shape_tuple",
    "mix_embeddings",
    "precision_recall",
    "save_grid",
    "save_png",
    "train_feature_classifier",
]
