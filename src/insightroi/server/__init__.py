"""The web side: an event API (token-authenticated writes) and a server-rendered dashboard.

``create_app(store_url, token=...)`` returns a FastAPI app; ``insightroi serve`` runs it with uvicorn.
FastAPI is the ``web`` extra: it is imported when the app is built, not when the CLI starts, so
every other command works without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        # Imported on first use: _app imports FastAPI (the optional 'web' extra).
        from insightroi.server._app import create_app

        return create_app
    raise AttributeError(f"module 'insightroi.server' has no attribute {name!r}")
