"""``mmgeom losses``: the registered losses, one line each."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..losses import get_loss_class, list_losses


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
