"""The web side: an event API (token-authenticated writes) and a server-rendered dashboard.

``create_app(store_url, token=...)`` returns a FastAPI app; ``insightroi serve`` runs it with uvicorn.
"""

from insightroi.server._app import create_app

__all__ = ["create_app"]
