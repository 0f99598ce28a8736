"""Study ``mmgeom study generation``: do better-aligned spaces generate better images from other modalities?

UniAlign's second claim (Yin et al., arXiv 2602.09507) is about generation: an UnCLIP-style decoder
trained on *image* embeddings and fed the embeddings of *other* modalities makes better images when the
modalities share one distribution. This study tests it on real data, with no prior network:

* **digits** — the six views of UCI Multiple Features; the image modality is the 16x15 ``pix`` view.
  A space (one MLP head per view) is trained with each loss of :data:`SPACES`; a decoder learns
  ``pix`` embedding -> ``pix`` image on the training split; on the test split it decodes the ``pix``
  embedding itself (the *self-reconstruction bound*), each of the five other views' embeddings, and
  their mixture (the mean of the five normalised embeddings). The data is instance-paired, so the pixel
  error to the real image of the same digit is measured too.
* **fashion** — Fashion-MNIST images and the frozen all-MiniLM-L6-v2 embeddings of class phrasings
  (:mod:`mmgeom.studies.prompts`); the decoder learns image embedding -> image and is fed the embedding
  of a held-out phrasing of each test image's class (class-paired: no pixel error). Needs the Debian
  package ``dataset-fashion-mnist``; skipped with a note where it is absent.

Two decoders (:mod:`mmgeom.generation`): the deterministic :class:`~mmgeom.generation.ConvDecoder` and
the conditional :class:`~mmgeom.generation.DiffusionDecoder` (DDIM sampling, classifier-free guidance).
Images are scored by :class:`~mmgeom.generation.GenerationScorer` in the feature space of a CNN
trained on the real training images (not Inception-FID). Alignment of each view with the image is
measured as the mean cosine of test positive pairs; the report correlates it with the FID gap.

Outputs in ``out``: ``results.md`` (tables, answers, grids), ``results.json`` and PNG image grids.

Modules: settings, data (tasks), experiment (spaces, decoders, scoring, grids), report
(``results.md`` from ``results.json``).
"""

from .experiment import run
from .report import render, render_markdown

__all__ = ["render", "render_markdown", "run"]
