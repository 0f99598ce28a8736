"""``mmgeom compare``: two real demo runs on one page (tables, config differences, a real browser render),
and the runs of a study folder."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.report import ReportError, load_runs, write_compare
from test_report import PNG

from browser import chromium, image_sizes

VIEWS = ("fou", "kar", "pix")
STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "unialign"
runner = CliRunner()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, train_tiny_run, mfeat_folder):
    """Two tiny demo runs on mfeat that differ only in the InfoNCE temperature, evaluated every 3 steps."""
    root = tmp_path_factory.mktemp("compare")
    common = ("train.eval_before=true", "train.eval_every=3", "eval.diagnostics=true", "train.log_every=2")
    a = train_tiny_run(root / "t01", VIEWS, *common, "loss.kwargs.temperature=0.1")
    b = train_tiny_run(root / "t05", VIEWS, *common, "loss.kwargs.temperature=0.5")
    return a, b


@pytest.fixture(scope="module")
def page(two_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "cmp.html"
    result = runner.invoke(app, ["compare", str(two_runs[0]), str(two_runs[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"compare: {out}" in result.output
    return out


def _last_eval(run: Path) -> dict:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "eval"][-1]


def _rows(text: str, cls: str = "") -> list[list[str]]:
    table = re.search(rf'<table class="{cls}">(.*?)</table>', text, re.S)
    assert table is not None
    return [
        re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))
    ]


def test_page_sections_images_and_config_differences(page, two_runs):
    text = page.read_text()
    for section in (
        "First → last evaluation",
        "Training loss",
        "Retrieval over training",
        "Geometry over training",
    ):
        assert f"<h2>{section}</h2>" in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(PNG) for i in images)
    assert "http://" not in text and "https://" not in text
    # Only the key that differs, with each run's value in run order.
    assert _rows(text, "configdiff") == [
        ["config key", "t01", "t05"],
        ["loss.kwargs.temperature", "0.1", "0.5"],
    ]


def test_first_last_table_marks_the_best_last_value(page, two_runs):
    text = page.read_text()
    header, *rows = _rows(text)
    assert header[:2] == ["run", "steps"] and "mAP" in header and "modality gap" in header
    col = header.index("mAP")
    last = [_last_eval(run)["retrieval/mean/map"] for run in two_runs]
    assert [r[1] for r in rows] == ["0 → 6", "0 → 6"]
    for r, value in zip(rows, last, strict=True):
        assert r[col].endswith(f"{value:.3f}")
    best = int(last[1] > last[0])
    cells = re.findall(r"<tr>(.*?)</tr>", re.search(r'<table class="">(.*?)</table>', text, re.S).group(1))[
        1:
    ]
    marked = [re.findall(r"<td[^>]*>", c)[col] == '<td class="best">' for c in cells]
    assert marked == [i == best for i in range(2)]
    # Hölder, ζ and χ have no better direction: never marked.
    for name in ("Hölder divergence", "ζ", "χ"):
        if name in header:
            assert all(re.findall(r"<td[^>]*>", c)[header.index(name)] == "<td>" for c in cells)


@pytest.mark.skipif(chromium() is None, reason="no chromium to render the page (apt-get install chromium)")
def test_chromium_renders_every_image(page, tmp_path):
    images = image_sizes(page, tmp_path)
    assert len(images) == 3
    assert all(complete and width > 300 and height > 100 for complete, width, height in images), images


def test_study_folder_runs_with_select(tmp_path):
    study = tmp_path / "unialign"
    study.mkdir()
    shutil.copy(STUDY / "results.json", study / "results.json")
    runs = load_runs([study], {"group": "scaling", "M": "6", "seed": "0"})
    records = [
        r
        for r in json.loads((STUDY / "results.json").read_text())["runs"]
        if r["group"] == "scaling" and r["M"] == 6 and r["seed"] == 0
    ]
    assert len(runs) == len(records) >= 2
    for run, rec in zip(runs, records, strict=True):
        last = run.log.evals[-1]
        assert last["step"] == 200 and last["retrieval/mean/hit@1"] == rec["metrics"]["hit@1"]
        assert last["geometry/zeta"] == rec["metrics"]["zeta"] and rec["loss"] in run.name
        if rec.get("curve"):  # the curve's points become evaluations
            assert [e["step"] for e in run.log.evals] == [int(p["step"]) for p in rec["curve"]]
    text = write_compare(
        [study], tmp_path / "s.html", {"group": "scaling", "M": "6", "seed": "0"}
    ).read_text()
    diff = _rows(text, "configdiff")
    assert [row[0] for row in diff[1:]] == ["loss"]  # same study, settings, group, M, seed: only the loss


def test_bad_inputs_are_reported(two_runs, tmp_path):
    with pytest.raises(ReportError, match="at least two runs"):
        load_runs([two_runs[0]])
    with pytest.raises(ReportError, match="neither a run directory"):
        load_runs([two_runs[0], tmp_path])
    study = tmp_path / "study"
    study.mkdir()
    shutil.copy(STUDY / "results.json", study / "results.json")
    with pytest.raises(ReportError, match="--select KEY=VALUE"):
        load_runs([study])
    with pytest.raises(ReportError, match="no run records match"):
        load_runs([study], {"loss": "nope"})
    result = runner.invoke(app, ["compare", str(two_runs[0]), str(two_runs[1]), "--select", "oops"])
    assert result.exit_code != 0 and "KEY=VALUE" in result.output


def test_a_bad_select_is_a_usage_error_not_an_internal_one(tmp_path):
    # typer ships its own copy of click: its BadParameter must pass the CLI's error guard as a usage error
    from typer.testing import CliRunner

    from mmgeom.cli import app

    result = CliRunner().invoke(app, ["compare", str(tmp_path), str(tmp_path), "--select", "nokeyvalue"])
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.output and "internal error" not in result.output
