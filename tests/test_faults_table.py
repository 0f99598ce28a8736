"""Table of bad inputs and faults: each row asserts the error class, that the message names the key or
path, and (for file faults) that nothing was lost or left half-written.

Every row's ``doc`` names a line of the table in ``docs/errors.md``; :func:`test_every_row_is_documented`
checks that the document lists each of them with the row's error class, so the user-facing document
cannot drift from what the code raises. Rows needing ``mount`` (a real full disk on a 1 MiB tmpfs, a
read-only file system) skip with the reason where mounting is not permitted.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmgeom._io import atomic_write_text
from mmgeom._validation import check_positive
from mmgeom.cli import app
from mmgeom.data.store_format import FeatureStoreError
from mmgeom.errors import CheckpointError, ConfigError, FileFormatError
from mmgeom.losses import AlignUniformLoss, DAGRRegularizer, InfoNCELoss, UniAlignLoss
from mmgeom.report import ReportError, write_report
from mmgeom.retrieval import retrieval_metrics, topk
from mmgeom.train import CheckpointStore, load_config, load_run, resolve_run_dir, trim_metrics
from mmgeom.train.checkpoint import load_tensors
from mmgeom.train.logging import read_jsonl
from mmgeom.train.runtime import usable_device

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
runner = CliRunner()


@dataclass
class CliFailure(Exception):
    """A CLI run that exited non-zero: its exit status and output (so CLI rows fit the table)."""

    code: int
    output: str

    def __str__(self) -> str:
        return self.output


class CliExit1(CliFailure):
    """The command line reported a runtime fault (exit status 1)."""


class CliExit2(CliFailure):
    """The command line reported bad input (exit status 2)."""


def cli(*args: str) -> None:
    """Run ``mmgeom ARGS``; raise :class:`CliExit1`/:class:`CliExit2` carrying the output on failure."""
    result = runner.invoke(app, list(args))
    out = result.output
    assert "Traceback" not in out, out
    if result.exit_code == 0:
        return
    assert isinstance(result.exception, SystemExit), f"not a clean exit: {result.exception!r}"
    lines = [line for line in out.splitlines() if line.startswith("error: ")]
    assert lines, out
    cls = {1: CliExit1, 2: CliExit2}[result.exit_code]
    raise cls(result.exit_code, out)


@dataclass
class Row:
    """One bad input: ``act(ctx)`` must raise ``error`` whose message contains every string of ``names``;
    ``after(ctx)`` then checks that nothing was lost or left half-written."""

    id: str
    doc: str
    act: Callable[[Ctx], Any]
    error: type[BaseException]
    names: tuple[str, ...]
    after: Callable[[Ctx], None] | None = None
    needs: tuple[str, ...] = ()


@dataclass
class Ctx:
    """What a row works on: a fresh folder, a tiny trained run (copied per row), mounts."""

    tmp: Path
    run_source: Path | None = None
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def run(self) -> Path:
        """A private copy of the tiny trained run (rows may damage it)."""
        if "run" not in self.files:
            assert self.run_source is not None
            self.files["run"] = Path(shutil.copytree(self.run_source, self.tmp / "run"))
        return self.files["run"]


# ------------------------------------------------------------------------------------------- helpers


def _batch(b: int = 4, d: int = 3, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(b, d, generator=g, dtype=dtype) for m in ("text", "image")}


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _yaml(ctx: Ctx, text: str) -> str:
    return str(_write(ctx.tmp / "config.yaml", text))


def _cfg(ctx: Ctx, *overrides: str) -> None:
    load_config(_yaml(ctx, "train:\n  steps: 5\n"), overrides)


def _metrics(ctx: Ctx, *lines: str, newline: bool = True) -> Path:
    text = "\n".join(lines) + ("\n" if newline else "")
    return _write(ctx.tmp / "r" / "metrics.jsonl", text)


GOOD = '{"event": "start", "step": 0}'
TRAIN = '{"event": "train", "step": 2, "loss": 1.0}'


def _unchanged(path_key: str) -> Callable[[Ctx], None]:
    """``after``: the file (or folder listing) recorded under ``path_key`` is byte-for-byte the same."""

    def check(ctx: Ctx) -> None:
        path, before = ctx.files[path_key]
        if path.is_dir():
            assert sorted(p.name for p in path.iterdir()) == before
        else:
            assert path.read_bytes() == before

    return check


def _remember(ctx: Ctx, key: str, path: Path) -> Path:
    ctx.files[key] = (path, sorted(p.name for p in path.iterdir()) if path.is_dir() else path.read_bytes())
    return path


def _no_temp_files(root_key: str) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        root = ctx.files[root_key]
        assert not [p for p in Path(root).rglob(".*") if p.name.endswith((".tmp", ".old"))]

    return check


def _checkpoint_dir(ctx: Ctx) -> Path:
    store = CheckpointStore(ctx.tmp / "ck")
    store.save(3, {"w": torch.ones(2)}, {}, {"n": 1})
    return ctx.tmp / "ck" / "step-00000003"


def _truncate(path: Path, keep: int = 20) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _mount(ctx: Ctx, options: str) -> Path:
    where = ctx.tmp / f"mnt-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here ({done.stderr.strip()})")
    ctx.files.setdefault("mounts", []).append(where)
    return where


def _full_disk(ctx: Ctx) -> Path:
    return _mount(ctx, "size=1m")


def _read_only(ctx: Ctx) -> Path:
    where = _mount(ctx, "size=1m")
    _write(where / "keep.txt", "kept")
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
    return where


# ---------------------------------------------------------------------------------------- actions


def _ckpt_save_enospc(ctx: Ctx) -> None:
    disk = _full_disk(ctx)
    store = CheckpointStore(disk / "ck", keep_last=5)
    store.save(1, {"w": torch.ones(4)}, {}, {"n": 1})
    ctx.files["ckroot"] = disk / "ck"
    store.save(2, {"w": torch.ones(4)}, {}, {"big": torch.zeros(400_000)})  # state.pt: torch's writer


def _ckpt_model_enospc(ctx: Ctx) -> None:
    disk = _full_disk(ctx)
    store = CheckpointStore(disk / "ck", keep_last=5)
    store.save(1, {"w": torch.ones(4)}, {}, {"n": 1})
    ctx.files["ckroot"] = disk / "ck"
    store.save(2, {"w": torch.zeros(400_000)}, {}, {})  # model.safetensors: safetensors' writer


def _previous_checkpoint_intact(ctx: Ctx) -> None:
    store = CheckpointStore(ctx.files["ckroot"])
    assert [p.name for p in store.step_dirs()] == ["step-00000001"]
    assert store.load_latest().step == 1
    _no_temp_files("ckroot")(ctx)


def _atomic_enospc(ctx: Ctx) -> None:
    disk = _full_disk(ctx)
    target = _write(disk / "results.json", '{"old": 1}')
    _remember(ctx, "target", target)
    ctx.files["ckroot"] = disk
    atomic_write_text(target, "x" * 2_000_000)


def _atomic_erofs(ctx: Ctx) -> None:
    ro = _read_only(ctx)
    _remember(ctx, "target", ro / "keep.txt")
    atomic_write_text(ro / "keep.txt", "new")


def _jsonl_writer_enospc(ctx: Ctx) -> None:
    from mmgeom.train.logging import JsonlWriter

    disk = _full_disk(ctx)
    _write(disk / "filler", b"\0" * 1_000_000)
    with JsonlWriter(disk / "metrics.jsonl") as log:
        for i in range(2000):
            log.write("train", i, loss="x" * 200)


def _eacces(ctx: Ctx) -> None:
    locked = ctx.tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() != 0:
        atomic_write_text(locked / "f.txt", "x")
        return
    # root ignores permission bits: write as an unprivileged user (the real uid stays 0, so the effective
    # uid can be given back), which is what a user without rights on the folder gets
    os.seteuid(65534)
    try:
        atomic_write_text(locked / "f.txt", "x")
    finally:
        os.seteuid(0)


def _resume_edited(ctx: Ctx) -> None:
    from mmgeom.train import Trainer

    cfg_path = ctx.run / "config.yaml"
    text = cfg_path.read_text(encoding="utf-8").replace("hidden: 16", "hidden: 24")
    assert "hidden: 24" in text
    cfg_path.write_text(text, encoding="utf-8")
    Trainer(load_config(cfg_path), ctx.run, progress=False, resume=True).fit()


def _report_to(ctx: Ctx, out: Path, inline: bool = True) -> None:
    write_report(ctx.run, out, inline=inline)


def _existing_folder(ctx: Ctx) -> Path:
    folder = ctx.tmp / "mine"
    _write(folder / "thesis.tex", "precious")
    return _remember(ctx, "target", folder)


def _existing_file(ctx: Ctx) -> Path:
    return _remember(ctx, "target", _write(ctx.tmp / "notes.html", "<p>my notes</p>"))


# ------------------------------------------------------------------------------------ feature stores

BAD_STORE = "malformed store"
STORE_ERR = FeatureStoreError


def _store(ctx: Ctx) -> Path:
    """A small valid store (two modalities, text missing in two rows) written by the public API."""
    from mmgeom.data import FeatureStore

    gen = np.random.default_rng(0)
    mask = np.ones(8, dtype=bool)
    mask[[1, 6]] = False
    FeatureStore.write(
        ctx.tmp / "store",
        {"image": gen.standard_normal((8, 4)).astype(np.float32), "text": gen.standard_normal((8, 3))},
        ids=[f"r{i}" for i in range(8)],
        labels=np.arange(8) % 2,
        split=["train"] * 6 + ["test"] * 2,
        masks={"text": mask},
    )
    return ctx.tmp / "store"


def _open_store(ctx: Ctx) -> None:
    from mmgeom.data import FeatureStore

    FeatureStore.open(ctx.tmp / "store")


def _store_manifest_not_json(ctx: Ctx) -> None:
    _write(_store(ctx) / "manifest.json", '{"format": "mmgeom-feature-store", ')
    _open_store(ctx)


def _store_manifest_key(ctx: Ctx) -> None:
    folder = _store(ctx)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["num_rows"]
    _write(folder / "manifest.json", json.dumps(manifest))
    _open_store(ctx)


def _store_truncated_npy(ctx: Ctx) -> None:
    folder = _store(ctx)
    data = (folder / "features-image.npy").read_bytes()
    _write(folder / "features-image.npy", data[:-5])
    _open_store(ctx)


def _store_row_count(ctx: Ctx) -> None:
    folder = _store(ctx)
    np.save(folder / "labels.npy", np.zeros(7, dtype=np.int64))
    _open_store(ctx)


def _store_split_code(ctx: Ctx) -> None:
    folder = _store(ctx)
    codes = np.load(folder / "split.npy")
    codes[3] = 9
    np.save(folder / "split.npy", codes)
    _open_store(ctx)


def _store_negative_row(ctx: Ctx) -> None:
    from mmgeom.data import FeatureStore

    FeatureStore.open(_store(ctx)).read("image", rows=[0, -1])


def _store_overwrite_foreign(ctx: Ctx) -> None:
    from mmgeom.data import FeatureStore

    folder = _existing_folder(ctx)
    FeatureStore.write(
        folder, {"a": np.zeros((2, 2), np.float32)}, ids=[0, 1], labels=[0, 1], split="train", overwrite=True
    )


def _store_cli_eval(ctx: Ctx) -> None:
    folder = _store(ctx)
    _write(folder / "manifest.json", "not json")
    cli("eval", str(folder))


# ------------------------------------------------------------------------------------------- table

CUDA = torch.cuda.is_available()
M = torch.tensor([True, False, False, False])

ROWS: list[Row] = [
    # ------------------------------------------------------------------ API: losses and hyper-parameters
    Row(
        "infonce-temperature-bool",
        "boolean hyper-parameter",
        lambda c: InfoNCELoss(temperature=True),
        ValueError,
        ("temperature", "boolean"),
    ),
    Row(
        "alignuniform-alpha-bool",
        "boolean hyper-parameter",
        lambda c: AlignUniformLoss(alpha=True),
        ValueError,
        ("alpha",),
    ),
    Row(
        "dagr-tau-bool", "boolean hyper-parameter", lambda c: DAGRRegularizer(tau=False), ValueError, ("tau",)
    ),
    Row("unialign-t-bool", "boolean hyper-parameter", lambda c: UniAlignLoss(t=True), ValueError, ("t:",)),
    Row(
        "positive-string",
        "boolean hyper-parameter",
        lambda c: check_positive("0.1", "temperature"),  # type: ignore[arg-type]
        ValueError,
        ("temperature", "string"),
    ),
    Row(
        "infonce-temperature-zero",
        "bad hyper-parameter",
        lambda c: InfoNCELoss(temperature=0.0),
        ValueError,
        ("temperature",),
    ),
    Row(
        "infonce-temperature-nan",
        "bad hyper-parameter",
        lambda c: InfoNCELoss(temperature=float("nan")),
        ValueError,
        ("temperature",),
    ),
    Row(
        "batch-is-list",
        "batch not a dict",
        lambda c: InfoNCELoss()(list(_batch().values())),  # type: ignore[arg-type]
        ValueError,
        ("batch", "dict", "list"),
    ),
    Row(
        "batch-is-tensor",
        "batch not a dict",
        lambda c: InfoNCELoss()(_batch()["text"]),  # type: ignore[arg-type]
        ValueError,
        ("batch", "Tensor"),
    ),
    Row(
        "mixed-dtypes",
        "mixed dtypes",
        lambda c: InfoNCELoss()({**_batch(), "image": _batch()["image"].double()}),
        ValueError,
        ("image", "float64", "float32"),
    ),
    Row(
        "all-masked",
        "all-masked batch",
        lambda c: UniAlignLoss()(_batch(), mask={"text": M, "image": ~M}),
        ValueError,
        ("mask", "no row"),
    ),
    Row(
        "all-masked-dagr",
        "all-masked batch",
        lambda c: DAGRRegularizer()(_batch(), mask={"text": torch.zeros(4, dtype=torch.bool)}),
        ValueError,
        ("mask", "no row"),
    ),
    Row(
        "nan-embedding",
        "bad embeddings",
        lambda c: InfoNCELoss()({**_batch(), "text": torch.full((4, 3), float("nan"))}),
        ValueError,
        ("text", "NaN"),
    ),
    Row(
        "zero-row",
        "bad embeddings",
        lambda c: InfoNCELoss()({**_batch(), "image": torch.zeros(4, 3)}),
        ValueError,
        ("image", "row 0"),
    ),
    Row(
        "one-dim-embedding",
        "bad embeddings",
        lambda c: InfoNCELoss()({**_batch(), "text": torch.ones(4)}),
        ValueError,
        ("text", "(B, D)"),
    ),
    Row(
        "row-count-mismatch",
        "bad embeddings",
        lambda c: InfoNCELoss()({**_batch(), "image": torch.randn(5, 3)}),
        ValueError,
        ("image", "rows"),
    ),
    Row(
        "float-labels",
        "bad embeddings",
        lambda c: InfoNCELoss()(_batch(), labels=torch.zeros(4)),
        ValueError,
        ("labels", "integer"),
    ),
    Row(
        "mask-unknown-modality",
        "bad embeddings",
        lambda c: UniAlignLoss()(_batch(), mask={"audio": torch.ones(4, dtype=torch.bool)}),
        ValueError,
        ("mask", "audio"),
    ),
    Row(
        "mask-not-bool",
        "bad embeddings",
        lambda c: UniAlignLoss()(_batch(), mask={"text": torch.ones(4)}),
        ValueError,
        ("mask['text']", "bool"),
    ),
    # ------------------------------------------------------------------------- API: retrieval
    Row(
        "relevance-negative-tensor",
        "negative row id",
        lambda c: retrieval_metrics(torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, -1, 2]), ks=(1,)),
        ValueError,
        ("relevance", "-1"),
    ),
    Row(
        "relevance-negative-list",
        "negative row id",
        lambda c: retrieval_metrics(torch.randn(2, 4), torch.randn(5, 4), [[0, 1], [-2]], ks=(1,)),
        ValueError,
        ("relevance", "-2"),
    ),
    Row(
        "relevance-out-of-range",
        "negative row id",
        lambda c: retrieval_metrics(torch.randn(2, 4), torch.randn(5, 4), torch.tensor([0, 5]), ks=(1,)),
        ValueError,
        ("relevance", "5"),
    ),
    Row(
        "topk-k-bool",
        "boolean hyper-parameter",
        lambda c: topk(torch.randn(2, 4), torch.randn(5, 4), True),  # type: ignore[arg-type]
        ValueError,
        ("k",),
    ),
    Row(
        "topk-chunk-bool",
        "boolean hyper-parameter",
        lambda c: topk(torch.randn(2, 4), torch.randn(5, 4), 2, chunk_size=True),  # type: ignore[arg-type]
        ValueError,
        ("chunk_size",),
    ),
    Row(
        "topk-int-query",
        "bad embeddings",
        lambda c: topk(torch.ones(2, 4, dtype=torch.long), torch.randn(5, 4), 1),
        ValueError,
        ("query", "floating"),
    ),
    # ------------------------------------------------------------------------------------ configs
    Row(
        "steps-true",
        "boolean in config",
        lambda c: _cfg(c, "train.steps=true"),
        ConfigError,
        ("train.steps", "integer"),
    ),
    Row("lr-true", "boolean in config", lambda c: _cfg(c, "optim.lr=true"), ConfigError, ("optim.lr",)),
    Row(
        "fractions-bool",
        "boolean in config",
        lambda c: _cfg(c, "data.fractions=[true, 0.2, 0.1]"),
        ConfigError,
        ("data.fractions", "item 0"),
    ),
    Row(
        "threads-true",
        "boolean in config",
        lambda c: _cfg(c, "train.num_threads=true"),
        ConfigError,
        ("train.num_threads",),
    ),
    Row(
        "loss-kwarg-bool",
        "boolean in config",
        lambda c: _cfg(c, "loss.kwargs={temperature: true}"),
        ConfigError,
        ("loss.kwargs", "temperature"),
    ),
    Row(
        "device-typo",
        "unknown device",
        lambda c: _cfg(c, "train.device=gpu"),
        ConfigError,
        ("train.device", "gpu"),
    ),
    Row(
        "unknown-key",
        "config key",
        lambda c: _cfg(c, "loss.temprature=0.1"),
        ConfigError,
        ("loss.temprature", "allowed keys"),
    ),
    Row("out-dim-zero", "config key", lambda c: _cfg(c, "model.out_dim=0"), ConfigError, ("model.out_dim",)),
    Row(
        "batch-size-text",
        "config key",
        lambda c: _cfg(c, "train.batch_size=abc"),
        ConfigError,
        ("train.batch_size",),
    ),
    Row(
        "min-lr-above-lr",
        "config key",
        lambda c: _cfg(c, "optim.lr=0.001", "optim.min_lr=0.1"),
        ConfigError,
        ("optim.min_lr",),
    ),
    Row("ks-zero", "config key", lambda c: _cfg(c, "eval.ks=[0]"), ConfigError, ("eval.ks",)),
    Row(
        "override-no-equals",
        "config key",
        lambda c: _cfg(c, "train.steps"),
        ConfigError,
        ("train.steps", "KEY.PATH=VALUE"),
    ),
    Row(
        "yaml-not-mapping",
        "config file",
        lambda c: load_config(_yaml(c, "- a\n- b\n")),
        ConfigError,
        ("config.yaml", "mapping"),
    ),
    Row(
        "yaml-syntax",
        "config file",
        lambda c: load_config(_yaml(c, "train: [1,\n")),
        ConfigError,
        ("config.yaml",),
    ),
    Row(
        "config-missing",
        "config file",
        lambda c: load_config(c.tmp / "nope.yaml"),
        ConfigError,
        ("nope.yaml",),
    ),
    Row(
        "cuda-missing",
        "device unavailable",
        lambda c: usable_device("cuda"),
        ConfigError,
        ("train.device", "cpu"),
        needs=("no-cuda",),
    ),
    Row(
        "cuda-index",
        "device unavailable",
        lambda c: usable_device("cuda:7"),
        ConfigError,
        ("train.device", "cuda:7"),
    ),
    # -------------------------------------------------------------------------------- checkpoints
    Row(
        "safetensors-truncated",
        "corrupt weights",
        lambda c: (_truncate(c.run / "model.safetensors"), load_tensors(c.run / "model.safetensors")),
        CheckpointError,
        ("model.safetensors", "truncated"),
    ),
    Row(
        "safetensors-garbage",
        "corrupt weights",
        lambda c: load_tensors(_write(c.tmp / "w.safetensors", b"\x07" * 64)),
        CheckpointError,
        ("w.safetensors",),
    ),
    Row(
        "safetensors-missing",
        "missing file",
        lambda c: load_tensors(c.tmp / "none.safetensors"),
        FileNotFoundError,
        ("none.safetensors",),
    ),
    Row(
        "load-run-truncated",
        "corrupt weights",
        lambda c: (_truncate(c.run / "model.safetensors"), load_run(c.run)),
        CheckpointError,
        ("model.safetensors",),
    ),
    Row(
        "manifest-not-json",
        "corrupt checkpoint",
        lambda c: CheckpointStore(c.tmp / "ck").load(
            _write(_checkpoint_dir(c) / "manifest.json", "{not json").parent
        ),
        CheckpointError,
        ("manifest.json", "step-00000003"),
    ),
    Row(
        "manifest-no-step",
        "corrupt checkpoint",
        lambda c: CheckpointStore(c.tmp / "ck").load(
            _write(_checkpoint_dir(c) / "manifest.json", "{}").parent
        ),
        CheckpointError,
        ("manifest.json",),
    ),
    Row(
        "checkpoint-bitflip",
        "corrupt checkpoint",
        lambda c: CheckpointStore(c.tmp / "ck").load(
            _write(_checkpoint_dir(c) / "state.pt", b"0" * 100).parent
        ),
        CheckpointError,
        ("state.pt",),
    ),
    Row(
        "checkpoint-file-missing",
        "corrupt checkpoint",
        lambda c: (
            (_checkpoint_dir(c) / "loss.safetensors").unlink(),
            CheckpointStore(c.tmp / "ck").load_latest(),
        ),
        CheckpointError,
        ("loss.safetensors", "missing"),
    ),
    Row(
        "no-checkpoint",
        "corrupt checkpoint",
        lambda c: CheckpointStore(c.tmp / "empty").load_latest(),
        CheckpointError,
        ("no checkpoint",),
    ),
    Row(
        "load-run-no-config",
        "not a run folder",
        lambda c: load_run(_write(c.tmp / "x" / "a.txt", "").parent),
        FileNotFoundError,
        ("config.yaml",),
    ),
    Row(
        "load-run-best-missing",
        "missing file",
        lambda c: load_run(c.run, "best"),
        FileNotFoundError,
        ("best",),
    ),
    Row(
        "load-run-txt-weights",
        "corrupt weights",
        lambda c: load_run(c.run, _write(c.tmp / "w.txt", "x")),
        ValueError,
        ("w.txt", ".safetensors"),
    ),
    Row(
        "resume-edited-config",
        "resume with another config",
        _resume_edited,
        ConfigError,
        ("model.hidden", "16", "24"),
    ),
    # ------------------------------------------------------------------------------- metrics.jsonl
    Row(
        "jsonl-middle-not-json",
        "bad metrics line",
        lambda c: read_jsonl(_metrics(c, GOOD, "{oops", TRAIN)),
        FileFormatError,
        ("metrics.jsonl", "line 2", "not JSON"),
    ),
    Row(
        "jsonl-middle-array",
        "bad metrics line",
        lambda c: read_jsonl(_metrics(c, GOOD, "[1, 2]", TRAIN)),
        FileFormatError,
        ("line 2", "JSON object"),
    ),
    Row(
        "jsonl-step-text",
        "bad metrics line",
        lambda c: read_jsonl(_metrics(c, GOOD, '{"event": "train", "step": "2"}', TRAIN)),
        FileFormatError,
        ("line 2", "step"),
    ),
    Row(
        "jsonl-no-event",
        "bad metrics line",
        lambda c: read_jsonl(_metrics(c, '{"step": 1}', TRAIN)),
        FileFormatError,
        ("line 1", "event"),
    ),
    Row(
        "jsonl-last-line-complete-but-bad",
        "bad metrics line",
        lambda c: read_jsonl(_metrics(c, GOOD, "{oops")),
        FileFormatError,
        ("line 2",),
    ),
    Row(
        "jsonl-not-utf8",
        "bad metrics line",
        lambda c: read_jsonl(_write(c.tmp / "m.jsonl", GOOD.encode() + b"\n\xff\xfe\n")),
        FileFormatError,
        ("m.jsonl", "line 2", "UTF-8"),
    ),
    Row(
        "jsonl-missing",
        "missing file",
        lambda c: read_jsonl(c.tmp / "metrics.jsonl"),
        FileNotFoundError,
        ("metrics.jsonl",),
    ),
    Row(
        "trim-bad-middle",
        "bad metrics line",
        lambda c: trim_metrics(_remember(c, "target", _metrics(c, GOOD, "{oops", TRAIN)), 1),
        FileFormatError,
        ("line 2",),
        after=_unchanged("target"),
    ),
    Row(
        "report-bad-metrics",
        "bad metrics line",
        lambda c: write_report(_metrics(c, GOOD, "{oops", TRAIN).parent),
        FileFormatError,
        ("line 2",),
    ),
    Row(
        "report-no-metrics",
        "not a run folder",
        lambda c: write_report(c.tmp),
        ReportError,
        ("metrics.jsonl",),
    ),
    Row(
        "report-run-is-file",
        "not a run folder",
        lambda c: write_report(_write(c.tmp / "f", "x")),
        ReportError,
        ("f",),
    ),
    # --------------------------------------------------------------------------- folder writers
    Row(
        "report-out-folder",
        "writer refuses",
        lambda c: _report_to(c, _existing_folder(c)),
        ReportError,
        ("mine", "folder"),
        after=_unchanged("target"),
    ),
    Row(
        "report-out-foreign-file",
        "writer refuses",
        lambda c: _report_to(c, _existing_file(c)),
        ReportError,
        ("notes.html", "not an mmgeom report"),
        after=_unchanged("target"),
    ),
    Row(
        "report-linked-foreign-files",
        "writer refuses",
        lambda c: (
            _write(c.tmp / "rep_files" / "data.csv", "1"),
            _remember(c, "target", c.tmp / "rep_files"),
            _report_to(c, c.tmp / "rep.html", inline=False),
        ),
        ReportError,
        ("rep_files", "data.csv"),
        after=_unchanged("target"),
    ),
    Row(
        "run-out-foreign-folder",
        "writer refuses",
        lambda c: resolve_run_dir("x", _existing_folder(c)),
        ValueError,
        ("mine", "not an mmgeom run directory"),
        after=_unchanged("target"),
    ),
    Row(
        "run-out-is-file",
        "writer refuses",
        lambda c: resolve_run_dir("x", _existing_file(c)),
        ValueError,
        ("notes.html", "not a directory"),
        after=_unchanged("target"),
    ),
    # ------------------------------------------------------------------------- disk and permissions
    Row(
        "checkpoint-state-enospc",
        "disk full",
        _ckpt_save_enospc,
        OSError,
        ("step-00000002", "state.pt", "intact"),
        after=_previous_checkpoint_intact,
    ),
    Row(
        "checkpoint-model-enospc",
        "disk full",
        _ckpt_model_enospc,
        OSError,
        ("step-00000002", "model.safetensors"),
        after=_previous_checkpoint_intact,
    ),
    Row(
        "atomic-write-enospc",
        "disk full",
        _atomic_enospc,
        OSError,
        ("No space",),
        after=lambda c: (_unchanged("target")(c), _no_temp_files("ckroot")(c)),
    ),
    Row("jsonl-writer-enospc", "disk full", _jsonl_writer_enospc, OSError, ("metrics.jsonl",)),
    Row(
        "atomic-write-erofs",
        "read-only file system",
        _atomic_erofs,
        OSError,
        ("Read-only",),
        after=_unchanged("target"),
    ),
    Row("atomic-write-eacces", "permission denied", _eacces, PermissionError, ("locked",)),
    # ---------------------------------------------------------------------------------------- CLI
    Row(
        "cli-steps-true",
        "boolean in config",
        lambda c: cli("config", "validate", "demo", "--set", "train.steps=true"),
        CliExit2,
        ("train.steps",),
    ),
    Row(
        "cli-cuda",
        "device unavailable",
        lambda c: cli(
            "train", "demo", "--out", str(c.tmp / "o"), "--set", "train.device=cuda", "--no-progress"
        ),
        CliExit2,
        ("train.device", "CUDA is not available"),
        needs=("no-cuda",),
    ),
    Row(
        "cli-out-under-file",
        "not a directory",
        lambda c: cli("train", "demo", "--out", str(_write(c.tmp / "file", "x") / "run"), "--no-progress"),
        CliExit2,
        ("file", "Not a directory", "not a folder"),
    ),
    Row(
        "cli-report-out-folder",
        "writer refuses",
        lambda c: cli("report", str(c.run), "--out", str(_existing_folder(c))),
        CliExit2,
        ("mine", "folder"),
        after=_unchanged("target"),
    ),
    Row(
        "cli-report-bad-metrics",
        "bad metrics line",
        lambda c: cli("report", str(_metrics(c, GOOD, "{oops", TRAIN).parent)),
        CliExit2,
        ("metrics.jsonl", "line 2"),
    ),
    Row(
        "cli-eval-truncated-weights",
        "corrupt weights",
        lambda c: (_truncate(c.run / "model.safetensors"), cli("eval", str(c.run))),
        CliExit2,
        ("model.safetensors",),
    ),
    Row(
        "cli-config-missing",
        "config file",
        lambda c: cli("config", "validate", str(c.tmp / "none.yaml")),
        CliExit2,
        ("none.yaml",),
    ),
    Row(
        "cli-train-out-full-disk",
        "disk full",
        lambda c: cli(
            "train",
            "demo",
            "--out",
            str(_full_disk(c) / "run"),
            "--no-progress",
            "--set",
            "train.steps=2",
            "--set",
            "model.hidden=512",
            "--set",
            "train.eval_before=false",
        ),
        CliExit1,
        ("run", "disk is full"),
    ),
    Row(
        "cli-train-out-read-only",
        "read-only file system",
        lambda c: cli("train", "demo", "--out", str(_read_only(c) / "run"), "--no-progress"),
        CliExit1,
        ("run", "read-only"),
    ),
    # feature stores: every reader names the file, key and row; no writer replaces a folder it did not write
    Row("store-manifest-json", BAD_STORE, _store_manifest_not_json, STORE_ERR, ("manifest.json", "JSON")),
    Row("store-manifest-key", BAD_STORE, _store_manifest_key, STORE_ERR, ("manifest.json", "num_rows")),
    Row(
        "store-truncated-npy", BAD_STORE, _store_truncated_npy, STORE_ERR, ("features-image.npy", "truncated")
    ),
    Row("store-row-count", BAD_STORE, _store_row_count, STORE_ERR, ("labels.npy", "(7,)", "(8,)")),
    Row("store-split-code", BAD_STORE, _store_split_code, STORE_ERR, ("split.npy", "row 3", "split code 9")),
    Row("store-negative-row", "negative row id", _store_negative_row, STORE_ERR, ("rows[1]", "-1")),
    Row(
        "store-overwrite-foreign",
        "writer refuses",
        _store_overwrite_foreign,
        STORE_ERR,
        ("mine", "not a feature store"),
        after=_unchanged("target"),
    ),
    Row("store-cli-eval", BAD_STORE, _store_cli_eval, CliExit2, ("manifest.json",)),
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, train_tiny_run: Callable[..., Path]) -> Path:
    """One tiny trained run (mfeat, two views, checkpoints); rows copy it before damaging it."""
    from mmgeom.data import DataUnavailableError

    out = tmp_path_factory.mktemp("faults") / "run"
    try:
        return train_tiny_run(out, ("fac", "fou"), "checkpoint.every=3", "train.steps=6")
    except DataUnavailableError as err:
        pytest.skip(str(err))


@pytest.fixture
def ctx(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Ctx]:
    row: Row = request.node.callspec.params["row"]
    uses_run = any(
        s in row.id for s in ("run", "safetensors-truncated", "resume", "report-out", "report-linked", "eval")
    )
    c = Ctx(tmp_path, request.getfixturevalue("tiny_run") if uses_run else None)
    yield c
    for where in reversed(c.files.get("mounts", [])):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_the_table_has_at_least_60_distinct_rows() -> None:
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)) and len(ids) >= 60, len(ids)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_fault(row: Row, ctx: Ctx) -> None:
    if "no-cuda" in row.needs and CUDA:
        pytest.skip("this machine has CUDA")
    if row.id == "cuda-index" and CUDA and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped-checkpoint warnings are asserted elsewhere
        with pytest.raises(row.error) as info:
            row.act(ctx)
    message = str(info.value)
    for name in row.names:
        assert name in message, f"{row.id}: {name!r} not in {message!r}"
    if isinstance(info.value, OSError) and row.error is OSError:
        assert info.value.filename is not None or "metrics" in message or "/" in message
    if row.after is not None:
        row.after(ctx)


def test_every_row_is_documented() -> None:
    """docs/errors.md lists every row's ``doc`` class in its table, with the row's error class."""
    text = DOCS.read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3:
            table[cells[0]] = cells[1]
    for row in ROWS:
        assert row.doc in table, f"docs/errors.md has no row {row.doc!r}"
        name = {CliExit1: "exit 1", CliExit2: "exit 2"}.get(row.error, row.error.__name__)
        assert name in table[row.doc], f"docs/errors.md row {row.doc!r} does not name {name}"


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path / "metrics.jsonl", f'{GOOD}\n{TRAIN}\n{{"event": "tr')
    with pytest.warns(UserWarning, match="line 3 is cut short"):
        events = read_jsonl(path)
    assert [e["event"] for e in events] == ["start", "train"]


def test_debug_keeps_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMGEOM_DEBUG", "1")
    result = runner.invoke(app, ["config", "validate", "demo", "--set", "train.steps=true"])
    assert isinstance(result.exception, ConfigError)


def test_torch_write_failure_message_is_one_line_exit_1() -> None:
    """torch's zip writer reports ENOSPC as an enforce failure; the boundary names it a full disk."""
    from mmgeom.cli.guard import EXIT_RUNTIME, describe

    err = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598\nframe #0 ...")
    code, message = describe(err) or (0, "")
    assert code == EXIT_RUNTIME and "disk is probably full" in message and "\n" not in message


def test_oserror_without_a_path_still_says_what_to_do() -> None:
    from mmgeom.cli.guard import describe

    code, message = describe(OSError(errno.ENOSPC, "No space left on device")) or (0, "")
    assert code == 1 and "free some space" in message


def test_json_module_errors_exit_2() -> None:
    from mmgeom.cli.guard import describe

    with pytest.raises(json.JSONDecodeError) as info:
        json.loads("{x")
    assert (describe(info.value) or (0, ""))[0] == 2
