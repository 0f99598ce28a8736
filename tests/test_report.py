"""``mmgeom.report``: the HTML page of a run (plots, tables, events, config), and a real browser render."""

from __future__ import annotations

import base64
import os
import re
import signal

import pytest
import torch

from mmgeom.report import ReportError, read_run, write_report
from mmgeom.train import Trainer, TrainingInterrupted
from test_train_faults import NaNAt
from test_train_trainer import synthetic_split, tiny_config

from browser import chromium, image_sizes

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run with evaluations, an interruption and a resume (and, in ``skip/``, one with a skipped step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("run")
    cfg = tiny_config(
        train={"steps": 16, "eval_every": 4, "log_every": 2},
        faults={"on_non_finite": "skip"},
        checkpoint={"every": 4},
        loss={"name": "align_uniform", "kwargs": {}},
    )
    data = synthetic_split()
    trainer = Trainer(cfg, path, data=data)
    original = trainer.train_step

    def step():
        scalars = original()
        if trainer.step == 9:
            os.kill(os.getpid(), signal.SIGINT)
        return scalars

    trainer.train_step = step
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    Trainer(cfg, path, data=data, resume=True).fit()
    skip_dir = path / "skip"  # a second, short run with one skipped step
    Trainer(
        tiny_config(train={"steps": 6}, faults={"on_non_finite": "skip"}, eval={"diagnostics": False}),
        skip_dir,
        data=data,
        loss=NaNAt({3}),
    ).fit()
    torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="module")
def page(run_dir):
    """The inline report of :func:`run_dir` (written once: plotting is the slow part)."""
    return write_report(run_dir)


def _images(text):
    return re.findall(r'src="data:image/png;base64,([^"]+)"', text)


def test_inline_report_is_self_contained(run_dir, page):
    text = page.read_text()
    assert page == run_dir / "report.html"
    for section in (
        "Training",
        "Cross-view retrieval",
        "Classification",
        "Geometry diagnostics",
        "Interruptions, resumes and faults",
        "Config",
    ):
        assert f"<h2>{section}</h2>" in text
    images = _images(text)
    assert len(images) == 5  # loss, optimisation, retrieval, classification, geometry
    assert all(base64.b64decode(img).startswith(PNG) for img in images)
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    assert "a&lt;-&gt;b" in text  # pair names escaped
    assert "loss_regime: global" in text  # the config
    assert "interrupted" in text and "from step 9" in text
    assert "finished" in text


def test_linked_report_saves_the_pngs(run_dir, tmp_path):
    out = tmp_path / "page.html"
    write_report(run_dir, out, inline=False)
    files = sorted(p.name for p in (tmp_path / "page_files").iterdir())
    assert files == ["classification.png", "geometry.png", "loss.png", "optimisation.png", "retrieval.png"]
    assert 'src="page_files/loss.png"' in out.read_text()
    assert all((tmp_path / "page_files" / f).read_bytes().startswith(PNG) for f in files)


def test_skips_and_unfinished_runs(run_dir, tmp_path):
    log = read_run(run_dir / "skip")
    assert [(e["step"], e["term"]) for e in log.events("skip")] == [(3, "loss term 'bad'")]
    partial = tmp_path / "partial"
    partial.mkdir()
    lines = (run_dir / "skip" / "metrics.jsonl").read_text().splitlines()
    kept = [line for line in lines if '"event": "eval"' not in line and '"event": "end"' not in line]
    (partial / "metrics.jsonl").write_text("\n".join(kept) + '\n{"event": "tra')  # torn last line
    text = write_report(partial).read_text()  # no evaluation: only the two training plots
    assert "running or killed" in text and "no config.yaml" in text and len(_images(text)) == 2
    assert "loss term &#x27;bad&#x27;" in text and "No evaluation yet." in text


def test_no_metrics_file_is_an_error(tmp_path):
    with pytest.raises(ReportError, match=r"no metrics\.jsonl"):
        write_report(tmp_path)


@pytest.mark.skipif(chromium() is None, reason="no chromium to render the page (apt-get install chromium)")
def test_chromium_renders_every_image(page, tmp_path):
    """Headless Chromium loads the page, decodes every image and lays it out with a real size."""
    images = image_sizes(page, tmp_path)
    assert len(images) == 5
    assert all(complete and width > 300 and height > 100 for complete, width, height in images), images
