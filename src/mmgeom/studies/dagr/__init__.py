"""DAGR study: does the dispersive-and-anchoring regulariser help multimodal fusion classifiers here?

``mmgeom study dagr [--quick] [--seeds N] [--out DIR]`` trains concatenation-fusion classifiers (and a
late-fusion control) on three real multi-view problems whose views differ in quality:

* ``facmor``: mfeat ``fac`` (216 profile correlations, strong) + ``mor`` (6 morphological features, weak);
* ``mfeat6``: all six mfeat views, ``pix`` (the 16x15 digit image) through a small CNN;
* ``fashion``: Fashion-MNIST left/right 28x14 halves through small CNNs (10k train / 2k val rows of the
  training file, the first 2k test images), skipped with a message when the Debian package is absent.

For each training mode (joint cross-entropy, DGL-style, OGM-GE-style) it runs the plain task loss, + DAGR,
and the three DAGR ablations (dispersion only, anchor only, always-on anchor), over several seeds, and
reports fused / unimodal / missing-modality accuracy, linear probes, drift, effective rank and curves.
DAGR's weights are picked per dataset by a tiny validation sweep. Reference: Xia et al., arXiv 2601.21670.

Modules: settings, experiment (datasets, models, runs), summaries (mean ± std and paired differences of
classification runs), report (``results.md`` and curve PNGs from ``results.json``).
"""

from .experiment import run
from .report import render, render_markdown

__all__ = ["render", "render_markdown", "run"]
