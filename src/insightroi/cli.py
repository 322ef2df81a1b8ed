"""The ``insightroi`` command line. Thin: parse, call the library, print.

Each stage registers its own commands from ``insightroi/<stage>/_cli.py`` (a ``register(app)``
function), so stages can grow without editing this file; see the README's architecture notes.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="insightroi",
    help="Prove (or disprove) the ROI of an AI customer-insight program.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order is the order of the flow; it is also the order of `insightroi --help`.
_STAGE_CLIS = (
    "insightroi._core_cli",
    "insightroi.ingest._cli",
    "insightroi.insights._cli",
    "insightroi.chain._cli",
    "insightroi.experiments._cli",
    "insightroi.experiments._claim_cli",
    "insightroi.roi._cli",
    "insightroi.monitor._cli",
    "insightroi.report._cli",
    "insightroi.server._cli",
    "insightroi._pipeline_cli",
)

for _module in _STAGE_CLIS:
    # Every stage's commands import without the optional extras (web, spark, embeddings), which
    # their commands load when run; a failing import here is a bug and must surface.
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
