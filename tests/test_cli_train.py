"""``mmgeom config show|validate``, ``mmgeom train --resume [RUN_DIR]``, ``mmgeom report`` via CliRunner."""

from __future__ import annotations

import os
import signal

import pytest
import yaml
from typer.testing import CliRunner

from mmgeom.cli import app
from mmgeom.train import Trainer, config_from_dict, read_jsonl

runner = CliRunner()

SMALL = [
    "--set",
    "data.views=[kar, mor]",
    "--set",
    "train.steps=6",
    "--set",
    "train.batch_size=32",
    "--set",
    "model.hidden=16",
    "--set",
    "eval.diagnostics=false",
    "--set",
    "checkpoint.every=2",
]


def test_config_show_prints_the_resolved_yaml():
    result = runner.invoke(
        app, ["config", "show", "demo", "--set", "optim.lr=5e-4", "--set", "faults.max_skips=3"]
    )
    assert result.exit_code == 0, result.output
    cfg = config_from_dict(yaml.safe_load(result.output))
    assert cfg.optim.lr == 5e-4 and cfg.faults.max_skips == 3 and cfg.data.views is not None
    assert "checkpoint:" in result.output and "distributed:" in result.output


def test_config_validate_exit_codes(tmp_path):
    ok = runner.invoke(app, ["config", "validate", "demo"])
    assert ok.exit_code == 0 and "demo: valid" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("checkpoint:\n  evry: 5\nfaults:\n  on_non_finite: retry\n")
    result = runner.invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 2
    assert "checkpoint.evry: unknown key; did you mean 'every'?" in result.output
    assert "faults.on_non_finite" in result.output and "Traceback" not in result.output


def test_packaged_config_shortened_by_set_scales_its_warmup():
    result = runner.invoke(app, ["config", "show", "demo", "--set", "train.steps=20"])
    cfg = config_from_dict(yaml.safe_load(result.output))
    assert cfg.train.steps == 20 and cfg.optim.warmup_steps == 2


def test_train_then_resume_with_and_without_a_run_dir(tmp_path, mfeat):
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", "demo", "--out", str(out), "--no-progress", *SMALL])
    assert first.exit_code == 0, first.output
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"step-00000004", "step-00000006"}
    again = runner.invoke(app, ["train", "demo", *SMALL, "--no-progress", "--resume", str(out)])
    assert again.exit_code == 0, again.output
    bare = runner.invoke(app, ["train", "demo", *SMALL, "--out", str(out), "--resume"])  # value omitted
    assert bare.exit_code == 0, bare.output
    events = read_jsonl(out / "metrics.jsonl")
    assert [e["step"] for e in events if e["event"] == "resume"] == [6, 6]
    assert "Cross-view retrieval" in bare.output


def test_resume_errors_exit_2(tmp_path, mfeat):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["train", "demo", "--resume", str(empty)])
    assert result.exit_code == 2 and "has no checkpoint" in result.output
    result = runner.invoke(app, ["train", "demo", "--resume", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "is not a run directory" in result.output


def test_sigint_exits_130_with_the_resume_command(tmp_path, mfeat, monkeypatch):
    original = Trainer.train_step

    def step_then_signal(self):
        scalars = original(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return scalars

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "demo", "--out", str(out), "--no-progress", *SMALL])
    assert result.exit_code == 130, result.output
    assert "SIGINT received: stopped after step 3" in result.output
    assert f"--resume {out}" in result.output
    assert (out / "checkpoints" / "step-00000003").is_dir()


def test_report_command(tmp_path):
    from test_train_trainer import synthetic_split, tiny_config

    Trainer(
        tiny_config(train={"steps": 10}, eval={"diagnostics": False}), tmp_path, data=synthetic_split()
    ).fit()
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file() and "report.html" in result.output
    missing = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no metrics.jsonl" in missing.output


@pytest.mark.parametrize("command", ["report", "config"])
def test_help_lists_the_new_commands(command):
    result = runner.invoke(app, ["--help"])
    assert command in result.output
