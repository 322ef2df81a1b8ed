"""``insightroi serve``: the event API and dashboard over the store the CLI uses."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Optional

import typer

from insightroi._cli_common import StoreOption, console, fail, run_or_fail, store_url


def serve(
    store: StoreOption = None,
    program: Annotated[Optional[Path], typer.Option(
        "--program", "-p", envvar="INSIGHTROI_PROGRAM",
        help="Program file whose stages' saved sections the dashboard shows (default: ./insightroi.toml if it exists).",
    )] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Refuse request bodies over this size (413).")] = 1_000_000,
) -> None:
    """Serve the event API (token-authenticated writes) and the dashboard."""
    try:  # uvicorn and FastAPI are the optional 'web' extra: loaded only when serving
        import uvicorn

        from insightroi.server import create_app
    except ImportError as exc:
        fail(f"the web server needs the 'web' extra (pip install 'insightroi[web]'): {exc}")
    token = os.environ.get("INSIGHTROI_API_TOKEN")
    if not token:
        # A one-off token for this run, shown once on the operator's terminal (like Jupyter's).
        token = secrets.token_urlsafe(24)
        console.print(f"INSIGHTROI_API_TOKEN is not set; this run's API token is: [bold]{token}[/]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {host}: put TLS in front of it, the token travels in headers")
    app = run_or_fail(create_app, store_url(store), program=program, token=token, max_body_bytes=max_body_bytes)
    if app.state.program is None:
        console.print("[yellow]no program file[/] (--program or ./insightroi.toml): the dashboard shows the last "
                      "saved report bundle, not the stages' sections")
    console.print(f"dashboard and API on http://{host}:{port}/  (spec: /openapi.json)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command()(serve)
