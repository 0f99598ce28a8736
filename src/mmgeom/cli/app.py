"""The ``mmgeom`` typer app: the root options and every command group, in the order ``--help`` lists them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from ..version import __version__
from .compare import compare_command
from .demo import demo_command
from .embed import embed_command
from .eval import eval_command
from .features import features_command
from .generate import generate_command
from .guard import guarded
from .importer import import_command
from .losses import losses_command
from .options import OptionalValueCommand
from .report import report_command
from .study import study_command
from .train import config_show_command, config_validate_command, train_command

app = typer.Typer(
    name="mmgeom",
    help="Geometry-aware multimodal representation learning: train, evaluate, list losses.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


# Every command runs inside the one error boundary (cli/guard.py): one line on stderr, exit 2 or 1.
app.command("train", cls=OptionalValueCommand)(guarded(train_command))
app.command("demo")(guarded(demo_command))
app.command("losses")(guarded(losses_command))
app.command("study")(guarded(study_command))

config_app = typer.Typer(
    name="config",
    help="Show or validate an experiment config (with --set overrides applied).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
config_app.command("show")(guarded(config_show_command))
config_app.command("validate")(guarded(config_validate_command))
app.add_typer(config_app, name="config")

app.command("report")(guarded(report_command))
app.command("compare")(guarded(compare_command))
app.command("features")(guarded(features_command))
app.command("eval")(guarded(eval_command))
app.command("generate")(guarded(generate_command))
app.command("import")(guarded(import_command))
app.command("embed")(guarded(embed_command))


def main(argv: Sequence[str] | None = None) -> Any:
    """Console entry point (``mmgeom``); ``argv`` defaults to ``sys.argv[1:]``."""
    return app(args=list(argv) if argv is not None else sys.argv[1:], prog_name="mmgeom")
