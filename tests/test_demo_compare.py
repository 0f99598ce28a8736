"""`mmgeom demo`: the side-by-side table equals the metrics recomputed from the saved runs."""

from __future__ import annotations

import json
import statistics
from itertools import combinations

import pytest
import torch
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.evaluation import embed_views
from mmgeom.geometry import diagnose
from mmgeom.retrieval import retrieval_metrics
from mmgeom.studies.demo import comparison_rows, reading
from mmgeom.train import load_run

STEPS = 12


@pytest.fixture(scope="module")
def demo(tmp_path_factory, mfeat):
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(app, ["demo", "--steps", str(STEPS), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    return out, result.output, json.loads((out / "demo.json").read_text())


def recompute(run_dir):
    """hit@1, mAP and the diagnostics of a saved run, from its weights, by independent calls."""
    run = load_run(run_dir)
    emb = embed_views(run.encoder, run.data.test)
    views = list(emb)
    n = len(run.data.test)
    hits, maps = [], []
    for a, b in combinations(views, 2):
        both = [
            retrieval_metrics(emb[a], emb[b], torch.arange(n)),
            retrieval_metrics(emb[b], emb[a], torch.arange(n)),
        ]
        hits.append(statistics.fmean(m["hit@1"] for m in both))
        maps.append(statistics.fmean(m["map"] for m in both))
    d = diagnose(emb, labels=run.data.test.labels)

    def mean_of(prefix, skip=()):
        return statistics.fmean(v for k, v in d.items() if k.startswith(prefix) and k not in skip)

    return {
        "hit@1": statistics.fmean(hits),
        "mAP": statistics.fmean(maps),
        "modality gap": mean_of("gap/"),
        "positive cosine": mean_of("pos_cos/"),
        "uniformity": mean_of("uniform/", skip=("uniform/centroid",)),
        "effective rank": mean_of("erank/"),
        "zeta": d["zeta"],
        "chi": d["chi"],
        "Hölder divergence": d["holder"],
    }


def test_table_equals_metrics_recomputed_from_the_saved_runs(demo):
    out, _, summary = demo
    assert [r["label"] for r in summary["runs"].values()] == [
        "InfoNCE (anchor)",
        "UniAlign",
        "align + uniform",
    ]
    table = {row["metric"]: row["values"] for row in summary["table"]}
    for folder, run in summary["runs"].items():
        assert run["final_eval"]["step"] == STEPS
        expected = recompute(out / folder)
        for metric, value in expected.items():
            # demo.json keeps 6 significant digits (write_json): equal to that precision
            assert table[metric][run["label"]] == pytest.approx(value, rel=5e-6, abs=1e-9), (folder, metric)


def test_the_output_shows_the_table_the_reading_and_the_classification(demo):
    out, output, summary = demo
    for needle in ("InfoNCE (anchor)", "UniAlign", "align + uniform", "Hölder divergence", "zeta"):
        assert needle in output
    assert summary["reading"] == reading(summary["table"])
    best = max(summary["runs"].values(), key=lambda r: r["final_eval"]["retrieval/mean/hit@1"])["label"]
    assert summary["reading"].startswith(f"{best} retrieves best here")
    cls = summary["classification"]
    assert set(cls["metrics"]) == {"without DAGR", "with DAGR"}
    for metrics in cls["metrics"].values():
        assert 0.5 < metrics["fused"] <= 1.0  # fac + mor: ~0.98
    assert "Fusion classifier on fac + mor" in output
    assert (out / "compare.html").is_file() and "compare.html" in output


def test_comparison_rows_and_reading_by_hand():
    evals = {
        "A": {
            "retrieval/mean/hit@1": 0.5,
            "retrieval/mean/map": 0.6,
            "geometry/uniform/x": -3.0,
            "geometry/uniform/y": -1.0,
            "geometry/uniform/centroid": -9.0,
            "geometry/zeta": 0.4,
        },
        "B": {
            "retrieval/mean/hit@1": 0.7,
            "retrieval/mean/map": 0.5,
            "geometry/uniform/x": -2.5,
            "geometry/uniform/y": -2.5,
            "geometry/zeta": 0.2,
        },
    }
    rows = {r["metric"]: r for r in comparison_rows(evals)}
    assert rows["uniformity"]["values"] == {"A": -2.0, "B": -2.5}  # centroid excluded, mean of the views
    assert rows["modality gap"]["values"] == {"A": None, "B": None}
    assert reading(list(rows.values())) == (
        "B retrieves best here (hit@1 0.700 vs 0.500 A); B spreads the views most (uniformity -2.500); "
        "the alignment-uniformity conflict is lowest with B (zeta 0.200)."
    )


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--steps", "2", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert "not an mmgeom demo folder" in result.output
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_single_loss_demo_with_another_loss(tmp_path, mfeat):
    out = tmp_path / "one"
    result = CliRunner().invoke(
        app, ["demo", "--loss", "unialign", "--steps", "4", "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "loss unialign {}" in result.output
    assert "Cross-view retrieval on the test split" in result.output
