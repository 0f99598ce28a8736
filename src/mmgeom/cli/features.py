"""``mmgeom features SOURCE OUT_DIR``: write a bundled source's frozen features to feature stores."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .guard import guard


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
    from ..data.feature_sources import write_feature_source

    start = time.perf_counter()
    stores = guard(lambda: write_feature_source(source, out, overwrite=overwrite))
    for name, store in stores.items():
        splits = ", ".join(f"{k} {v}" for k, v in store.manifest["split_counts"].items())
        typer.echo(f"{name}: {store.path} — {store.num_rows} rows (splits: {splits})")
        for m, d in store.dims.items():
            typer.echo(f"  {m}: {d}-d {store.dtypes[m]}")
    typer.echo(f"written in {time.perf_counter() - start:.1f} s")
