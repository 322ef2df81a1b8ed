"""A Typer app holding only the commands a test drives (test helper).

Other stages' CLIs are edited concurrently; a test of one command builds an app with just that
stage's ``register``, so an unrelated import error cannot break it.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

__all__ = ["stage_app"]


def stage_app(*registers: Callable[[typer.Typer], None]) -> typer.Typer:
    """An app with a root callback (so subcommands keep their names) and the given stages' commands."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """insightroi (test shell)"""

    for register in registers:
        register(app)
    return app
