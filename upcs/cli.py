"""The `upcs` command: one Typer app with a sub-app per layer (DESIGN.md, "Contracts").

Exit codes: 0 success, 1 runtime error with a clear message, 2 usage error.
"""

from __future__ import annotations

import typer

from upcs.cli_blocklist import app as blocklist_app
from upcs.cli_demo import app as demo_app
from upcs.cli_gateway import app as gateway_app
from upcs.cli_hub import app as hub_app
from upcs.cli_sync import app as sync_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="upcs",
    help="Unwanted Prisoner Contact Service: national call barring for prison phones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(blocklist_app, name="blocklist")
app.add_typer(gateway_app, name="gateway")
app.add_typer(sync_app, name="sync")
app.add_typer(hub_app, name="hub")
app.add_typer(demo_app, name="demo")


def main() -> None:
    app()
