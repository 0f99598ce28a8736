"""Study ``mmgeom study l2dir``: does L2Dir's norm alignment (and its magnitude MLP) help retrieval?

L2Dir (Zong et al., ACL 2026) trains directions with InfoNCE and pulls the L2 norms of positive pairs
together, with a lightweight MLP that reconstructs each example's magnitude from frozen backbone
features. Feng & Watanabe (arXiv 2602.09229) find that magnitude helps *asymmetric* retrieval and hurts
*symmetric* tasks, and that normalising the query while keeping the document's magnitude is what lets
magnitude change a ranking. This study measures both claims on real data with frozen features:

* **asymmetric** — text → image: 40 held-out phrasings of the 10 Fashion-MNIST classes, encoded by the
  frozen all-MiniLM-L6-v2, retrieve Fashion-MNIST test images (a small trainable MLP on pixels);
  relevant = same class (about 1000 positives per query). Training pairs: (training phrasing of class
  c, training image of class c); InfoNCE with same-class multi-positive targets.
* **symmetric control** — cross-view instance retrieval on the six views of UCI Multiple Features
  (frozen view features, one trainable head per view, all 15 view pairs trained), scored in all 30
  directions: each digit must find itself in the other view.

Methods (one :class:`~mmgeom.losses.L2DirLoss` configuration each, or InfoNCE; the full list with notes
is :data:`~.settings.METHODS`):

* ``infonce`` — the baseline;
* ``infonce+norm`` — L2Dir's TN norm term without the MLP (magnitudes = raw norms of the head outputs);
* ``l2dir`` — a :class:`~mmgeom.models.MagnitudeHead` per modality on the frozen features (no input
  LayerNorm, the library default; exempt from weight decay), trained through the norm term;
* the learnable-magnitude options: ``l2dir-infotn`` (``objective="infotn"``: contrastive CE over the
  S_TN logits, so magnitude takes part in the ranking), ``l2dir-recon`` (plus the reconstruction term
  with ``magnitude_targets`` = the frozen features' own L2 norms) and ``headnorm-infotn``
  (``magnitude_source="head_norm"`` with the InfoTN objective, no MagnitudeHead);
* ``release`` — the public code's objective as published (cross-side rows ``2k``/``2k+1``, ``-log cos``
  weight, the norm-difference CE, τ_r = 0.02, detached magnitudes, no InfoNCE in the loss).

Hyper-parameters (``lambda_n`` or the reconstruction weight) are chosen per method on validation rows
held out of the training data (the best validation mAP of a small grid over the first seeds); only the
chosen configuration's test numbers are reported.

Each trained model is scored twice: ``cosine`` (magnitude ignored) and ``magnitude``
(``<ẑ_q, r_d ẑ_d>``: query normalised, the document keeps its magnitude — the MagnitudeHead output
where the method has one, else the raw norm of the document's embedding). How document magnitude
relates to relevance is measured per query by the AUC (and Cohen's d) of the magnitude for relevant vs
non-relevant documents, over the whole gallery and among each query's top candidates by cosine (the
only documents whose order magnitude can change in practice).

Frozen features are cached in :class:`~mmgeom.data.FeatureStore` folders under ``$MMGEOM_CACHE_DIR``
(default ``~/.cache/mmgeom/features``), built on first use.

Modules: settings, data (frozen feature stores), model, metrics (scoring and magnitude vs relevance),
experiment (the runs), figures, report (``results.md`` from ``results.json``).
"""

from .experiment import run
from .report import render, render_markdown

__all__ = ["render", "render_markdown", "run"]
