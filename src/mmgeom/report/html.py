"""The HTML page of ``mmgeom report RUN_DIR``: one self-contained file (inline CSS, PNGs as base64)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .plots import all_plots, geometry_summary
from .runlog import ReportError, RunLog, number, read_run

#: Marks a page as written by ``mmgeom report``: only such a file is replaced by a later report.
GENERATOR_META = "<meta name='generator' content='mmgeom report'>"

REPORT_FILE = "report.html"

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 0.8em; overflow-x: auto; }
.meta td { text-align: left; } .bad { color: #b00; } .muted { color: #777; font-size: 0.85em; }
"""

PAIR_METRICS = ("hit@1", "hit@5", "hit@10", "map", "mrr")


def _fmt(value: Any, digits: int = 3) -> str:
    v = number(value)
    if v is None:
        return html.escape(str(value)) if value is not None else "–"
    if float(v).is_integer() and abs(v) < 1e12:
        return str(int(v))
    return f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    head_row = f"<tr>{head}</tr>" if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head_row}{body}</table>'


def _status(log: RunLog) -> str:
    if log.end is not None:
        return "finished"
    if log.events("error"):
        return '<span class="bad">stopped by a non-finite value</span>'
    if log.events("interrupted"):
        return "interrupted (resumable)"
    return "running or killed"


def _summary(log: RunLog) -> str:
    s, end = log.start, log.end
    last_step = max([int(e["step"]) for e in (log.train + log.evals + log.other)] or [0])
    rows = [
        ["run directory", html.escape(str(log.run_dir))],
        ["status", _status(log)],
        ["steps", str(last_step)],
        ["mmgeom", html.escape(str(s.get("version", "?")))],
        ["views", html.escape(", ".join(s.get("views", [])))],
        ["rows (train / val / test)", html.escape(" / ".join(str(v) for v in s.get("rows", {}).values()))],
        ["parameters", _fmt(s.get("parameters"))],
        ["processes", _fmt(s.get("world_size", 1))],
    ]
    if end is not None:
        resumed = " (since the last resume)" if log.events("resume") else ""
        rows.append(["loop time", f"{_fmt(end.get('seconds'), 1)} s{resumed}"])
    rows.append(["skipped non-finite steps", str(len(log.events("skip")))])
    rows.append(["resumes", ", ".join(f"from step {e['step']}" for e in log.events("resume")) or "none"])
    return _table(["", ""], rows, "meta")


def _pair_table(log: RunLog) -> str:
    if not log.evals:
        return ""
    first, last = log.evals[0], log.evals[-1]
    pairs = sorted({k.split("/")[1] for k in last if k.startswith("retrieval/") and "<->" in k}) or sorted(
        {k.split("/")[1] for k in last if k.startswith("retrieval/") and "->" in k}
    )
    pairs.append("mean")
    metrics = [m for m in PAIR_METRICS if f"retrieval/mean/{m}" in last]
    show_first = first is not last
    rows = []
    for pair in pairs:
        cells = []
        for m in metrics:
            after = last.get(f"retrieval/{pair}/{m}")
            before = first.get(f"retrieval/{pair}/{m}") if show_first else None
            cells.append(f"{_fmt(before)} → {_fmt(after)}" if show_first else _fmt(after))
        rows.append([html.escape(pair), *cells])
    title = f"step {first['step']} → step {last['step']}" if show_first else f"step {last['step']}"
    return f'<p class="muted">{title}; chance hit@1 = {_fmt(last.get("chance/hit@1"), 4)}</p>' + _table(
        ["view pair", *metrics], rows
    )


def _classification_table(log: RunLog) -> str:
    if not log.evals:
        return ""
    last = log.evals[-1]
    keys = sorted(k for k in last if k.startswith("classification/"))
    if not keys:
        return ""
    rows = [[html.escape(k.removeprefix("classification/")), _fmt(last[k])] for k in keys]
    rows.append(["majority class (chance)", _fmt(last.get("chance/accuracy"))])
    return _table(["view", f"accuracy at step {last['step']}"], rows)


def _geometry_table(log: RunLog) -> str:
    if not log.evals:
        return ""
    first, last = geometry_summary(log.evals[0]), geometry_summary(log.evals[-1])
    if not last:
        return ""
    rows = [[html.escape(k), _fmt(first.get(k)), _fmt(last.get(k))] for k in last]
    return _table(
        ["diagnostic (mean)", f"step {log.evals[0]['step']}", f"step {log.evals[-1]['step']}"], rows
    )


def _events_table(log: RunLog) -> str:
    shown = [e for e in log.other if e["event"] in ("resume", "interrupted", "skip", "error")]
    if not shown:
        return "<p>No interruptions, resumes, skipped steps or errors.</p>"
    rows = []
    for e in shown[:200]:
        detail = {k: v for k, v in e.items() if k not in ("event", "step")}
        text = "; ".join(f"{k}={v}" for k, v in detail.items())
        rows.append([html.escape(e["event"]), str(e["step"]), html.escape(text[:300])])
    return _table(["event", "step", "details"], rows)


def _img(name: str, png: bytes, inline: bool, files_dir: Path | None) -> str:
    alt = f"{name} plot"
    if inline:
        data = base64.b64encode(png).decode("ascii")
        return f'<img alt="{alt}" src="data:image/png;base64,{data}">'
    assert files_dir is not None
    files_dir.mkdir(parents=True, exist_ok=True)
    (files_dir / f"{name}.png").write_bytes(png)
    return f'<img alt="{alt}" src="{html.escape(files_dir.name)}/{name}.png">'


def _generation_section(log: RunLog, inline: bool, files_dir: Path | None) -> str:
    """``mmgeom generate`` results of the run (``RUN/generation/results.json`` and its grids), if any."""
    import json

    results = log.run_dir / "generation" / "results.json"
    if not results.is_file():
        return ""
    parts = ["<h2>Generation from other views (mmgeom generate)</h2>"]
    for decoder, r in json.loads(results.read_text()).items():
        rows = [
            [
                html.escape(name),
                *(_fmt(m.get(k)) for k in ("fid", "precision", "recall", "accuracy", "pixel_mse")),
            ]
            for name, m in r["metrics"].items()
        ]
        parts.append(
            f"<p>{html.escape(decoder)} decoder, {html.escape(r['image_view'])} images, {r['steps']} steps; "
            f"{html.escape(r['note'])}.</p>"
        )
        parts.append(_table(["condition", "FID", "precision", "recall", "accuracy", "pixel MSE"], rows))
        grid = results.parent / r["grid"]
        if grid.is_file():
            parts.append(_img(f"generation-{decoder}", grid.read_bytes(), inline, files_dir))
            parts.append(
                '<p class="muted">Rows: real test images, then ' + html.escape(", ".join(r["rows"])) + ".</p>"
            )
    return "\n".join(parts)


def build_report(log: RunLog, inline: bool = True, files_dir: Path | None = None) -> str:
    """The HTML text of the report of ``log`` (``files_dir`` receives the PNGs when not ``inline``)."""
    plots = all_plots(log)

    def figure(name: str) -> str:
        return _img(name, plots[name], inline, files_dir) if name in plots else ""

    title = f"mmgeom run {log.run_dir.name}"
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{GENERATOR_META}"
        f"<title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _summary(log),
        "<h2>Training</h2>",
        figure("loss") or "<p>No training events yet.</p>",
        figure("optimisation"),
        '<p class="muted">Dashed vertical lines: resumes; dotted red lines: skipped non-finite steps.</p>',
        "<h2>Cross-view retrieval</h2>",
        figure("retrieval"),
        _pair_table(log) or "<p>No evaluation yet.</p>",
    ]
    if "classification" in plots:
        parts += ["<h2>Classification</h2>", figure("classification"), _classification_table(log)]
    if "geometry" in plots:
        parts += ["<h2>Geometry diagnostics</h2>", figure("geometry"), _geometry_table(log)]
    parts.append(_generation_section(log, inline, files_dir))
    parts += [
        "<h2>Interruptions, resumes and faults</h2>",
        _events_table(log),
        "<h2>Config</h2>",
        f"<pre>{html.escape(log.config_text) or 'no config.yaml'}</pre>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def write_report(run_dir: str | Path, out: str | Path | None = None, inline: bool = True) -> Path:
    """Write the report of a run directory and return the HTML file's path.

    Args:
        run_dir: a run directory with ``metrics.jsonl`` (and ``config.yaml``).
        out: the HTML file; default ``RUN_DIR/report.html``.
        inline: embed the PNGs as base64 (one self-contained file); otherwise they are saved in
            ``<out stem>_files/`` next to the page and linked.

    Raises:
        ReportError: no ``metrics.jsonl``, or matplotlib is not installed.
    """
    log = read_run(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    files_dir = None if inline else path.with_name(re.sub(r"\W", "_", path.stem) + "_files")
    _check_replaceable(path, default=out is None, files_dir=files_dir)
    text = build_report(log, inline=inline, files_dir=files_dir)
    return atomic_write_text(path, text)


def _check_replaceable(path: Path, default: bool, files_dir: Path | None) -> None:
    """Refuse to replace what this command did not write.

    ``path`` may be new, or an earlier report (it carries :data:`GENERATOR_META`; the default
    ``RUN_DIR/report.html`` is also accepted, as reports written before the marker lack it). A folder,
    or any other existing file, is refused: replacing it would lose the user's data. The ``--linked``
    plot folder may only hold PNGs.

    Raises:
        ReportError: naming the path and what to do instead.
    """
    if path.is_dir():
        raise ReportError(
            f"--out {path}: is an existing folder; give the HTML file to write, e.g. {path / REPORT_FILE}"
        )
    if path.exists() and not default:
        head = path.open("rb").read(4096)
        if GENERATOR_META.encode() not in head:
            raise ReportError(
                f"--out {path}: exists and is not an mmgeom report; refusing to replace it "
                "(choose a new file name or remove it yourself)"
            )
    if files_dir is not None and files_dir.exists():
        if not files_dir.is_dir():
            raise ReportError(f"{files_dir}: exists and is not a folder; the linked plots go there")
        others = [p.name for p in files_dir.iterdir() if p.suffix != ".png"]
        if others:
            raise ReportError(
                f"{files_dir}: holds files that are not plots ({', '.join(sorted(others)[:3])}); "
                "refusing to write into it (use --inline or another --out)"
            )
