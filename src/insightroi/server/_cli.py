"""``insightroi serve``: the event API and dashboard over the store the CLI uses."""

from __future__ import annotations

import os
import secrets
import stat
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer

from insightroi._cli_common import StoreOption, console, fail, run_or_fail, store_url

# 32 characters, like MIN_TOKEN_LENGTH (the server module imports FastAPI, so not imported here).
_MIN_TOKEN = 32
DEFAULT_TOKEN_FILE = Path(".insightroi-token")


def _token_from_file(path: Path) -> str:
    """This server's token: read from ``path``, or generated into it (mode 0600) on first use.

    The token is never printed: terminal scroll-back, CI logs and ``journalctl`` keep what a
    server prints, and anyone who reads them could write to (and read) the store. A file readable
    by its owner only keeps it where the operator can fetch it (``cat``) and the next start reuses it.
    """
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            fail(f"{path} holds the API token but other users can read it (mode {mode:o}): chmod 600 {path}")
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < _MIN_TOKEN:
            fail(f"the API token in {path} is {len(token)} characters long; use at least {_MIN_TOKEN} "
                 f"(delete the file and a new one is generated)")
        return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + mode at creation: the file is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


def serve(
    store: StoreOption = None,
    program: Annotated[Optional[Path], typer.Option(
        "--program", "-p", envvar="INSIGHTROI_PROGRAM",
        help="Program file whose stages' saved sections the dashboard shows (default: ./insightroi.toml if it exists).",
    )] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Refuse request bodies over this size (413).")] = 1_000_000,
    token_file: Annotated[Path, typer.Option(
        "--token-file", help="Where the API token is kept when INSIGHTROI_API_TOKEN is not set: read, or generated "
                             "(mode 0600) on first use. The token is never printed.",
    )] = DEFAULT_TOKEN_FILE,
    public_read: Annotated[bool, typer.Option(
        "--public-read", help="Anyone may read the API and dashboard (a demo); writes still need the token.",
    )] = False,
    allowed_host: Annotated[Optional[list[str]], typer.Option(
        "--allowed-host", help="Host header value to serve besides localhost, 127.0.0.1 and --host (repeatable; "
                               "'*.example.com' allowed). Other hosts get 400 (DNS rebinding).",
    )] = None,
    hold_store: Annotated[bool, typer.Option(
        "--hold-store", help="Keep the store's file while requests keep coming, without the 60 ms pause that "
                             "lets a waiting CLI command in (it then waits until traffic stops for 0.25 s).",
    )] = False,
    max_clock_skew: Annotated[float, typer.Option(
        "--max-clock-skew", help="Seconds an event may be dated past the server's clock (422 beyond).",
    )] = 300.0,
    deliver_every: Annotated[float, typer.Option(
        "--deliver-every", help="Seconds between background delivery passes when the program file has \\[\\[channels]] "
                                "(0: off; `insightroi deliver` does the same from a scheduler).", min=0,
    )] = 60.0,
    public_url: Annotated[Optional[str], typer.Option(
        "--public-url", envvar="INSIGHTROI_PUBLIC_URL",
        help="This server's address as owners reach it; delivered messages then carry signed links to it.",
    )] = None,
) -> None:
    """Serve the event API and the dashboard (bearer token for writes and reads)."""
    try:  # uvicorn and FastAPI are the optional 'web' extra: loaded only when serving
        import uvicorn

        from insightroi.server import create_app
    except ImportError as exc:
        fail(f"the web server needs the 'web' extra (pip install 'insightroi[web]'): {exc}")
    token = os.environ.get("INSIGHTROI_API_TOKEN")
    where = "INSIGHTROI_API_TOKEN"
    if token:
        if len(token) < _MIN_TOKEN:
            fail(f"INSIGHTROI_API_TOKEN is {len(token)} characters long; use at least {_MIN_TOKEN} "
                 "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    else:
        token = _token_from_file(token_file)
        where = str(token_file.resolve())
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {host}: put TLS in front of it, the token travels in headers")
    hosts = ["localhost", "127.0.0.1", *(allowed_host or [])]
    if host not in ("0.0.0.0", "::", "") and host not in hosts:
        hosts.append(host)
    elif host in ("0.0.0.0", "::") and not allowed_host:
        console.print("[yellow]warning:[/] listening on every interface: only Host localhost / 127.0.0.1 is "
                      "served; name the server's host names with --allowed-host")
    app = run_or_fail(create_app, store_url(store), program=program, token=token, max_body_bytes=max_body_bytes,
                      public_read=public_read, allowed_hosts=hosts, max_future=timedelta(seconds=max_clock_skew),
                      share_store=not hold_store, deliver_every_s=deliver_every or None, public_url=public_url,
                      freeze_gc=True)
    if app.state.program is None:
        console.print("[yellow]no program file[/] (--program or ./insightroi.toml): the dashboard shows the last "
                      "saved report bundle, not the stages' sections")
    prog = app.state.program
    if prog is not None and prog.channels and deliver_every:
        links = f"links to {public_url}" if public_url else "no links (--public-url)"
        console.print(f"delivering alerts to {len(prog.channels)} channel(s) every {deliver_every:g} s ({links})")
    console.print(f"API token: in {where} (send it as 'Authorization: Bearer <token>'; sign in with it on the dashboard)")
    reads = "anyone may read (--public-read)" if public_read else "reads and writes need the token"
    console.print(f"dashboard and API on http://{host}:{port}/  (spec: /openapi.json; {reads})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command()(serve)
