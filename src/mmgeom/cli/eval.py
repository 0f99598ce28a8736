"""``mmgeom eval``: retrieval between the modalities of a trained run or of a feature store."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .guard import guard
from .options import SCORE_HELP, Score


class RelevanceMode(str, enum.Enum):
    """``--relevance`` choices."""

    instance = "instance"
    label = "label"


class Backend(str, enum.Enum):
    """``--backend`` choices."""

    torch = "torch"
    faiss = "faiss"


def parse_ks(text: str) -> tuple[int, ...]:
    """``"1,5,10"`` -> ``(1, 5, 10)``.

    Raises:
        ValueError: not comma-separated integers, or none at all.
    """
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--ks: expected comma-separated integers such as 1,5,10, got {text!r}") from None
    if not ks:
        raise ValueError(f"--ks: expected at least one cut-off, got {text!r}")
    return ks


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
    score: Annotated[Score, typer.Option("--score", help=SCORE_HELP)] = Score.cosine,
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
    from .._io import atomic_write_text
    from ..evaluation import eval_pairs, evaluate_source
    from ..report.tables import eval_table
    from ..train.offline_eval import open_eval_source

    cut_offs = guard(lambda: parse_ks(ks))
    src = guard(lambda: open_eval_source(source, split, checkpoint=checkpoint))
    pairs, directions = guard(lambda: eval_pairs(src, query, gallery))
    how = {
        "relevance": relevance.value,
        "score": score.value,
        "backend": backend.value,
        "ks": sorted(set(cut_offs)),
        "directions": directions,
    }
    metrics = guard(
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
    Console().print(eval_table(src, metrics, pairs, how))
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
