"""``mmgeom import OUT``: write a feature store from your own files (arrays, tables, images)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .guard import guard

_ROLE = "COLUMN[=MODALITY]"


def _pairs(items: list[str], what: str, default_to_key: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (sep and not value) or (not sep and not default_to_key):
            raise ValueError(
                f"{what}: expected {'MODALITY=PATH' if not default_to_key else _ROLE}, got {item!r}"
            )
        out[key] = value if sep else key
    return out


def _size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit():
        raise ValueError(f"--image-size: expected HEIGHTxWIDTH such as 28x28, got {text!r}")
    return int(h), int(w)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--fractions: expected three numbers TRAIN,VAL,TEST, got {text!r}") from None


def _build(opts: dict[str, Any]) -> Any:
    from ..data import importers as imp

    kinds = [k for k in ("array", "clip_retrieval", "table", "image_folder", "tar") if opts[k]]
    if len(kinds) != 1:
        raise ValueError(
            "import: give exactly one input kind: --array, --clip-retrieval, --table, --image-folder or --tar"
            + (f" (got {', '.join('--' + k.replace('_', '-') for k in kinds)})" if kinds else "")
        )
    kind = kinds[0]
    decoder = imp.ImageDecoder(_size(opts["image_size"]), opts["image_mode"])

    def encoder() -> Any:
        from ..data.text_encoder import MiniLMTextEncoder

        return MiniLMTextEncoder(opts["text_encoder"], batch_size=opts["text_batch"])

    if kind == "array":
        return imp.ArraysSource(
            _pairs(opts["array"], "--array", False),
            ids=opts["ids"],
            labels=opts["labels"],
            split=opts["split"],
            dtype=opts["dtype"],
        )
    cols = {"id_column": opts["id_column"], "label_column": opts["label_column"]}
    if kind == "clip_retrieval":
        return imp.ClipRetrievalSource(
            opts["clip_retrieval"], split_column=opts["split_column"], dtype=opts["dtype"], **cols
        )
    if kind == "table":
        texts = _pairs(opts["text"], "--text", True)
        files = [p for spec in opts["table"] for p in imp.expand_shards(spec)]
        return imp.TableSource(
            files,
            embeddings=_pairs(opts["embedding"], "--embedding", True),
            texts=texts,
            images=_pairs(opts["image"], "--image", True),
            split_column=opts["split_column"],
            text_encoder=encoder() if texts else None,
            image_decoder=decoder,
            dtype=opts["dtype"],
            **cols,
        )
    if kind == "image_folder":
        return imp.ImageFolderSource(opts["image_folder"], decoder, dtype=opts["dtype"] or "float32")
    shards = [p for spec in opts["tar"] for p in imp.expand_shards(spec)]
    return imp.TarShardSource(
        shards,
        decoder,
        text_encoder=None if opts["no_captions"] else encoder(),
        dtype=opts["dtype"] or "float32",
    )


def import_command(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The feature store folder to write.")],
    array: Annotated[
        list[str],
        typer.Option(
            "--array",
            metavar="MODALITY=PATH",
            help="Shards of a modality (.npy/.npz/"
            ".safetensors; a glob or repeated for several, concatenated in natural order).",
        ),
    ] = [],  # noqa: B006 (typer reads the default)
    ids: Annotated[Path | None, typer.Option(help="With --array: (N,) ids .npy.")] = None,
    labels: Annotated[Path | None, typer.Option(help="With --array: (N,) labels .npy.")] = None,
    split: Annotated[Path | None, typer.Option(help="With --array: (N,) split names .npy.")] = None,
    clip_retrieval: Annotated[
        Path | None, typer.Option("--clip-retrieval", metavar="DIR", help="A clip-retrieval output folder.")
    ] = None,
    table: Annotated[
        list[str], typer.Option("--table", metavar="FILE", help="Parquet/CSV/JSONL table(s) (globs allowed).")
    ] = [],  # noqa: B006
    embedding: Annotated[
        list[str], typer.Option("--embedding", metavar=_ROLE, help="Embedding column.")
    ] = [],  # noqa: B006
    text: Annotated[list[str], typer.Option("--text", metavar=_ROLE, help="Raw text column to encode.")] = [],  # noqa: B006
    image: Annotated[list[str], typer.Option("--image", metavar=_ROLE, help="Image path column.")] = [],  # noqa: B006
    image_folder: Annotated[
        Path | None, typer.Option("--image-folder", metavar="DIR", help="Images in DIR/<class>/ (or flat).")
    ] = None,
    tar: Annotated[
        list[str],
        typer.Option("--tar", metavar="SHARD", help="Webdataset tar shards: KEY.jpg + KEY.txt/.cls."),
    ] = [],  # noqa: B006
    no_captions: Annotated[
        bool, typer.Option("--no-captions", help="With --tar: skip .txt captions.")
    ] = False,
    id_column: Annotated[str | None, typer.Option(help="Column of unique ids (else row numbers).")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column of class labels (ints or names).")] = None,
    split_column: Annotated[
        str | None, typer.Option(help="Column of split names (else a seeded split).")
    ] = None,
    text_encoder: Annotated[
        Path | None, typer.Option(help="Local sentence-transformers/HF folder (default: bundled MiniLM).")
    ] = None,
    text_batch: Annotated[int, typer.Option(help="Sentences per encoder forward pass.")] = 64,
    image_size: Annotated[str, typer.Option(help="Decoded image size HEIGHTxWIDTH.")] = "28x28",
    image_mode: Annotated[str, typer.Option(help="L (grayscale) or RGB.")] = "L",
    dtype: Annotated[str | None, typer.Option(help="Store dtype: float16, float32 or float64.")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per block (bounds memory).")] = 16384,
    fractions: Annotated[str, typer.Option(help="TRAIN,VAL,TEST of the seeded split.")] = "0.7,0.1,0.2",
    seed: Annotated[int, typer.Option(help="Seed of the split written when there is no split column.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing store at OUT.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    no_sync: Annotated[
        bool,
        typer.Option(
            "--no-sync",
            help="Do not fsync the finished store (faster, like cp): the kernel writes it back later, and "
            "an operating-system crash or power cut before then can lose or corrupt the finished store. "
            "A killed import still resumes exactly.",
        ),
    ] = False,
) -> None:
    """Import your own data into a feature store: chunked, resumable (run it again after an interruption),
    written atomically, fsynced before it appears (unless --no-sync). Exactly one input kind: --array,
    --clip-retrieval, --table, --image-folder, --tar.
    """
    from ..data import FeatureStore
    from ..data.importers import run_import

    opts = dict(locals())
    start = time.perf_counter()

    def work() -> FeatureStore:
        source = _build(opts)
        path = run_import(
            source,
            out,
            chunk_rows=chunk_rows,
            fractions=_fractions(fractions),
            seed=seed,
            overwrite=overwrite,
            progress=progress,
            durable=not no_sync,
        )
        return FeatureStore.open(path)

    store = guard(work)
    splits = ", ".join(f"{k} {v}" for k, v in store.manifest["split_counts"].items())
    typer.echo(f"{store.path}: {store.num_rows} rows (splits: {splits})")
    for m, d in store.dims.items():
        n = int(store.present(m).sum())
        typer.echo(f"  {m}: {d}-d {store.dtypes[m]}, present in {n} rows")
    typer.echo(f"imported in {time.perf_counter() - start:.1f} s")
