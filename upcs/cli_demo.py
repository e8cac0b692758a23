"""`upcs demo`: the main job on embedded defaults."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="demo commands.")
