"""Optional LLM summary of a complaint cluster through an OpenAI-compatible endpoint.

Off unless the user configures an endpoint (argument or ``INSIGHTROI_LLM_BASE_URL`` /
``INSIGHTROI_LLM_API_KEY`` / ``INSIGHTROI_LLM_MODEL``). The key is sent only in the
Authorization header; it never appears in reprs, errors or outputs.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from insightroi.errors import InsightRoiError
from insightroi.insights._base import model_version

__all__ = ["LlmSummarizer", "LlmError", "ClusterSummary"]


class LlmError(InsightRoiError):
    """The configured LLM endpoint failed or answered something unusable."""


@dataclass(frozen=True)
class ClusterSummary:
    label: str
    summary: str
    method: str
    model_version: str


_SYSTEM = (
    "You summarise customer complaints for the team that must fix them. Reply with JSON only: "
    '{"label": "<2-5 word snake_case theme name>", "summary": "<one or two sentences: what is wrong, '
    'how often, what customers ask for>"}. Use only the complaints given.'
)


class LlmSummarizer:
    """Summarise a cluster of texts with a chat-completions model.

    Parameters
    ----------
    base_url : str, optional
        E.g. ``http://localhost:8000/v1`` (``/chat/completions`` is appended).
    api_key : str, optional
    model : str
    timeout : float
        Seconds per request.
    max_examples : int
        Texts sent per cluster (each cut to 500 characters): bounds cost and data shared.
    """

    method = "llm"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str | None = None,
                 timeout: float = 30.0, max_examples: int = 20):
        self.base_url = (base_url or os.environ.get("INSIGHTROI_LLM_BASE_URL") or "").rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("INSIGHTROI_LLM_API_KEY")
        self.model = model or os.environ.get("INSIGHTROI_LLM_MODEL") or "gpt-4o-mini"
        self.timeout = timeout
        self.max_examples = max_examples

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return f"LlmSummarizer(base_url={self.base_url!r}, model={self.model!r}, api_key=<{key}>)"

    @property
    def enabled(self) -> bool:
        """True when an endpoint is configured."""
        return bool(self.base_url)

    @property
    def model_version_(self) -> str:
        return model_version(f"llm-{self.model}", prompt=_SYSTEM, max_examples=self.max_examples)

    def summarize(self, texts: list[str], *, hint_terms: list[str] | None = None) -> ClusterSummary:
        """One request: returns the cluster's label and summary.

        Raises
        ------
        LlmError
            No endpoint configured, HTTP/network failure, or a reply that is not the JSON asked for.
        """
        if not self.enabled:
            raise LlmError("no LLM endpoint configured (set INSIGHTROI_LLM_BASE_URL or pass base_url)")
        sample = [str(t)[:500] for t in texts[: self.max_examples]]
        user = "Complaints:\n" + "\n".join(f"- {t}" for t in sample)
        if hint_terms:
            user += "\nFrequent terms: " + ", ".join(hint_terms[:10])
        body = json.dumps({
            "model": self.model, "temperature": 0,
            "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}],
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self.base_url + "/chat/completions", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (user-configured URL)
                payload = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise LlmError(f"LLM endpoint {self.base_url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise LlmError(f"LLM endpoint {self.base_url} unreachable: {getattr(exc, 'reason', exc)}") from None
        except json.JSONDecodeError:
            raise LlmError(f"LLM endpoint {self.base_url} returned non-JSON") from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LlmError("LLM reply has no choices[0].message.content") from None
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            parsed = json.loads(text)
            label, summary = str(parsed["label"]), str(parsed["summary"])
        except (json.JSONDecodeError, KeyError, TypeError):
            # A model that ignores the format still gives a usable summary.
            label, summary = "unlabelled_theme", content.strip()[:1000]
        return ClusterSummary(label=label, summary=summary, method=self.method, model_version=self.model_version_)
