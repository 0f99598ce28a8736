"""Run reports: ``mmgeom report RUN_DIR`` writes one self-contained HTML page.

The page has the loss curves, retrieval and classification metrics and the geometry diagnostics over
training (all read from ``metrics.jsonl``), the interruptions / resumes / skipped steps, and the config.
``mmgeom compare RUN [RUN ...]`` writes one page comparing several runs (or a study folder's runs).
Plots need matplotlib (extra ``plot``), imported only here.

Example:
    >>> from mmgeom.report import write_report
    >>> write_report("runs/demo-20260101-120000")       # -> runs/demo-.../report.html
"""

from .compare import COMPARE_FILE, build_compare, write_compare
from .compare_runs import CompareRun, load_runs
from .html import REPORT_FILE, build_report, write_report
from .plots import all_plots, geometry_summary
from .runlog import ReportError, RunLog, read_run

__all__ = [
    "COMPARE_FILE",
    "REPORT_FILE",
    "CompareRun",
    "ReportError",
    "RunLog",
    "all_plots",
    "build_compare",
    "build_report",
    "geometry_summary",
    "load_runs",
    "read_run",
    "write_compare",
    "write_report",
]
