"""``mmgeom embed RUN STORE OUT``: apply a trained run's heads to a feature store, write the embeddings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .guard import guard


def embed_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (mmgeom train).")],
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The feature store to embed.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The embedding store to write.")],
    checkpoint: Annotated[
        str | None, typer.Option(help="Weights: final, best, latest or a path (default: the run's final).")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk.")] = 16384,
    device: Annotated[str, typer.Option(help="Torch device of the encoder.")] = "cpu",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing store at OUT.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Embed every row of STORE with RUN's trained heads (standardised with RUN's training statistics)
    and write OUT: one embedding per modality, with STORE's ids, labels, split and presence masks.
    """
    from ..evaluation.embed_store import embed_store
    from ..train.runload import load_run

    start = time.perf_counter()

    def work() -> object:
        loaded = load_run(run, checkpoint, device=device)
        cfg = loaded.config
        return embed_store(
            loaded.encoder,
            store,
            out,
            modalities=list(loaded.data.train.view_names),
            out_dim=cfg.model.out_dim,
            standardizer=loaded.data.standardizer,
            metadata={"run": str(loaded.run_dir), "weights": str(loaded.weights), "step": loaded.step},
            chunk_rows=chunk_rows,
            device=device,
            overwrite=overwrite,
            progress=progress,
        )

    written = guard(work)
    typer.echo(f"{written}")
    typer.echo(f"embedded in {time.perf_counter() - start:.1f} s")
