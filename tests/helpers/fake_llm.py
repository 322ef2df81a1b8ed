"""A real OpenAI-compatible chat endpoint on loopback, for the LLM paths' tests.

It records each request as a real endpoint would see it (path, bearer header, content type, JSON
body) and answers whatever the test's ``answer`` function returns, so each test module keeps
only its own answers (labels, failure modes) and not a copy of the HTTP plumbing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["chat_endpoint", "chat_reply"]


def chat_reply(content: str, *, model: str | None = None, usage: dict | None = None) -> bytes:
    """A ``/chat/completions`` response body whose one choice says ``content``."""
    out: dict = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    if model is not None:
        out["model"] = model
    if usage is not None:
        out["usage"] = usage
    return json.dumps(out).encode()


@contextmanager
def chat_endpoint(answer: Callable[[dict], tuple[int, bytes | None]], seen: list) -> Iterator[str]:
    """Serve ``answer(body) -> (status, response bytes or None)`` on loopback; yields the base URL (``.../v1``).

    Every request is appended to ``seen`` as ``{"path", "auth", "ctype", "body"}``.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                         "ctype": self.headers.get("Content-Type"), "body": body})
            status, out = answer(body)
            self.send_response(status)
            if out is not None:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            try:
                if out is not None:
                    self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()
