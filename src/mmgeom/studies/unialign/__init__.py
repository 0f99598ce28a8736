"""UniAlign modality-scaling study on the six real views of UCI Multiple Features (``mmgeom study unialign``).

UniAlign (Yin et al., arXiv 2602.09507) claims that with more modalities InfoNCE's alignment and
uniformity forces cancel (``zeta -> 1``) and multi-way positives disagree (``chi`` grows), and that
intra-modal uniformity + anchor alignment fixes it. This study measures that on real data:

* **scaling**: ``M = 2..6`` views added in the fixed order :data:`VIEW_ORDER` (anchor ``pix``, the image
  view, first), six losses (:data:`LOSSES`), several seeds each; test-split cross-view retrieval
  (anchor <-> each other view), linear-probe accuracy on frozen embeddings, and the geometry (``zeta``,
  ``chi``, Hölder divergence, modality gap, uniformity, effective rank as a collapse check);
* **sensitivity grid** at every ``M``: uniformity reduction (mean/sum) × alignment weight (1 or the
  Hölder-derived weight) × U(C) + volume off/on × anchor/centroid alignment, each chosen on the
  **validation** split (:mod:`.grid`); the best validated UniAlign then meets the best validated baseline
  on the test split, seed-paired;
* **ablation** of each UniAlign term at ``M = 6`` (:data:`ABLATIONS`);
* **anchor sweep** over all six views at ``M = 6`` (UniAlign anchor and InfoNCE anchor);
* **training curves**: ``zeta``, ``chi``, Hölder and hit@1 every few steps of every ``M = 6`` run.

Outputs in ``out``: ``results.md`` (tables of mean ± std over seeds, answers, embedded plots),
``results.json`` (settings, aggregates, every run) and the PNG plots. Every sentence of ``results.md``
that states a finding is generated from the numbers (:func:`write_report`), so a re-run cannot leave
stale claims behind.

Modules: settings (views, sizes, losses, the grid), experiment (training, measurements, the validation
phase), grid (the validated comparison), answers (generated prose), figures (PNGs), report
(``results.md`` from ``results.json``).
"""

from .protocol import run, run_store
from .report import render, render_markdown

__all__ = ["render", "render_markdown", "run", "run_store"]
