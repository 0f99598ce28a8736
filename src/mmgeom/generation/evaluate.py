"""Score generated images against real ones: FID, precision/recall, class accuracy, paired pixel error."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .fid import feature_statistics, frechet_distance
from .precision_recall import precision_recall

if TYPE_CHECKING:
    from .classifier import FeatureClassifier


class GenerationScorer:
    """Scores sets of generated images against a fixed set of real images.

    Every distribution metric lives in the feature space of ``classifier`` (a small CNN trained on the
    real images of this dataset, :func:`~mmgeom.generation.train_feature_classifier`), **not** Inception:
    the numbers compare decoders and embedding spaces with each other on one dataset, and are not
    comparable with published Inception-FIDs. The real statistics are computed once.

    Metrics returned by :meth:`score`:

    * ``fid`` — Fréchet distance of the Gaussian fits of real and generated features;
    * ``precision`` / ``recall`` — Kynkäänniemi et al. (2019), ``k``-NN manifolds in the same features;
    * ``accuracy`` — the classifier's accuracy on the generated images against the intended ``labels``
      (does the image show the right class);
    * ``pixel_mse`` — mean squared pixel error to the real paired image (``targets``), where the data is
      instance-paired.

    Args:
        classifier: the trained feature classifier.
        real_images: ``(N, C, H, W)`` real images in ``[0, 1]`` (e.g. the test split).
        k: neighbour rank of precision/recall.

    Example:
        >>> scorer = GenerationScorer(classifier, test_images)
        >>> scorer.score(decoder.sample(text_emb), labels=test_labels)["fid"]
    """

    def __init__(self, classifier: FeatureClassifier, real_images: Tensor, k: int = 3) -> None:
        self.classifier = classifier
        self.k = k
        self.real_features = classifier.features(real_images).double()
        self.real_mu, self.real_sigma = feature_statistics(self.real_features)
        self.num_real = int(real_images.shape[0])

    def score(
        self, images: Tensor, labels: Tensor | None = None, targets: Tensor | None = None
    ) -> dict[str, float]:
        """Metrics of one set of generated images (see the class docstring for the keys).

        Args:
            images: ``(B, C, H, W)`` generated images in ``[0, 1]``.
            labels: ``(B,)`` intended class of each image (adds ``accuracy``).
            targets: ``(B, C, H, W)`` real image each generated image should reproduce (adds
                ``pixel_mse``).

        Raises:
            ValueError: ``labels``/``targets`` whose row count or shape does not match ``images``.
        """
        raw = self.classifier.features(images)
        feats = raw.double()
        mu, sigma = feature_statistics(feats)
        out = {"fid": frechet_distance(self.real_mu, self.real_sigma, mu, sigma)}
        pr = precision_recall(self.real_features, feats, k=self.k)
        out["precision"], out["recall"] = pr.precision, pr.recall
        if labels is not None:
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels: expected shape ({images.shape[0]},), got {tuple(labels.shape)}")
            pred = self.classifier.predict_from_features(raw)
            out["accuracy"] = float((pred == labels.to(pred.device)).double().mean())
        if targets is not None:
            if targets.shape != images.shape:
                raise ValueError(f"targets: expected shape {tuple(images.shape)}, got {tuple(targets.shape)}")
            out["pixel_mse"] = float(torch.mean((images.double() - targets.double()) ** 2))
        return out
