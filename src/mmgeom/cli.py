"""The ``mmgeom`` command line: ``train``, ``demo``, ``losses``, ``config``, ``report``, ``study``,
``features``, ``eval``.

User errors (a bad config key, a missing data package, no usable checkpoint, a non-finite loss) print one
message and exit with status 2 (1 for a run that diverged; 130/143 for a run stopped by SIGINT/SIGTERM
after writing its checkpoint); set ``MMGEOM_DEBUG=1`` to see the traceback instead.

``mmgeom train`` also runs under ``torchrun --nproc-per-node N -m mmgeom train CONFIG``: every worker
joins the process group from the torchrun variables and rank 0 alone prints and writes files.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from .data import DataUnavailableError
from .distributed import shutdown_distributed
from .errors import TrainingInterrupted
from .losses import get_loss_class, list_losses
from .train import (
    CheckpointError,
    ConfigError,
    ExperimentConfig,
    NonFiniteLossError,
    Trainer,
    TrainResult,
    demo_config,
    diagnostic_summary,
    pair_rows,
)
from .train.demo import DIAGNOSTIC_SUMMARY, PAIR_METRICS
from .train.launch import RESUME_LATEST, join_distributed, load_cli_config, resolve_resume_dir
from .version import __version__

app = typer.Typer(
    name="mmgeom",
    help="Geometry-aware multimodal representation learning: train, evaluate, list losses.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

T = TypeVar("T")

#: Exit status of user errors (bad config, missing data) — the same as command-line usage errors.
EXIT_USAGE = 2
#: Exit status of a run stopped by a non-finite loss.
EXIT_DIVERGED = 1
#: Exit status of a run stopped by a signal (after its checkpoint): 128 + the signal number.
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; report user errors as one line on stderr and exit, without a traceback."""
    try:
        return fn()
    except NonFiniteLossError as e:
        if os.environ.get("MMGEOM_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_DIVERGED) from None
    except TrainingInterrupted as e:
        if _is_rank_zero():
            typer.echo(f"{e}\ncontinue with: mmgeom train CONFIG --resume {e.run_dir}", err=True)
        raise typer.Exit(EXIT_SIGNAL.get(e.signal_name, 1)) from None
    except (ConfigError, CheckpointError, DataUnavailableError, ValueError, FileNotFoundError) as e:
        if os.environ.get("MMGEOM_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmgeom {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Geometry-aware multimodal representation learning: train, evaluate, list losses."""


# ------------------------------------------------------------------------------------------ report


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pairs_table(result: TrainResult, cfg: ExperimentConfig) -> Table:
    after = result.final_eval
    before = result.initial_eval
    pairs = cfg.eval.resolve_pairs(cfg.data.view_names())
    rows = pair_rows(before or {}, after, pairs, cfg.eval.directions, PAIR_METRICS)
    n = round(1.0 / float(after["chance/hit@1"]))
    how = "mean of both directions" if cfg.eval.directions == "both" else "query view -> gallery view"
    stages = "untrained -> trained" if before else "trained"
    title = f"Cross-view retrieval on the {cfg.eval.split} split ({stages})"
    caption = (
        f"instance-level: each of the {n} {cfg.eval.split} digits seen in one view must find itself among "
        f"the {n} in the other view; {how}; chance hit@1 = 1/{n} = {1.0 / n:.4f}"
    )
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    table.add_column("view pair", no_wrap=True)
    for m in PAIR_METRICS:
        table.add_column("mAP" if m == "map" else m, justify="right", no_wrap=True)

    def cell(row_before: dict[str, float], row_after: dict[str, float], m: str) -> str:
        a = row_after.get(m)
        return f"{_fmt(row_before.get(m))} → {_fmt(a)}" if before else _fmt(a)

    for r in rows:
        table.add_row(r.pair, *(cell(r.before, r.after, m) for m in PAIR_METRICS))
    mean_before = {
        m: float(v) for m in PAIR_METRICS if (v := (before or {}).get(f"retrieval/mean/{m}")) is not None
    }
    mean_after = {m: float(v) for m in PAIR_METRICS if (v := after.get(f"retrieval/mean/{m}")) is not None}
    table.add_section()
    table.add_row("mean", *(cell(mean_before, mean_after, m) for m in PAIR_METRICS), style="bold")
    return table


def _diagnostics_table(result: TrainResult) -> Table | None:
    after = diagnostic_summary(result.final_eval)
    if not after:
        return None
    before = diagnostic_summary(result.initial_eval) if result.initial_eval else {}
    table = Table(title="Geometry diagnostics (mmgeom.geometry.diagnose)", title_justify="left")
    table.add_column("diagnostic", no_wrap=True)
    if before:
        table.add_column("untrained", justify="right")
    table.add_column("trained", justify="right")
    table.add_column("mean over: meaning")
    for label, (_, meaning) in DIAGNOSTIC_SUMMARY.items():
        if label in after:
            values = ([_fmt(before.get(label))] if before else []) + [_fmt(after[label])]
            table.add_row(label, *values, meaning)
    return table


def _print_report(console: Console, result: TrainResult, cfg: ExperimentConfig, wall: float) -> None:
    console.print(_pairs_table(result, cfg))
    diag = _diagnostics_table(result)
    if diag is not None:
        console.print(diag)
    if result.history:
        first, last = result.history[0]["loss"], result.history[-1]["loss"]
        console.print(
            f"loss ({cfg.loss.name}): {first:.4f} (first {cfg.train.log_every} steps) -> {last:.4f} "
            f"(last {cfg.train.log_every})"
        )
    console.print(f"{result.steps} steps in {wall:.1f} s; run directory: {result.run_dir}", highlight=False)
    console.print(
        "  config.yaml, metrics.jsonl" + (f", {result.weights.name}" if result.weights else ""),
        highlight=False,
    )


def _magnitude_scored(trainer: Trainer, result: TrainResult, cfg: ExperimentConfig) -> TrainResult:
    """``result`` with its final retrieval re-scored by L2Dir magnitude scoring ``<ẑ_q, ‖h_d‖ ẑ_d>``.

    The trainer's encoder has no MagnitudeHead, so each gallery item's magnitude is the L2 norm of its
    raw embedding; queries stay normalised. The untrained (step 0) evaluation is dropped: it was scored
    by cosine.
    """
    from .train import cross_view_retrieval, embed_views

    data = trainer.data.part(cfg.eval.split)
    encoder = getattr(trainer.encoder, "module", trainer.encoder)
    emb = embed_views(encoder, data, trainer.device)
    after = {k: v for k, v in result.final_eval.items() if not str(k).startswith("retrieval/")}
    after["step"] = result.steps
    pairs = cfg.eval.resolve_pairs(data.view_names)
    magnitudes = {v: z.norm(dim=1) for v, z in emb.items()}
    after.update(
        cross_view_retrieval(emb, pairs, cfg.eval.directions, cfg.eval.ks, gallery_magnitudes=magnitudes)
    )
    return dataclasses.replace(result, evals=[after])


def _train_and_report(
    cfg: ExperimentConfig, out: Path | None, progress: bool, resume: bool = False, score: str = "cosine"
) -> None:
    console = Console()
    start = time.perf_counter()
    info = _guard(lambda: join_distributed(cfg))
    try:
        trainer = _guard(lambda: Trainer(cfg, out, progress=progress, resume=resume))
        result = _guard(trainer.fit)
        if info.is_main:
            if score == "magnitude":
                result = _magnitude_scored(trainer, result, cfg)
                console.print(
                    "score: magnitude — <q/|q|, |h_d| · h_d/|h_d|>: the query normalised, each gallery "
                    "item keeps the L2 norm of its raw embedding (L2Dir scoring)",
                    highlight=False,
                    markup=False,
                )
            _print_report(console, result, cfg, time.perf_counter() - start)
    finally:
        shutdown_distributed()


def _is_rank_zero() -> bool:
    """False in torchrun workers other than rank 0 (before the process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


class _OptionalValueCommand(TyperCommand):
    """A command whose ``--resume`` may be given without a value (``--resume`` or ``--resume DIR``)."""

    optional_values: ClassVar[dict[str, str]] = {"--resume": RESUME_LATEST}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                fixed.extend(args[i:])
                break
            nxt = args[i + 1] if i + 1 < len(args) else None
            if arg in self.optional_values and (nxt is None or nxt.startswith("-")):
                arg = f"{arg}={self.optional_values[arg]}"
            fixed.append(arg)
        return super().parse_args(ctx, fixed)


# ---------------------------------------------------------------------------------------- commands

_SET_HELP = "Override a config value, e.g. --set optim.lr=1e-3 (values are YAML; repeatable)."
_SCORE_HELP = (
    "Retrieval scoring of the final report: cosine (default) or magnitude (L2Dir: query normalised, "
    "gallery items keep the L2 norm of their embedding)."
)


class Score(str, enum.Enum):
    """Retrieval scoring choices of ``--score``."""

    cosine = "cosine"
    magnitude = "magnitude"


@app.command("train", cls=_OptionalValueCommand)
def train_command(
    config: Annotated[
        str, typer.Argument(metavar="CONFIG", help="YAML config file, or a packaged config's name (demo).")
    ],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE", help=_SET_HELP)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Run directory (default runs/<name>-<time>)."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="[RUN_DIR]",
            help="Continue the run in RUN_DIR from its newest good checkpoint (bit-identical to an "
            "uninterrupted run); without RUN_DIR: --out, run.out_dir, or the newest runs/<name>-*.",
        ),
    ] = None,
    score: Annotated[Score, typer.Option("--score", help=_SCORE_HELP)] = Score.cosine,
) -> None:
    """Train from a YAML config; writes config.yaml, metrics.jsonl and model.safetensors to the run dir.

    Several processes: torchrun --nproc-per-node N -m mmgeom train CONFIG (DDP; gloo on CPU, nccl on GPU).
    """
    cfg = _guard(lambda: load_cli_config(config, overrides or []))
    if resume is not None:
        out = _guard(lambda: resolve_resume_dir(resume, out, cfg))
    _train_and_report(cfg, out, progress, resume=resume is not None, score=score.value)


@app.command("demo")
def demo_command(
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, metavar="N", help="Training steps (default: the config's)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Run directory (default runs/demo-<time>)."),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE", help=_SET_HELP)
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
    score: Annotated[Score, typer.Option("--score", help=_SCORE_HELP)] = Score.cosine,
) -> None:
    """Align the six real views of UCI Multiple Features with InfoNCE; retrieval before vs after."""
    cfg = _guard(lambda: demo_config(steps, overrides or []))
    console = Console(quiet=not _is_rank_zero())
    views = cfg.data.view_names()
    console.print(
        f"mmgeom demo: {len(views)} views of UCI Multiple Features ({', '.join(views)}), "
        f"loss {cfg.loss.name} {cfg.loss.kwargs}, {cfg.model.head} heads -> {cfg.model.out_dim}-d, "
        f"{cfg.train.steps} steps of batch {cfg.train.batch_size}",
        highlight=False,
        markup=False,
    )
    _train_and_report(cfg, out, progress, score=score.value)


@app.command("losses")
def losses_command() -> None:
    """List the registered losses (the names configs use in loss.name)."""
    table = Table(title="Registered losses", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("summary")
    for name in list_losses():
        cls = get_loss_class(name)
        paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
        table.add_row(name, cls.__name__, " ".join(line.strip() for line in paragraph.splitlines()))
    Console().print(table)


@app.command("study")
def study_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Study name (see docs/studies.md).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Results folder (default runs/study-<name>-<time>)."),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, metavar="N", help="Seeds per setting (default: study's).")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A tiny version of the study (smoke test).")] = False,
) -> None:
    """Run a reproduction study on the bundled real data; writes a markdown results file and plots."""
    from .studies import run_study

    folder = out if out is not None else Path("runs") / f"study-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = _guard(lambda: run_study(name, out=folder, seeds=seeds, quick=quick))
    typer.echo(f"results: {path}")


# ------------------------------------------------------------------------------ config and report

config_app = typer.Typer(
    name="config",
    help="Show or validate an experiment config (with --set overrides applied).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(config_app, name="config")

_CONFIG_ARG = typer.Argument(metavar="CONFIG", help="YAML config file, or a packaged config's name (demo).")


@config_app.command("show")
def config_show_command(
    config: Annotated[str, _CONFIG_ARG],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE", help=_SET_HELP)
    ] = None,
) -> None:
    """Print the resolved config as YAML: every key, defaults filled in, overrides applied."""
    cfg = _guard(lambda: load_cli_config(config, overrides or []))
    typer.echo(cfg.to_yaml(), nl=False)


@config_app.command("validate")
def config_validate_command(
    config: Annotated[str, _CONFIG_ARG],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE", help=_SET_HELP)
    ] = None,
) -> None:
    """Check a config; exit 0 when valid, else 2 with each offending key path."""
    _guard(lambda: load_cli_config(config, overrides or []))
    typer.echo(f"{config}: valid")


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (metrics.jsonl).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="HTML file (default RUN_DIR/report.html)."),
    ] = None,
    inline: Annotated[
        bool,
        typer.Option(
            "--inline/--linked", help="Embed the PNG plots in the page (default) or save them next to it."
        ),
    ] = True,
) -> None:
    """Write a self-contained HTML report: loss curves, retrieval, classification, geometry, config."""
    from .report import write_report

    path = _guard(lambda: write_report(run_dir, out, inline=inline))
    typer.echo(f"report: {path}")


@app.command("features")
def features_command(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Bundled source: mfeat or fashion-text.")],
    out: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder to write the feature store(s) to.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing stores.")] = False,
) -> None:
    """Write frozen features of a bundled source to on-disk feature stores (run once, read many times).

    mfeat: the six UCI Multiple Features views (one store in OUT_DIR). fashion-text: frozen
    all-MiniLM-L6-v2 features of the Fashion-MNIST class phrasings (OUT_DIR/text) and the Fashion-MNIST
    images as pixels (OUT_DIR/images).
    """
    from .data.features import write_feature_source

    start = time.perf_counter()
    stores = _guard(lambda: write_feature_source(source, out, overwrite=overwrite))
    for name, store in stores.items():
        splits = ", ".join(f"{k} {v}" for k, v in store.manifest["split_counts"].items())
        typer.echo(f"{name}: {store.path} — {store.num_rows} rows (splits: {splits})")
        for m, d in store.dims.items():
            typer.echo(f"  {m}: {d}-d {store.dtypes[m]}")
    typer.echo(f"written in {time.perf_counter() - start:.1f} s")


# -------------------------------------------------------------------------------------------- eval


class RelevanceMode(str, enum.Enum):
    """``--relevance`` choices."""

    instance = "instance"
    label = "label"


class Backend(str, enum.Enum):
    """``--backend`` choices."""

    torch = "torch"
    faiss = "faiss"


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--ks: expected comma-separated integers such as 1,5,10, got {text!r}") from None
    if not ks:
        raise ValueError(f"--ks: expected at least one cut-off, got {text!r}")
    return ks


def _eval_table(
    source: Any, metrics: dict[str, float], pairs: list[tuple[str, str]], how: dict[str, Any]
) -> Table:
    """One row per evaluated direction and the mean over the pairs."""
    ks = how["ks"]
    if how["relevance"] == "label":
        wanted = [f"precision@{k}" for k in ks] + [f"recall@{ks[-1]}", "map", "mrr"]
    else:
        wanted = [f"hit@{k}" for k in ks] + ["mrr", "map", "median_rank"]
    columns = [c for c in wanted if f"retrieval/mean/{c}" in metrics]
    where = f"{source.split} split" if source.split is not None else "all rows"
    table = Table(
        title=f"Retrieval: {source.kind} {source.path} ({where}, {source.num_rows} rows)",
        title_justify="left",
    )
    table.add_column("query -> gallery", no_wrap=True)
    for c in columns:
        header = {"map": "mAP", "mrr": "MRR", "median_rank": "med. rank"}.get(
            c, c.replace("precision", "prec")
        )
        table.add_column(header, justify="right", no_wrap=True)
    directions = [
        d for q, g in pairs for d in ([(q, g), (g, q)] if how["directions"] == "both" else [(q, g)])
    ]

    def cell(key: str) -> str:
        value = metrics.get(key)
        return f"{value:.1f}" if key.endswith("rank") and value is not None else _fmt(value)

    for q, g in directions:
        table.add_row(f"{q} -> {g}", *(cell(f"retrieval/{q}->{g}/{c}") for c in columns))
    table.add_section()
    table.add_row("mean", *(cell(f"retrieval/mean/{c}") for c in columns), style="bold")
    if how["relevance"] == "label":
        chance = metrics["chance/precision"]
        relevance = f"label: every row of the query's class is a positive (chance precision {chance:.3f})"
    else:
        relevance = f"instance: row i's one positive is row i (chance hit@1 = 1/{source.num_rows})"
    score = "magnitude (L2Dir: <q/|q|, |g| g/|g|>)" if how["score"] == "magnitude" else "cosine"
    table.caption = f"relevance {relevance}; score {score}; backend {how['backend']}"
    table.caption_justify = "left"
    return table


@app.command("eval")
def eval_command(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_OR_FEATURES", help="A run directory (mmgeom train/demo) or a feature store folder."
        ),
    ],
    query: Annotated[
        str | None, typer.Option("--query", "-q", metavar="MOD", help="Query modality (default: every one).")
    ] = None,
    gallery: Annotated[
        str | None,
        typer.Option("--gallery", "-g", metavar="MOD", help="Gallery modality (default: every other one)."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="NAME",
            help="Runs: train, val or test (default: the run's eval.split). Stores: one of its splits "
            "(default: every row).",
        ),
    ] = None,
    relevance: Annotated[
        RelevanceMode,
        typer.Option(
            "--relevance", help="instance: row i <-> row i; label: every row of the same class is a positive."
        ),
    ] = RelevanceMode.instance,
    ks: Annotated[str, typer.Option("--ks", metavar="K,K,...", help="Cut-offs K.")] = "1,5,10",
    score: Annotated[Score, typer.Option("--score", help=_SCORE_HELP)] = Score.cosine,
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend",
            help="torch: every metric from the exact ranks; faiss: the cut-off metrics from exact top-K "
            "search through FAISS (pip install 'mmgeom[faiss]').",
        ),
    ] = Backend.torch,
    max_memory_mb: Annotated[
        float | None,
        typer.Option("--max-memory-mb", metavar="MB", help="Memory budget of the retrieval (default 256)."),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            metavar="WHICH",
            help="Runs: final (model.safetensors), best, latest, or a checkpoint path (default: final, else "
            "the newest checkpoint).",
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", metavar="PATH", help="Also write the metrics to this JSON file.")
    ] = None,
) -> None:
    """Evaluate retrieval between modalities of a trained run or of a feature store.

    Default: every pair of modalities (of one shared dimension), both directions, instance relevance.
    """
    import json

    from ._io import atomic_write_text
    from .train.offline_eval import eval_pairs, evaluate_source, open_eval_source

    cut_offs = _guard(lambda: _parse_ks(ks))
    src = _guard(lambda: open_eval_source(source, split, checkpoint=checkpoint))
    pairs, directions = _guard(lambda: eval_pairs(src, query, gallery))
    how = {
        "relevance": relevance.value,
        "score": score.value,
        "backend": backend.value,
        "ks": sorted(set(cut_offs)),
        "directions": directions,
    }
    metrics = _guard(
        lambda: evaluate_source(
            src,
            pairs,
            directions,
            cut_offs,
            relevance=relevance.value,
            score=score.value,
            backend=backend.value,
            max_memory_mb=max_memory_mb,
        )
    )
    Console().print(_eval_table(src, metrics, pairs, how))
    if json_path is not None:
        record = {
            "source": str(src.path),
            "kind": src.kind,
            "split": src.split,
            "rows": src.num_rows,
            **how,
            "pairs": [list(p) for p in pairs],
            **src.info,
            "metrics": metrics,
        }
        atomic_write_text(json_path, json.dumps(record, indent=1) + "\n")
        typer.echo(f"metrics: {json_path}")


class DecoderKind(str, enum.Enum):
    """``--decoder`` choices of ``mmgeom generate``."""

    conv = "conv"
    diffusion = "diffusion"


@app.command("generate")
def generate_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (mmgeom train/demo).")],
    image_view: Annotated[
        str, typer.Option("--image-view", metavar="VIEW", help="The view that is an image (mfeat: pix).")
    ] = "pix",
    decoder: Annotated[DecoderKind, typer.Option("--decoder", help="conv (fast) or diffusion.")] = (
        DecoderKind.conv
    ),
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Decoder training steps (default 800 conv, 1500 diffusion)."),
    ] = None,
    image_shape: Annotated[
        str | None,
        typer.Option("--image-shape", metavar="H,W", help="Image shape when the dataset has none."),
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", metavar="WHICH", help="final, best, latest or a path.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of decoder, classifier and sampling.")] = 0,
    classifier_steps: Annotated[
        int, typer.Option("--classifier-steps", min=1, help="Training steps of the scoring classifier.")
    ] = 1500,
) -> None:
    """Decode images from every other view's embeddings of a trained run (UnCLIP-style, no prior).

    Trains a decoder on the run's image-view embeddings (training split), decodes the test split from the
    image's own embedding, each other view and their mix, scores the images (classifier-space FID,
    precision/recall, accuracy, pixel MSE) and writes RUN/generation/ (results.json, PNG grid, weights),
    which `mmgeom report RUN` shows.
    """
    from .generation.from_run import generate_from_run

    shape = _guard(lambda: [int(x) for x in image_shape.split(",")]) if image_shape else None
    report = _guard(
        lambda: generate_from_run(
            run_dir,
            image_view,
            decoder=decoder.value,
            steps=steps,
            image_shape=shape,
            checkpoint=checkpoint,
            seed=seed,
            classifier_steps=classifier_steps,
            log=lambda m: typer.echo(m, err=True),
        )
    )
    table = Table(title=f"{report.decoder} decoder, {report.image_view} images (test split)")
    for col in ("condition", "FID", "precision", "recall", "accuracy", "pixel MSE"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for name, m in report.metrics.items():
        table.add_row(
            name,
            f"{m['fid']:.2f}",
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m.get('accuracy', float('nan')):.3f}",
            f"{m.get('pixel_mse', float('nan')):.4f}",
        )
    Console().print(table)
    typer.echo(
        f"classifier accuracy on real test images: {report.reference['test_accuracy']:.3f} "
        "(FID is measured in that classifier's features, not Inception)"
    )
    typer.echo(f"written: {report.out_dir}")


def main(argv: Sequence[str] | None = None) -> Any:
    """Console entry point (``mmgeom``); ``argv`` defaults to ``sys.argv[1:]``."""
    return app(args=list(argv) if argv is not None else sys.argv[1:], prog_name="mmgeom")
