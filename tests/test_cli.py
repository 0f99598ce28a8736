"""The ``mmgeom`` command line through typer's CliRunner (and once as ``python -m mmgeom``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmgeom import __version__
from mmgeom.cli import app
from mmgeom.losses import list_losses
from mmgeom.train import read_jsonl

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "demo", "losses"):
        assert command in result.output


@pytest.mark.parametrize(
    ("command", "words"), [("train", ["--set", "--out"]), ("demo", ["--steps", "--out"])]
)
def test_command_help(command, words):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for w in words:
        assert w in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_losses_lists_every_registered_loss():
    result = runner.invoke(app, ["losses"])
    assert result.exit_code == 0
    for name in list_losses():
        assert name in result.output
    assert "InfoNCELoss" in result.output


def test_bad_config_key_is_a_message_not_a_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  name: infonce\n  temprature: 0.1\n")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "loss.temprature: unknown key" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "missing.yaml"], "missing.yaml: config file not found"),
        (["train", "demo", "--set", "optim.lr"], "expected KEY.PATH=VALUE"),
        (["train", "demo", "--set", "optim.lr=-1"], "optim.lr: Input should be greater than 0"),
        (["demo", "--set", "eval.split=train"], "eval.split"),
    ],
)
def test_user_errors_exit_2_with_the_message(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_demo_rejects_zero_steps():
    result = runner.invoke(app, ["demo", "--steps", "0"])
    assert result.exit_code == 2


def test_train_a_packaged_config_with_overrides(tmp_path, mfeat):
    out = tmp_path / "run"
    args = ["train", "demo", "--out", str(out), "--no-progress", "--set", "train.steps=4"]
    args += [
        "--set",
        "optim.warmup_steps=0",
        "--set",
        "data.views=[pix, kar]",
        "--set",
        "eval.diagnostics=false",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pix<->kar" in result.output and "run directory" in result.output
    assert {p.name for p in out.iterdir()} == {"config.yaml", "metrics.jsonl", "model.safetensors"}
    events = read_jsonl(out / "metrics.jsonl")
    assert events[0]["views"] == ["pix", "kar"] and events[-1]["event"] == "end" and events[-1]["step"] == 4


def test_python_dash_m_runs_the_same_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "mmgeom", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "demo" in proc.stdout
