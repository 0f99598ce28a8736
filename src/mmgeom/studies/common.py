"""Deprecated: the studies' shared helpers now live in one module per concept.

=====================================================  ===============================================
``torch_threads``, ``run_seeds``, ``study_command``    :mod:`mmgeom.studies.runner`
``train_loop``                                         :mod:`mmgeom.train.lean`
``LinearProbe``, ``fit_linear_probe``,                 :mod:`mmgeom.evaluation.probe`
``linear_probe_accuracy``
``mean_std``, ``aggregate``, ``format_mean_std``,      :mod:`mmgeom.studies.tables`
``markdown_table``, ``pivot_table``, ``metric_table``
``PlotPanel``, ``line_plots``                          :mod:`mmgeom.studies.plots`
``write_json``                                         :mod:`mmgeom.studies.results_io`
``cache_dir``, ``cached_store``                        :mod:`mmgeom.studies.feature_cache`
=====================================================  ===============================================

Importing a name from here still works and emits a :class:`DeprecationWarning` naming the new module.
"""

from __future__ import annotations

from .._deprecation import moved_names

_MOVED: dict[str, str] = {
    "torch_threads": "mmgeom.studies.runner",
    "run_seeds": "mmgeom.studies.runner",
    "study_command": "mmgeom.studies.runner",
    "train_loop": "mmgeom.train.lean",
    "LinearProbe": "mmgeom.evaluation.probe",
    "fit_linear_probe": "mmgeom.evaluation.probe",
    "linear_probe_accuracy": "mmgeom.evaluation.probe",
    "mean_std": "mmgeom.studies.tables",
    "aggregate": "mmgeom.studies.tables",
    "format_mean_std": "mmgeom.studies.tables",
    "markdown_table": "mmgeom.studies.tables",
    "pivot_table": "mmgeom.studies.tables",
    "metric_table": "mmgeom.studies.tables",
    "PlotPanel": "mmgeom.studies.plots",
    "line_plots": "mmgeom.studies.plots",
    "write_json": "mmgeom.studies.results_io",
    "cache_dir": "mmgeom.studies.feature_cache",
    "cached_store": "mmgeom.studies.feature_cache",
}

__all__ = sorted(_MOVED)

__getattr__, __dir__ = moved_names(__name__, _MOVED)
