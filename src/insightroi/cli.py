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
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:
        # A stage whose module is not there yet (or whose optional extra is not installed)
        # simply contributes no commands; any other import error is a bug and must surface.
        if _exc.name is None or not _module.startswith(_exc.name):
            raise
        continue
    _mod.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
