"""The ``insightroi`` command line. Thin: parse, call the library, print.

Each stage registers its own commands from ``insightroi/<stage>/_cli.py`` (a ``register(app)``
function), so stages can grow without editing this file; see the README's architecture notes.
"""

from __future__ import annotations

import importlib

import typer
from rich.markup import escape

from insightroi._cli_common import BUSY_EXIT, err_console
from insightroi.errors import StoreBusyError

app = typer.Typer(
    name="insightroi",
    help="Prove (or disprove) the ROI of an AI customer-insight program.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order is the order of the flow; it is also the order of `insightroi --help`.
# Every command, `--help` included, and every CLI subprocess of the end-to-end tests imports all of
# these before it runs, so they import only Typer, Rich and light constants at the top; the stage
# libraries (numpy, pandas, Ibis, scipy, scikit-learn: seconds) load inside the command that needs
# them, and the stage packages load their modules on first use (insightroi._lazy). A heavy import
# here is a start-up cost on every command: tests/test_cli_startup.py fails on one.
_STAGE_CLIS = (
    "insightroi._core_cli",
    "insightroi.ingest._cli",
    "insightroi.insights._cli",
    "insightroi.delivery._cli",
    "insightroi.chain._cli",
    "insightroi.experiments._cli",
    "insightroi.experiments._assign_cli",
    "insightroi.experiments._geo_cli",
    "insightroi.experiments._claim_cli",
    "insightroi.roi._cli",
    "insightroi.monitor._cli",
    "insightroi.report._cli",
    "insightroi.privacy._cli",
    "insightroi.server._cli",
    "insightroi._pipeline_cli",
)

for _module in _STAGE_CLIS:
    # Every stage's commands import without the optional extras (web, spark, embeddings), which
    # their commands load when run; a failing import here is a bug and must surface.
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console-script entry point.

    A store held by another process (a second ingest, ``serve``) is one line naming the store
    and its holder, exit code 2, whichever command met it, never a traceback.
    """
    try:
        app()
    except StoreBusyError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(BUSY_EXIT) from None


if __name__ == "__main__":
    main()
