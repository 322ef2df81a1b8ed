"""The FastAPI app: the event API and read API (bearer token) and the server-rendered dashboard."""

# No `from __future__ import annotations`: FastAPI resolves the dependencies' annotations, and
# closures' local names (``bearer``) cannot be resolved from strings.

import gc
import hashlib
import hmac
from html import escape as _html_escape
import json
import os
import secrets
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import Depends, FastAPI, Header, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from insightroi.errors import ProgramError, StoreBusyError, StoreError
from insightroi.delivery import (
    NOT_USEFUL_REASONS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    LinkTokenError,
    link_key,
    outbox_counts,
    read_link_token,
    requeue_dead,
    verify_webhook,
)
from insightroi.delivery._send import resolve_env
from insightroi.ingest import redact_pii, redact_row
from insightroi.program import load_program
from insightroi.report import (
    CADENCE_UNITS,
    bars_svg,
    bundle_alpha,
    cadence_rows,
    decay_title,
    forest_rows,
    forest_svg,
    format_helpers,
    funnel_svg,
    kpi_verdict,
    kpi_verdict_title,
    primary_kpi_row,
    trend_svg,
)
from insightroi.server._data import FREEZE_GC_AFTER_UNITS, Backend, Conflict, fingerprint, id_from_key, jsonable
from insightroi.server._models import (
    CHAIN_API_TYPES,
    ApiError,
    BatchResult,
    ChainEventBatchIn,
    ChainEventIn,
    ErasureIn,
    FeedbackBatchIn,
    FeedbackIn,
    StoredEvent,
    _Id,
    _In,
)

__all__ = ["create_app", "MIN_TOKEN_LENGTH", "DEFAULT_ALLOWED_HOSTS"]

# 32 characters of a random token (token_urlsafe(24) gives 32) are ~190 bits; a short one falls
# to guessing even with throttling.
MIN_TOKEN_LENGTH = 32
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1")

_TEMPLATES = Path(__file__).parent / "templates"
_REPORT_CSS = Path(__file__).parent.parent / "report" / "templates" / "report.css"
_COOKIE = "insightroi_session"
_REASON_TEXT = {"false_alarm": "False alarm", "wrong_owner": "Not our team", "already_known": "Already known"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Pages need no script at all; inline styles only. Forms post to this origin only.
_PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
             "frame-ancestors 'none'; base-uri 'none'")
_KEY_RE = r"^[\x21-\x7e]{1,255}$"
_ERRORS = {401: {"model": ApiError}, 413: {"model": ApiError}, 422: {"model": ApiError}, 409: {"model": ApiError},
           429: {"model": ApiError}}
_READ_ERRORS = {401: {"model": ApiError}, 429: {"model": ApiError}}
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", pattern=_KEY_RE,
                                      description="Replays with the same key store once and get the same answer.")]
_FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
            b'fill="#0f172a"/><path d="M4 11l3-3 2 2 3-5" stroke="#22c55e" stroke-width="2" fill="none"/></svg>')


class _BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 before the app reads them.

    A declared Content-Length over the cap is refused at once; a chunked body is counted as it
    streams and refused as soon as it passes the cap (so memory stays bounded either way).
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                return await _send_json(send, 400, {"detail": "invalid Content-Length header"})
            if too_big:
                return await _send_json(send, 413, {"detail": f"request body over the {self.max_bytes:,}-byte limit"})
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return await _send_json(send, 413, {"detail": f"request body over the {self.max_bytes:,}-byte limit"})
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})


class _SecurityHeaders:
    """ASGI middleware: security headers on every response (CSP and no-store on HTML pages).

    Plain ASGI rather than ``@app.middleware("http")``: that wrapper runs each request through
    extra tasks and streams, a measurable share of a small event's cost.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                extra = dict(_SECURITY_HEADERS)
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    extra.update({"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-store"})
                headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()
                            if k.lower().encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


class _NulGuard:
    """ASGI middleware: a NUL byte in the path or query string is refused with 400.

    No route takes one and DuckDB, Jinja and the file system each treat it differently, so it is
    stopped before routing (``%00`` decodes to NUL in the path; the query is checked raw and decoded).
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            raw = scope.get("query_string", b"") + scope.get("raw_path", b"") or b""
            if "\x00" in scope.get("path", "") or b"\x00" in raw or b"%00" in raw.lower():
                return await _send_json(send, 400, {"detail": "NUL bytes are not allowed in the path or query"})
        return await self.app(scope, receive, send)


class _Throttle:
    """Failed authentications per client address in a sliding window (login and bearer tokens).

    After ``max_failures`` failures within ``window_s`` seconds the address is refused (429 with
    Retry-After) until the oldest failure leaves the window, whatever it sends: a right guess
    after the limit is refused too, or guessing would go on at full speed. At most ``max_clients``
    addresses are remembered (the least recently failing are forgotten first).
    """

    def __init__(self, max_failures: int, window_s: float, max_clients: int = 10_000) -> None:
        self.max_failures, self.window_s, self.max_clients = max_failures, window_s, max_clients
        self._fails: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not throttled."""
        now = time.monotonic()
        with self._lock:
            q = self._fails.get(client)
            if q is None:
                return None
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) < self.max_failures:
                return None
            return max(1, int(q[0] + self.window_s - now + 0.999))

    def fail(self, client: str) -> None:
        with self._lock:
            q = self._fails.pop(client, None) or deque()
            q.append(time.monotonic())
            while len(q) > self.max_failures:
                q.popleft()
            self._fails[client] = q
            while len(self._fails) > self.max_clients:
                self._fails.popitem(last=False)


class _Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after


class _LoginRequired(Exception):
    """A dashboard page read without a session or token: answered with the sign-in page (401)."""


def _same(a: str | None, b: str) -> bool:
    # compare_digest refuses non-ASCII str (TypeError); on bytes it compares any value safely.
    return a is not None and hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode())


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _field_name(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _load_program(program: str | Path | None):
    """The program file the dashboard reads the stages' sections with, or None.

    The argument, else ``$INSIGHTROI_PROGRAM``, else ``./insightroi.toml`` when it exists. A file
    that is named but missing or invalid raises: a dashboard silently showing another program's
    (or no) numbers is worse than one that does not start.
    """
    path = program or os.environ.get("INSIGHTROI_PROGRAM")
    if not path and Path("insightroi.toml").is_file():
        path = "insightroi.toml"
    return load_program(path) if path else None


def create_app(store_url: str | None = None, *, program: str | Path | None = None, token: str | None = None,
               max_body_bytes: int = 1_000_000, public_read: bool = False,
               allowed_hosts: list[str] | tuple[str, ...] | None = DEFAULT_ALLOWED_HOSTS,
               max_auth_failures: int = 10, auth_window_s: float = 60.0,
               max_future: timedelta = timedelta(minutes=5), session_hours: float = 12.0,
               share_store: bool = True, link_secret: str | None = None, deliver_every_s: float | None = None,
               public_url: str | None = None, freeze_gc: bool = False):
    """Build the insightroi web app: event API, read API and dashboard over one store.

    Parameters
    ----------
    store_url : str, optional
        The store the CLI uses (``duckdb:///insightroi.duckdb`` by default, or ``$INSIGHTROI_STORE``).
    program : str or Path, optional
        The program file (``insightroi.toml``); defaults to ``$INSIGHTROI_PROGRAM``, then
        ``./insightroi.toml`` when it exists. With it the dashboard and ``/api/bundle`` show the
        stages' saved sections (:func:`insightroi.bundle.assemble_bundle`); without it, the last
        saved ``bundle:latest``.
    token : str, optional
        Bearer token required for writes and (unless ``public_read``) reads, API and dashboard;
        defaults to ``$INSIGHTROI_API_TOKEN``. At least :data:`MIN_TOKEN_LENGTH` characters.
        Without one, every write is refused with 401 (and every read, unless ``public_read``).
    max_body_bytes : int
        Request bodies over this size are refused with 413.
    public_read : bool
        Let anyone read the API and the dashboard pages (a demo); writes still need the token.
    allowed_hosts : sequence of str or None
        Host header values served (Starlette's ``TrustedHostMiddleware``; ``*.example.com``
        patterns allowed); any other Host gets 400, which stops DNS rebinding. None: any host.
    max_auth_failures, auth_window_s : int, float
        A client address with this many wrong tokens (bearer or sign-in) within the window gets
        429 with Retry-After until the oldest failure leaves the window.
    max_future : timedelta
        Clock-skew bound: events dated further than this past the server's clock are refused (422).
    session_hours : float
        Lifetime of a dashboard session; signing out revokes it on the server at once.
    share_store : bool
        Under sustained traffic, release the store's file for 60 ms when a CLI command waits for
        it (the default); False keeps it while requests keep coming (the file is still released
        after 0.25 s without any), for a server that must not pause.
    link_secret : str, optional
        Verifies the signed links in delivered messages (``/l/{token}``); defaults to
        ``$INSIGHTROI_LINK_SECRET``, then the API token. The deliverer must sign with the same.
    deliver_every_s : float, optional
        Run the deliverer (:func:`insightroi.delivery.deliver`) in the background every this many
        seconds while serving, when the program file has ``[[channels]]``; None: never.
    public_url : str, optional
        The server's address as owners reach it, for the links the background deliverer signs
        (default ``$INSIGHTROI_PUBLIC_URL``; without it messages carry no links).
    freeze_gc : bool
        For a process that only serves this app (``insightroi serve``): at startup, and again
        once the first requests have imported what they need, move every object alive into
        Python's permanent GC generation (:func:`gc.freeze`). A full collection otherwise walks
        the ~200k objects of the imported libraries and stopped every request for ~150-230 ms a
        few times a minute: that pause was the event API's p99. Off by default: an app built
        inside another program (a test, a notebook) must not change that process's collector.

    Returns
    -------
    fastapi.FastAPI
        The app; serve it with uvicorn (``insightroi serve`` does).

    Raises
    ------
    ValueError
        The token is shorter than :data:`MIN_TOKEN_LENGTH` characters.
    """
    prog = _load_program(program)
    secret = token if token is not None else os.environ.get("INSIGHTROI_API_TOKEN")
    secret = secret or None
    if secret is not None and len(secret) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the API token is {len(secret)} characters long; use at least {MIN_TOKEN_LENGTH} "
                         "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    secret_b = secret.encode() if secret else None
    link_source = link_secret or os.environ.get("INSIGHTROI_LINK_SECRET") or secret
    links_key = link_key(link_source) if link_source else None
    backend_holder: dict[str, Backend] = {}
    throttle = _Throttle(max_auth_failures, auth_window_s)
    sessions: dict[str, float] = {}  # nonce -> expiry (monotonic); signing out deletes it
    sessions_lock = threading.Lock()

    backend_lock = threading.Lock()

    def backend() -> Backend:
        with backend_lock:  # made at startup, or by the first request if the store was busy then
            if "b" not in backend_holder:
                b = Backend(store_url or os.environ.get("INSIGHTROI_STORE") or "duckdb:///insightroi.duckdb",
                            max_future=max_future, share_on_request=share_store,
                            freeze_gc_after=FREEZE_GC_AFTER_UNITS if freeze_gc else None)
                b.program = prog  # Backend.bundle() assembles the sections with it
                backend_holder["b"] = b
        return backend_holder["b"]

    async def backend_async() -> Backend:
        got = backend_holder.get("b")
        return got if got is not None else await _run(backend)

    @asynccontextmanager
    async def lifespan(app):
        try:
            backend()
        except StoreBusyError as exc:
            # Serve anyway (a CLI job may be writing the store): requests answer 503 until it is free.
            print(f"warning: {exc}", file=sys.stderr)
        stop = threading.Event()
        worker = None
        if deliver_every_s and prog is not None and prog.channels:
            worker = threading.Thread(target=_deliver_loop, args=(backend, prog, stop, deliver_every_s,
                                                                  public_url or os.environ.get("INSIGHTROI_PUBLIC_URL"),
                                                                  links_key, app.state),
                                      name="insightroi-deliver", daemon=True)
            worker.start()
        if freeze_gc:
            gc.collect()  # before any request: what is garbage now is not frozen with the rest
            gc.freeze()
        yield
        stop.set()
        if worker is not None:
            worker.join(timeout=30)
        if "b" in backend_holder:
            backend_holder.pop("b").close()

    app = FastAPI(
        title="insightroi", version="1",
        description="Event API (feedback and decision-chain events) and read API (insights, alerts, results, "
                    "chain traces) of an insightroi store; the bearer token is required for both "
                    "(reads may be public on a demo server).",
        docs_url=None, redoc_url=None, lifespan=lifespan,  # the Swagger page loads from a CDN: off
    )
    # The last added runs first: headers on every answer, then the Host check (a foreign Host, as
    # in DNS rebinding, is refused before anything else runs), NUL bytes, the body cap.
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(_NulGuard)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)
    app.add_middleware(_SecurityHeaders)
    bearer = HTTPBearer(auto_error=False, description="The server's API token (INSIGHTROI_API_TOKEN).")

    def token_ok(candidate: str | None) -> bool:
        if secret_b is None or not candidate:
            return False
        return hmac.compare_digest(candidate.encode("utf-8", "surrogatepass"), secret_b)

    def check_token(request: Request, candidate: str | None) -> bool:
        """Whether ``candidate`` is the token; a wrong one counts against the client (429 past the limit)."""
        who = _client(request)
        wait = throttle.retry_after(who)
        if wait is not None:
            raise _Throttled(wait)
        if token_ok(candidate):
            return True
        if candidate:
            throttle.fail(who)
        return False

    async def require_token(request: Request,
                            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if secret_b is None:
            raise HTTPException(401, "writes are disabled: the server has no API token (set INSIGHTROI_API_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not check_token(request, creds.credentials if creds else None):
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    def read_allowed(request: Request, creds: HTTPAuthorizationCredentials | None) -> bool:
        if public_read or session_nonce(request) is not None:
            return True
        return creds is not None and check_token(request, creds.credentials)

    async def require_read(request: Request,
                           creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not read_allowed(request, creds):
            raise HTTPException(401, "reading needs the API token (Authorization: Bearer ...) or a dashboard session",
                                headers={"WWW-Authenticate": "Bearer"})

    async def require_page(request: Request) -> None:
        creds = await bearer(request)
        if not read_allowed(request, creds):
            raise _LoginRequired()

    def authed(request: Request) -> bool:
        try:
            return public_read or session_nonce(request) is not None or token_ok(_bearer_value(request))
        except Exception:
            return False

    # ---- errors -------------------------------------------------------------------------------
    @app.exception_handler(StoreBusyError)
    async def _busy(request: Request, exc: StoreBusyError):
        # Another process (a CLI command) holds the DuckDB file: temporary, so 503 and a retry hint.
        retry = {"Retry-After": "5"}
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, 503, headers=retry)
        page = _page(request, "error.html.j2", status_code=503, title="Store busy", message=str(exc), bundle={})
        page.headers.update(retry)
        return page

    @app.exception_handler(_Throttled)
    async def _throttled(request: Request, exc: _Throttled):
        retry = {"Retry-After": str(exc.retry_after)}
        msg = f"too many failed sign-ins or wrong tokens from this address; retry in {exc.retry_after} s"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": msg}, 429, headers=retry)
        page = _page(request, "error.html.j2", status_code=429, title="Too many attempts", message=msg, bundle={})
        page.headers.update(retry)
        return page

    @app.exception_handler(_LoginRequired)
    async def _login_required(request: Request, exc: _LoginRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _page(request, "login.html.j2", status_code=401, next=_safe_next(target), error=None,
                     title="Sign in", bundle={})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = []
        for e in exc.errors():
            errors.append({"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", "")).removeprefix("Value error, "),
                           "type": e.get("type")})
        fields = sorted({e["field"] for e in errors})
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
        return JSONResponse({"detail": f"invalid request: {summary}", "fields": fields, "errors": errors}, 422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/") or exc.status_code < 400:
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        return _page(request, "error.html.j2", status_code=exc.status_code, title=f"Error {exc.status_code}",
                     message=str(exc.detail))


    # ---- event API ----------------------------------------------------------------------------
    def _event_id(kind: str, model, key: str | None) -> str:
        if model.id is not None:
            return model.id
        if key is not None:
            return id_from_key(kind, key)
        return f"{'fb' if kind == 'feedback' else 'ce'}-{uuid.uuid4().hex}"

    async def _store_event(kind: str, table: str, model, row: dict[str, Any], key: str | None, response: Response):
        body = model.model_dump(mode="json")
        by_key = key is not None and model.id is None
        row["id"] = _event_id(kind, model, key)
        try:
            b = await backend_async()
            stored, replayed = await b.write_async(table, row, fingerprint(kind, body), by_key=by_key)
        except Conflict as exc:
            raise HTTPException(exc.status, str(exc)) from None
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        if table == "chain_events":
            response.headers["Location"] = f"/api/v1/trace/{quote(row['id'])}"
        return StoredEvent(id=row["id"], table=table, event=stored)

    async def _store_batch(kind: str, table: str, models: list, rows: list[dict[str, Any]], key: str | None) -> JSONResponse:
        items = []
        for i, (model, row) in enumerate(zip(models, rows)):
            # With an Idempotency-Key each event's id derives from the key and its position, so a
            # retried batch stores nothing twice; an event's own id wins, as in the single API.
            row["id"] = _event_id(kind, model, None if key is None else f"{key}#{i}")
            items.append((row, fingerprint(kind, model.model_dump(mode="json")), key is not None and model.id is None))
        b = await backend_async()
        outcomes = await b.write_many_async(table, items)
        results = []
        for i, ((row, _, _), got) in enumerate(zip(items, outcomes)):
            if isinstance(got, Conflict):
                results.append({"index": i, "status": got.status, "id": row["id"], "detail": str(got)})
            else:
                results.append({"index": i, "status": 200 if got[1] else 201, "id": row["id"], "detail": None})
        rejected = sum(r["status"] >= 400 for r in results)
        body = {"stored": sum(r["status"] == 201 for r in results), "replayed": sum(r["status"] == 200 for r in results),
                "rejected": rejected, "results": results}
        # Built as JSON directly (the BatchResult schema documents it): validating and serialising
        # a model per event cost more than storing the event. 207: the request was fine but some
        # events were refused (each result says why); a client that checks only for 2xx must read
        # `rejected`.
        return JSONResponse(body, status_code=207 if rejected else 201)

    def _chain_row(event: ChainEventIn) -> dict[str, Any]:
        # Every string in the payload redacted, as ingestion redacts chain_events.payload.
        return _pseudonymize_ids(event.row(_now(), _redact_obj(event.payload) if event.payload else None))

    def _feedback_row(item: FeedbackIn) -> dict[str, Any]:
        row = item.row()
        _not_future(row["event_time"], max_future)
        # The text redacted and an e-mail or phone used as customer_id pseudonymised, as ingestion does.
        return redact_row(row, "feedback")

    @app.post("/api/v1/feedback", status_code=201, response_model=StoredEvent, tags=["events"],
              dependencies=[Depends(require_token)], responses=_ERRORS)
    async def post_feedback(item: FeedbackIn, response: Response, idempotency_key: IdemKey = None) -> StoredEvent:
        """Store one feedback item; personal data in its text is redacted first (ingestion's redactor)."""
        return await _store_event("feedback", "feedback", item, _feedback_row(item), idempotency_key, response)

    @app.post("/api/v1/feedback/batch", status_code=201, response_model=BatchResult, tags=["events"],
              dependencies=[Depends(require_token)], responses={**_ERRORS, 207: {"model": BatchResult}})
    async def post_feedback_batch(batch: FeedbackBatchIn, idempotency_key: IdemKey = None) -> JSONResponse:
        """Store up to 500 feedback items in one request and one commit.

        An invalid item refuses the request (422 naming ``items[i].field``); a stored id reused
        with a different body refuses that item only (207, per-item status). With an
        Idempotency-Key, item ``i`` gets the id of key ``KEY#i``: a retried batch stores nothing twice.
        """
        rows = [_feedback_row(item) for item in batch.items]
        return await _store_batch("feedback", "feedback", batch.items, rows, idempotency_key)

    @app.post("/api/v1/chain-events", status_code=201, response_model=StoredEvent, tags=["events"],
              dependencies=[Depends(require_token)], responses=_ERRORS)
    async def post_chain_event(event: ChainEventIn, response: Response, idempotency_key: IdemKey = None) -> StoredEvent:
        """Record a step of an alert's decision chain (delivered, acknowledged, action taken, fix deployed, outcome).

        The event is checked against the alert's recorded events: a follow-up of an alert that was
        never delivered (nor raised by the insight stage), a step dated before an earlier one (a
        fix before its delivery) and a date past the server's clock plus the skew bound are
        refused with 422 naming both events.
        """
        return await _store_event("chain_event", "chain_events", event, _chain_row(event), idempotency_key, response)

    @app.post("/api/v1/chain-events/batch", status_code=201, response_model=BatchResult, tags=["events"],
              dependencies=[Depends(require_token)], responses={**_ERRORS, 207: {"model": BatchResult}})
    async def post_chain_event_batch(batch: ChainEventBatchIn, idempotency_key: IdemKey = None) -> JSONResponse:
        """Record up to 500 chain events in one request and one commit, checked in order.

        Each event is checked as a single one is, against the store and the events before it in
        the batch (an acknowledgement may follow its alert's delivery in the same batch); a refused
        event (422 naming both events, or 409 for a reused id) does not refuse the others: the
        answer is 207 with a status per event. A malformed event refuses the request (422 naming
        ``events[i].field``). With an Idempotency-Key, event ``i`` gets the id of key ``KEY#i``.
        """
        rows = [_chain_row(event) for event in batch.events]
        return await _store_batch("chain_event", "chain_events", batch.events, rows, idempotency_key)

    @app.post("/api/v1/erasures", status_code=201, tags=["privacy"], dependencies=[Depends(require_token)],
              responses=_ERRORS)
    async def post_erasure(request_body: ErasureIn) -> dict[str, Any]:
        """Erase a customer from every table (as ``insightroi erase --customer``); counts, never the data.

        The answer and the stored record name the customer only by a keyed hash; ``predating``
        lists the saved results computed before the erasure (re-run the stages to recompute them).
        """
        try:
            return await _run(backend().erase, request_body.customer, request_body.reason)
        except StoreBusyError:
            raise
        except StoreError as exc:  # a store that cannot delete rows in place (Spark, Databricks)
            raise HTTPException(501, str(exc)) from None

    # ---- read API -----------------------------------------------------------------------------
    @app.get("/api/v1/health", tags=["read"])
    def health() -> dict[str, Any]:
        """Liveness and the store's schema version."""
        return {"status": "ok", "schema_version": backend().schema_version(), "writes_enabled": secret_b is not None}

    @app.get("/api/v1/insights", tags=["read"], dependencies=[Depends(require_read)], responses=_READ_ERRORS)
    def get_insights(
        task: Annotated[str | None, Query(max_length=64)] = None,
        label: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Model outputs (newest first), optionally for one task and label."""
        return backend().insights(task=task, label=label, limit=limit, offset=offset)

    @app.get("/api/v1/alerts", tags=["read"], dependencies=[Depends(require_read)], responses=_READ_ERRORS)
    def get_alerts(
        team: Annotated[str | None, Query(max_length=128)] = None,
        status: Literal["open", "new", "delivered", "acknowledged", "acted", "fixed"] | None = None,
    ) -> dict[str, Any]:
        """Alerts with their current stage and evidence (observed vs expected, p-value)."""
        return {"items": backend().alerts(team=team, status=status)}

    @app.get("/api/v1/deliveries", tags=["read"], dependencies=[Depends(require_read)], responses=_READ_ERRORS)
    def get_deliveries(
        status: Literal["pending", "sending", "delivered", "dead"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The delivery outbox: rows per status, the latest deliveries (attempts, last error) and the dead letters.

        Each dead letter carries ``delivery_status``, its delivery's state now (``pending`` once requeued).
        """
        return _deliveries(status, limit)

    def _deliveries(status: str | None, limit: int) -> dict[str, Any]:
        # One reading for the API and the dashboard page, so the two cannot disagree.
        st = backend().store
        if st.kind != "duckdb":  # the outbox lives on the embedded store only
            return {"totals": {}, "items": [], "dead_letters": []}
        # The server's store lease serialises this with the store thread, as for the deliverer.
        with st.attached():
            totals = outbox_counts(st)
            items = st.sql(
                "SELECT id, alert_id, channel, kind, status, attempts, next_attempt_at, last_error, created_at, "
                "delivered_at FROM deliveries WHERE ?::VARCHAR IS NULL OR status = ? "
                "ORDER BY coalesce(delivered_at, next_attempt_at) DESC, id LIMIT ?", [status, status, limit]).to_pylist()
            dead = st.sql("SELECT l.id, l.delivery_id, l.alert_id, l.channel, l.kind, l.attempts, l.last_error, "
                          "l.dead_at, d.status AS delivery_status FROM dead_letters l "
                          "LEFT JOIN deliveries d ON d.id = l.delivery_id "
                          "ORDER BY l.dead_at DESC, l.id LIMIT ?", [limit]).to_pylist()
        return jsonable({"totals": totals, "items": items, "dead_letters": dead})

    @app.get("/api/v1/results", tags=["read"], dependencies=[Depends(require_read)], responses=_READ_ERRORS)
    def get_results(kind: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
        """Saved analysis results (id, kind, name, created_at)."""
        return {"items": backend().results(kind)}

    @app.get("/api/v1/results/{result_id}", tags=["read"], dependencies=[Depends(require_read)],
             responses={404: {"model": ApiError}, **_READ_ERRORS})
    def get_result(result_id: Annotated[str, PathParam(max_length=256)]) -> dict[str, Any]:
        """One saved result's payload (``bundle:latest`` is the report bundle)."""
        got = backend().result(result_id)
        if got is None:
            raise HTTPException(404, f"no result {result_id!r}")
        return got

    @app.get("/api/bundle", tags=["read"], dependencies=[Depends(require_read)],
             responses={404: {"model": ApiError}, **_READ_ERRORS})
    def get_bundle() -> dict[str, Any]:
        """The report bundle (``insightroi.bundle.Bundle``, schema 2) the dashboard shows.

        The same JSON as ``insightroi report --json`` and report.json for this store and program.
        """
        got = backend().bundle()
        if got is None:
            raise HTTPException(404, "no results in this store yet: run the stages (insightroi run), "
                                     "or start the server with --program to read their saved sections")
        return got

    @app.get("/api/v1/trace/{item_id}", tags=["read"], dependencies=[Depends(require_read)],
             responses={404: {"model": ApiError}, **_READ_ERRORS})
    def get_trace(item_id: Annotated[str, PathParam(max_length=256)]) -> dict[str, Any]:
        """The decision chain around an alert, insight or event id, in time order."""
        got = backend().trace(item_id)
        if got is None:
            raise HTTPException(404, f"nothing in the decision chain has id {item_id!r}")
        return got

    # ---- dashboard ----------------------------------------------------------------------------
    # The report's macros (segment tables) are the dashboard's too: one table, the same figures.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(_TEMPLATES), str(_REPORT_CSS.parent)]), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined)
    css = _REPORT_CSS.read_text(encoding="utf-8") + (_TEMPLATES / "dashboard.css").read_text(encoding="utf-8")

    def session_nonce(request: Request) -> str | None:
        """The signed-in session's nonce, or None (no cookie, a forged one, expired or signed out)."""
        raw = request.cookies.get(_COOKIE)
        if not raw or secret_b is None or "." not in raw:
            return None
        nonce, mac = raw.split(".", 1)
        good = hmac.new(secret_b, f"session:{nonce}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        if not _same(mac, good):
            return None
        with sessions_lock:  # revoked on sign-out: a copied cookie stops working with it
            expiry = sessions.get(nonce)
            if expiry is None or expiry < time.monotonic():
                sessions.pop(nonce, None)
                return None
        return nonce

    def csrf_for(nonce: str) -> str:
        assert secret_b is not None
        return hmac.new(secret_b, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()[:40]

    def _page(request: Request, template: str, status_code: int = 200, **ctx) -> HTMLResponse:
        b = ctx.pop("bundle", None)
        if b is None and not authed(request):
            b = {}  # a page for someone not signed in shows nothing of the store (not even its name)
        if b is None:
            try:
                b = backend().bundle()
            except Exception:  # an error page must render even when the store is unreadable
                b = None
        program = (b or {}).get("program") or {}
        nonce = session_nonce(request)
        html = env.get_template(template).render(
            css=css, request_path=request.url.path,
            request_fullpath=request.url.path + (f"?{request.url.query}" if request.url.query else ""), program=program, bundle=b or {}, signed_in=nonce is not None,
            csrf=csrf_for(nonce) if nonce else "", writes_enabled=secret_b is not None,
            **format_helpers(program.get("currency", "USD")), **ctx)
        return HTMLResponse(html, status_code=status_code)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(_FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    def _verdicts(b: dict | None) -> dict[str, Any]:
        # Badges rest on the saved Holm-adjusted result at the experiment's alpha, as in the report.
        alpha = bundle_alpha(b or {})
        return {"alpha": alpha, "verdict": lambda k: kpi_verdict(k, alpha),
                "verdict_title": lambda k: kpi_verdict_title(k, alpha, format_helpers()["pval"])}

    @app.get("/", include_in_schema=False, dependencies=[Depends(require_page)])
    def overview(request: Request) -> HTMLResponse:
        b = backend().bundle()
        v = _verdicts(b)
        primary_name, primary = primary_kpi_row(b or {})
        charts = {}
        if b and b.get("kpis"):
            charts["forest"] = forest_svg(forest_rows(b["kpis"], bool(b.get("is_demo")), alpha=v["alpha"]),
                                                  fmt=lambda v: format_helpers()["pct"](v, nd=0),
                                                  title="Relative effect per KPI with 95% interval")
        funnel = ((b or {}).get("chain") or {}).get("funnel")
        if funnel:
            charts["funnel"] = funnel_svg([(s, funnel.get(s)) for s in
                                                   ("insights", "alerts", "acknowledged", "acted", "fixed")])
        counts = {"feedback": backend().count("feedback"), "chain_events": backend().count("chain_events"),
                  "insights": backend().count("insights")}
        return _page(request, "overview.html.j2", bundle=b, charts=charts, counts=counts, primary=primary,
                     primary_name=primary_name, title="Overview", **v)

    @app.get("/themes", include_in_schema=False, dependencies=[Depends(require_page)])
    def themes(request: Request) -> HTMLResponse:
        b = backend().bundle() or {}
        topics = sorted((b.get("insights") or {}).get("topics") or [], key=lambda t: -(t.get("count") or 0))
        chart = bars_svg([(t["topic"].replace("_", " "), t.get("count"), "bar") for t in topics],
                                 fmt=lambda v: f"{v:,.0f}", title="Feedback items per theme") if topics else ""
        evidence = {t["topic"]: backend().evidence(t["topic"]) for t in topics}
        alerts = backend().alerts()
        return _page(request, "themes.html.j2", bundle=b, topics=topics, chart=chart, evidence=evidence,
                     alerts=alerts, alert_evidence=backend().alert_evidence([a["alert_id"] for a in alerts]),
                     title="Themes and alerts")

    @app.get("/experiment", include_in_schema=False, dependencies=[Depends(require_page)])
    def experiment(request: Request) -> HTMLResponse:
        b = backend().bundle()
        return _page(request, "experiment.html.j2", bundle=b, title="Experiment and checks", **_verdicts(b))

    @app.get("/monitoring", include_in_schema=False, dependencies=[Depends(require_page)])
    def monitoring(request: Request) -> HTMLResponse:
        b = backend().bundle() or {}
        decay = (b.get("monitor") or {}).get("decay")
        chart = trend_svg(decay, fmt=format_helpers()["num"], title=decay_title(b.get("monitor") or {})) if decay else ""
        # The series `insightroi report --cadence` saved: the report's numbers, not recomputed here.
        cadences = []
        for unit in CADENCE_UNITS:
            series = cadence_rows({"cadence": backend().result(f"cadence:{unit}")})
            if series is not None:
                points = [{"period": p.get("short"), "estimate": p.get("estimate"), "ci_low": p.get("ci_low"),
                           "ci_high": p.get("ci_high")} for p in series["periods"]]
                series["chart"] = trend_svg(points, fmt=format_helpers()["num"], max_labels=14,
                                            title=f"Effect to date by {unit}")
                cadences.append(series)
        return _page(request, "monitoring.html.j2", bundle=b, chart=chart, cadences=cadences, title="Monitoring")

    @app.get("/inbox", include_in_schema=False, dependencies=[Depends(require_page)])
    def inbox(request: Request, team: str | None = None, show: str = "open", done: str | None = None) -> HTMLResponse:
        alerts = backend().alerts()
        teams = sorted({a["team"] for a in alerts if a.get("team")})
        rows = [a for a in alerts if (not team or a["team"] == team)
                and (show == "all" or (a["status"] != "fixed" and not a["ignored"]))]
        return _page(request, "inbox.html.j2", alerts=rows, teams=teams, team=team or "", show=show, done=done,
                     action_types=[t for t in CHAIN_API_TYPES if t not in ("alert_delivered", "acknowledged")],
                     form_id=uuid.uuid4().hex, title="Owner's inbox")

    @app.get("/deliveries", include_in_schema=False, dependencies=[Depends(require_page)])
    def deliveries_page(request: Request, status: str | None = None, requeued: str | None = None) -> HTMLResponse:
        if status not in (None, "", "pending", "sending", "delivered", "dead"):
            raise HTTPException(422, "status must be one of pending, sending, delivered, dead")
        got = _deliveries(status or None, 100)
        return _page(request, "deliveries.html.j2", outbox=got, status=status or "", requeued=requeued,
                     is_duckdb=backend().store.kind == "duckdb", title="Deliveries")

    def _form_allowed(request: Request, form: dict[str, str], what: str) -> None:
        """A dashboard POST: the session's CSRF token, or the API token typed in the form."""
        nonce = session_nonce(request)
        if nonce is not None:
            if not _same(form.get("csrf", ""), csrf_for(nonce)):
                raise HTTPException(403, "the form expired or did not come from this dashboard; reload the page")
        elif not check_token(request, form.get("token")):
            raise HTTPException(401, f"sign in (or type the API token in the form) to {what}")

    @app.post("/deliveries/{delivery_id}/requeue", include_in_schema=False)
    async def deliveries_requeue(request: Request, delivery_id: Annotated[str, PathParam(max_length=256)]) -> Response:
        """Put one dead delivery back in the queue (``insightroi deliver --requeue-dead`` for that row)."""
        form = await _form(request)
        _form_allowed(request, form, "requeue deliveries")
        st = backend().store
        if st.kind != "duckdb":
            raise HTTPException(404, "this store keeps no delivery outbox (it lives on the embedded DuckDB store)")

        def requeue() -> int:
            with st.attached():
                return requeue_dead(st, _now(), delivery_id=delivery_id)

        if not await _run(requeue):
            raise HTTPException(404, f"no dead delivery {delivery_id!r} (already requeued, or never dead)")
        return RedirectResponse(f"/deliveries?{urlencode({'requeued': delivery_id})}", status_code=303)

    @app.get("/review", include_in_schema=False, dependencies=[Depends(require_page)])
    def review_page(request: Request, n: Annotated[int, Query(ge=1, le=100)] = 20,
                    seed: Annotated[int, Query(ge=0, le=2**31)] = 0, recorded: int | None = None,
                    reviewer: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
        # The queue `insightroi review` exports (same sampling, same seed), labelled in the page.
        got = backend().review(n, seed) if prog is not None else None
        return _page(request, "review.html.j2", review=got, n=n, seed=seed, recorded=recorded,
                     reviewer=reviewer or "", title="Review queue")

    @app.post("/review", include_in_schema=False)
    async def review_post(request: Request) -> Response:
        """Record the review page's labels (``insightroi review --labels`` for a filled file)."""
        from insightroi.insights import ReviewLabelsError  # the model layer loads only when a page needs it

        form = await _form(request)
        _form_allowed(request, form, "record review labels")
        if prog is None:
            raise HTTPException(404, "the review queue needs the program file's taxonomy (serve --program FILE)")
        reviewer = " ".join(form.get("reviewer", "").split())
        if not reviewer or len(reviewer) > 64:
            raise HTTPException(422, "name the reviewer (1 to 64 characters) so the labels can be told apart")
        items = []
        for i in range(100):
            if f"id.{i}" not in form:
                break
            items.append((f"item {i + 1}", {"feedback_id": form[f"id.{i}"], "label": form.get(f"label.{i}", ""),
                                            "model_version": form.get(f"mv.{i}", ""),
                                            "model_label": form.get(f"ml.{i}", "")}))
        try:
            got = await _run(backend().record_reviews, items, reviewer)
        except ReviewLabelsError as exc:
            raise HTTPException(422, str(exc)) from None
        return RedirectResponse(f"/review?{urlencode({'recorded': got['recorded'], 'reviewer': reviewer})}",
                                status_code=303)

    @app.post("/inbox/{alert_id}", include_in_schema=False)
    async def inbox_post(request: Request, alert_id: str) -> Response:
        form = await _form(request)
        _form_allowed(request, form, "record actions")
        event_type = form.get("event_type", "")
        if event_type not in CHAIN_API_TYPES:
            raise HTTPException(422, f"event_type must be one of {', '.join(CHAIN_API_TYPES)}")
        alert = await _run(backend().alert, alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert {alert_id!r}")
        note = (form.get("note") or "").strip()[:2000]
        actor = (form.get("actor") or "").strip()[:200] or "dashboard"
        payload: dict[str, Any] = {"via": "dashboard"}
        if note:
            payload["note"] = redact_pii(note)
        try:
            event = ChainEventIn(event_type=event_type, alert_id=alert_id, actor=actor, team=alert.get("team"),
                                 topic=alert.get("topic"), sku_family=alert.get("sku_family"), payload=payload)
        except ValueError as exc:  # pydantic's ValidationError: a NUL or an over-long field in the form
            raise HTTPException(422, f"invalid form: {exc}") from None
        row = _pseudonymize_ids(event.row(_now()))
        # A double-submitted form carries the same form_id, so it stores once.
        form_id = form.get("form_id") or uuid.uuid4().hex
        row["id"] = id_from_key("chain_event", f"web:{form_id}:{alert_id}:{event_type}")
        try:
            await _run(backend().write, "chain_events", row, fingerprint("web", {"f": form_id, "t": event_type}),
                       by_key=True)
        except Conflict as exc:
            raise HTTPException(exc.status, str(exc)) from None
        query = urlencode({k: v for k, v in {"team": form.get("team", ""), "done": f"{alert_id}:{event_type}"}.items() if v})
        return RedirectResponse(f"/inbox?{query}#alert-{quote(alert_id)}", status_code=303)

    async def _link(request: Request, token: str):
        """The verified claim of a link token and its alert (403 forged, 410 expired, 404 no alert)."""
        if links_key is None:
            raise HTTPException(404, "this server verifies no links (set INSIGHTROI_LINK_SECRET or an API token)")
        who = _client(request)
        wait = throttle.retry_after(who)
        if wait is not None:
            raise _Throttled(wait)
        try:
            claim = read_link_token(links_key, token, now=_now())
        except LinkTokenError as exc:
            if "expired" in str(exc):
                raise HTTPException(410, f"{exc}; use the dashboard's inbox instead") from None
            throttle.fail(who)  # a forged token counts like a wrong API token
            raise HTTPException(403, str(exc)) from None
        alert = await _run(backend().alert, claim.alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert {claim.alert_id!r}")
        return claim, alert

    @app.get("/l/{token}", include_in_schema=False)
    async def open_link(request: Request, token: Annotated[str, PathParam(max_length=2048)]) -> Response:
        """A signed link from a delivered message: a one-button page that records it when pressed.

        Opening the link records nothing: mail security scanners (Safe Links and the like) fetch
        every URL of an e-mail, which would acknowledge every alert at delivery and zero the time
        to acknowledge. The button posts the same token back (:func:`follow_link`).
        """
        claim, alert = await _link(request, token)
        e = _html_escape
        if claim.event_type == "ignored" and claim.reason is None:
            # A digest's one "not useful" link: the owner picks the reason here, one button each.
            label = "Mark not useful"
            buttons = "".join(f'<button type="submit" name="reason" value="{e(r)}">{e(_REASON_TEXT[r])}</button> '
                              for r in NOT_USEFUL_REASONS)
        else:
            label = {"acknowledged": "Acknowledge", "action_taken": "Record: taking action",
                     "ignored": f"Mark not useful ({(claim.reason or '').replace('_', ' ')})"}[claim.event_type]
            buttons = f'<button type="submit">{e(label)}</button>'
        what = ", ".join(x for x in (alert.get("topic"), alert.get("sku_family"), alert.get("team")) if x)
        page = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>' + e(label) + '</title></head>'
                '<body style="font-family:system-ui,sans-serif;max-width:40em;margin:3em auto">'
                f'<h1>{e(label)}</h1><p>Alert <b>{e(claim.alert_id)}</b> ({e(what)}), '
                f'sent to {e(claim.channel)}.</p>'
                f'<form method="post" action="/l/{e(token)}">{buttons}</form>'
                '<p style="color:#555">Nothing is recorded until a button is pressed.</p></body></html>')
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.post("/l/{token}", include_in_schema=False)
    async def follow_link(request: Request, token: Annotated[str, PathParam(max_length=2048)]) -> Response:
        """Record a signed link's chain event, then show the alert's trace.

        The token (not a session) authorises exactly one event type on one alert until it
        expires; the event is checked like one posted to the event API, and pressing the same
        link again stores nothing new.
        """
        claim, alert = await _link(request, token)
        payload: dict[str, Any] = {"via": "link", "channel": claim.channel}
        reason = claim.reason
        if claim.event_type == "ignored" and reason is None:
            reason = (await _form(request)).get("reason", "")
            if reason not in NOT_USEFUL_REASONS:
                raise HTTPException(422, f"reason: pick one of {', '.join(NOT_USEFUL_REASONS)}; got {reason!r}")
        if reason:
            payload["reason"] = reason
        try:
            event = ChainEventIn(event_type=claim.event_type, alert_id=claim.alert_id, actor=f"link:{claim.channel}",
                                 team=alert.get("team"), topic=alert.get("topic"), sku_family=alert.get("sku_family"),
                                 payload=payload)
        except ValueError as exc:  # pydantic's ValidationError: the alert's stored fields break the API's rules
            raise HTTPException(422, f"the alert's event would be invalid: {exc}") from None
        row = _pseudonymize_ids(event.row(_now()))
        mac = token.rpartition(".")[2]
        row["id"] = id_from_key("chain_event", f"link:{mac}")
        try:
            await _run(backend().write, "chain_events", row, fingerprint("link", {"mac": mac}), by_key=True)
        except Conflict as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return RedirectResponse(f"/trace/{quote(claim.alert_id, safe='')}?recorded={claim.event_type}", status_code=303)

    @app.post("/api/v1/callbacks/{channel}", include_in_schema=False)
    async def ticket_callback(request: Request, channel: Annotated[str, PathParam(max_length=64)]) -> JSONResponse:
        """A ticket system reports on an alert it received: ticket created -> ``action_taken``, resolved -> ``fix_deployed``.

        Signed like the deliveries it answers (HMAC-SHA256 over timestamp and body with the
        channel's secret); it may only name alerts delivered over that channel. The same
        ticket's same event stores once (201, then 200 on a retry).
        """
        ch = next((c for c in (prog.channels if prog is not None else []) if c.name == channel), None)
        if ch is None or ch.kind != "webhook":
            raise HTTPException(404, f"no webhook channel {channel!r} in the program file")
        who = _client(request)
        wait = throttle.retry_after(who)
        if wait is not None:
            raise _Throttled(wait)
        body = await request.body()
        try:
            key = resolve_env(ch.secret, f"channel {ch.name!r} secret").encode()
        except ProgramError as exc:
            raise HTTPException(503, str(exc)) from None
        if not verify_webhook(key, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), body,
                              now=time.time()):
            throttle.fail(who)
            raise HTTPException(401, f"missing, stale or wrong {SIGNATURE_HEADER} (HMAC-SHA256 of "
                                     f"'<{TIMESTAMP_HEADER}>.' + body with the channel's secret)")
        try:
            cb = TicketCallbackIn.model_validate_json(body)
        except ValueError as exc:
            raise HTTPException(422, f"invalid callback: {exc}") from None
        st = backend().store

        def delivered_here() -> bool:
            with st.attached():
                return bool(st.sql("SELECT count(*) AS n FROM deliveries WHERE alert_id = ? AND channel = ? "
                                   "AND status = 'delivered'", [cb.alert_id, ch.name]).to_pylist()[0]["n"])

        if st.kind != "duckdb" or not await _run(delivered_here):
            raise HTTPException(404, f"alert {cb.alert_id!r} was not delivered over channel {ch.name!r}")
        alert = await _run(backend().alert, cb.alert_id) or {}
        event_type = {"ticket_created": "action_taken", "ticket_resolved": "fix_deployed"}[cb.event]
        payload = {"via": "ticket", "channel": ch.name, "ticket_id": cb.ticket_id}
        if cb.ticket_url:
            payload["ticket_url"] = cb.ticket_url
        try:
            event = ChainEventIn(event_type=event_type, alert_id=cb.alert_id, event_time=cb.occurred_at,
                                 actor=f"ticket:{ch.name}", team=alert.get("team"), topic=alert.get("topic"),
                                 sku_family=alert.get("sku_family"), payload=payload)
        except ValueError as exc:
            raise HTTPException(422, f"invalid callback: {exc}") from None
        row = _pseudonymize_ids(event.row(_now(), _redact_obj(payload)))
        row["id"] = id_from_key("chain_event", f"ticket:{ch.name}:{cb.ticket_id}:{cb.event}")
        try:
            _, replayed = await backend().write_async(
                "chain_events", row, fingerprint("ticket", {"c": ch.name, "t": cb.ticket_id, "e": cb.event}),
                by_key=True)
        except Conflict as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return JSONResponse({"id": row["id"], "event_type": event_type, "replayed": replayed},
                            status_code=200 if replayed else 201)

    @app.get("/trace/{item_id}", include_in_schema=False, dependencies=[Depends(require_page)])
    def trace_page(request: Request, item_id: str) -> HTMLResponse:
        got = backend().trace(item_id)
        if got is None:
            raise HTTPException(404, f"nothing in the decision chain has id {item_id!r}")
        return _page(request, "trace.html.j2", trace=got, item_id=item_id, title=f"Trace {item_id}")

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/inbox") -> HTMLResponse:
        return _page(request, "login.html.j2", next=_safe_next(next), error=None, title="Sign in")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await _form(request)
        nxt = _safe_next(form.get("next", "/inbox"))
        if not check_token(request, form.get("token")):
            return _page(request, "login.html.j2", status_code=401, next=nxt, title="Sign in",
                         error="That token is not valid." if secret_b else "This server has no API token configured.")
        nonce = secrets.token_urlsafe(18)
        now = time.monotonic()
        with sessions_lock:
            for old in [k for k, v in sessions.items() if v < now]:
                del sessions[old]
            sessions[nonce] = now + session_hours * 3600
        mac = hmac.new(secret_b, f"session:{nonce}".encode(), hashlib.sha256).hexdigest()
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(_COOKIE, f"{nonce}.{mac}", httponly=True, samesite="strict", max_age=int(session_hours * 3600),
                        secure=request.url.scheme == "https", path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        form = await _form(request)
        nonce = session_nonce(request)
        if nonce is not None:
            # A cross-site form must not sign the user out; the session is revoked here, so the
            # cookie is refused even if a copy of it survives in another browser.
            if not _same(form.get("csrf", ""), csrf_for(nonce)):
                raise HTTPException(403, "the sign-out form did not come from this dashboard; reload the page")
            with sessions_lock:
                sessions.pop(nonce, None)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(_COOKIE, path="/")
        return resp

    app.state.backend = backend
    app.state.program = prog
    app.state.sessions = sessions
    return app


class TicketCallbackIn(_In):
    """A ticket system's report on an alert it received over a webhook channel."""

    alert_id: _Id
    event: Literal["ticket_created", "ticket_resolved"]
    ticket_id: Annotated[str, Field(min_length=1, max_length=200)]
    ticket_url: Annotated[str, Field(max_length=2000, pattern=r"^https?://")] | None = None
    occurred_at: AwareDatetime | None = None


def _deliver_loop(backend, program, stop: threading.Event, every_s: float, public_url: str | None,
                  key: bytes | None, state) -> None:
    """``insightroi serve``'s deliverer: a pass every ``every_s`` seconds on the server's own store.

    It shares the server's store object, whose lease serialises it with the request thread; the
    file is held only for each state change, never while a message is in flight. A failed pass
    (the store busy, a secret's variable unset) is kept on ``app.state.delivery`` and retried.
    """
    from insightroi.delivery import LinkSigner, deliver

    signer = LinkSigner(public_url, key) if public_url and key else None
    state.delivery = {"runs": 0, "last": None, "error": None}
    while not stop.is_set():
        try:
            run = deliver(backend().store, program, since=_now() - timedelta(days=14), signer=signer, stop=stop)
            state.delivery.update(runs=state.delivery["runs"] + 1, last=run.to_dict(), error=None)
        except Exception as exc:  # the loop must outlive a bad pass, or delivery silently stops
            state.delivery["error"] = f"{type(exc).__name__}: {exc}"
            print(f"warning: delivery pass failed: {exc}", file=sys.stderr)
        stop.wait(every_s)


def _pseudonymize_ids(row: dict[str, Any]) -> dict[str, Any]:
    """An e-mail or phone as the event's actor gets ingestion's keyed pseudonym (joins still match).

    The payload is left out of ``redact_row``: it was already redacted value by value
    (:func:`_redact_obj`), which also sees non-ASCII text that its JSON form escapes.
    """
    return {**redact_row({**row, "payload": None}, "chain_events"), "payload": row.get("payload")}


def _redact_obj(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact_pii(obj)
    if isinstance(obj, dict):
        return {k: _redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact_obj(v) for v in obj]
    return obj


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _not_future(t: datetime, max_future: timedelta) -> None:
    now = _now()
    if t > now + max_future:
        raise HTTPException(422, f"event_time {t.isoformat(sep=' ')} UTC is {t - now} after the server's clock "
                                 f"({now.isoformat(sep=' ')} UTC); events may be at most {max_future} ahead")


def _bearer_value(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _safe_next(target: str) -> str:
    # Only same-site relative paths: no open redirect through //host or scheme URLs.
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/inbox"


async def _form(request: Request) -> dict[str, str]:
    """Parse an urlencoded form body (no python-multipart needed for these small forms)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


async def _run(fn, *args, **kwargs):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)

