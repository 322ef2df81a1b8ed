"""Options and helpers shared by every stage's CLI commands (kept tiny: parse, call, print)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape

from insightroi.errors import InsightRoiError, StoreBusyError

#: Exit code of a command that found the store held by another process (retry later); 1 is
#: any other refusal.
BUSY_EXIT = 2
#: Exit code of a command that ran and whose ``--fail-on`` gate tripped (a CI job stops on it);
#: distinct from 1 (refused) and 2 (busy) so a pipeline can tell "bad news" from "broken".
GATE_EXIT = 3


class SafeConsole(Console):
    """A Rich console that never crashes on markup inside user values.

    Commands escape what users wrote (file, column, program and KPI names) with
    :func:`rich.markup.escape`; should one slip through, ``'[/i]'`` in a value would raise
    MarkupError mid-command, so the output is printed again without markup instead.
    """

    def print(self, *objects, **kwargs) -> None:  # noqa: D102 - Console.print
        try:
            super().print(*objects, **kwargs)
        except MarkupError:
            markup = self._markup
            self._markup = False  # also what table cells are rendered with
            try:
                super().print(*objects, **{**kwargs, "markup": False})
            finally:
                self._markup = markup


# Piped output (CI logs, `| less`) has no terminal width; 80 columns crushes the effect tables.
console = SafeConsole(width=None if Console().is_terminal else 140)
err_console = SafeConsole(stderr=True)

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        "-s",
        envvar="INSIGHTROI_STORE",
        help="Store URL: duckdb:///path.duckdb (default), pyspark:///warehouse, databricks://...",
    ),
]
ProgramOption = Annotated[
    Path,
    typer.Option("--program", "-p", envvar="INSIGHTROI_PROGRAM", help="Program file (insightroi.toml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

DEFAULT_STORE = "duckdb:///insightroi.duckdb"
DEFAULT_PROGRAM = Path("insightroi.toml")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error in red on stderr and exit with ``code``.

    The message is printed as it is: one line stays one line (no wrapping at the console
    width, which is 80 columns when stderr is a pipe), and brackets in it are not markup.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def fail_with(exc: BaseException) -> NoReturn:
    """:func:`fail` with an exception's message: exit code :data:`BUSY_EXIT` (2) when the store
    is held by another process (:class:`~insightroi.errors.StoreBusyError`), else 1."""
    # A KeyError's str() is the repr of its message (quoted); strip only that one pair, not a
    # quote that closes the message itself ("... has id 'nope'").
    msg = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    fail(msg, BUSY_EXIT if isinstance(exc, StoreBusyError) else 1)


def gate(failures: list[str], flag: str) -> None:
    """End a command that ran with exit code :data:`GATE_EXIT`, listing why, when its gate tripped.

    Parameters
    ----------
    failures : list of str
        The tripped conditions; empty means the gate passes and nothing happens.
    flag : str
        The option as the user wrote it (``--fail-on srm``), named in the message.
    """
    if not failures:
        return
    err_console.print(f"[bold red]gate failed[/] ({escape(flag)}): {len(failures)} condition(s)", highlight=False)
    for line in failures:
        err_console.print(f"  - {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(GATE_EXIT)


def run_or_fail(func, *args, **kwargs):
    """Call ``func``; turn insightroi's named errors into a clean message and exit code 1.

    Every command that opens a store does it through here (``with run_or_fail(open_store, url)
    as st:``), so a store another process holds (:class:`~insightroi.errors.StoreBusyError`)
    is one line naming the store and its holder, never a traceback, with exit code 2.
    """
    try:
        return func(*args, **kwargs)
    except (InsightRoiError, FileNotFoundError, KeyError) as exc:
        fail_with(exc)


def store_url(value: str | None) -> str:
    """The store URL to use: the option, else $INSIGHTROI_STORE, else the default file."""
    return value or os.environ.get("INSIGHTROI_STORE") or DEFAULT_STORE
