"""Optional LLM summary of a complaint cluster through an OpenAI-compatible endpoint.

Off unless the user configures an endpoint (argument or ``INSIGHTROI_LLM_BASE_URL`` /
``INSIGHTROI_LLM_API_KEY`` / ``INSIGHTROI_LLM_MODEL`` / ``INSIGHTROI_LLM_PRICE_PER_1K``). The key
is sent only in the Authorization header; it never appears in reprs, errors or outputs. Every
call records its latency, the token counts the endpoint reports in ``usage`` and their cost.

:func:`label_themes` names proposed themes through it and, when the endpoint fails, keeps the
class-based TF-IDF label with the reason: a theme list is never lost to an LLM outage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from insightroi.errors import InsightRoiError
from insightroi.insights._base import model_version

__all__ = ["LlmSummarizer", "LlmError", "ClusterSummary", "LlmCall", "label_themes"]


class LlmError(InsightRoiError):
    """The configured LLM endpoint failed or answered something unusable."""


@dataclass(frozen=True)
class LlmCall:
    """What one request cost: wall time, tokens as the endpoint reported them (``usage``), money.

    ``prompt_tokens`` / ``completion_tokens`` are None when the reply had no ``usage``; ``cost``
    is tokens x price per 1,000 tokens, 0 when the price or the tokens are unknown.
    """

    latency_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float
    model: str

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClusterSummary:
    """The LLM's name and summary for one cluster, and the call that produced them."""

    label: str
    summary: str
    method: str
    model_version: str
    call: LlmCall | None = None


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
    price_per_1k : float, optional
        Price of 1,000 tokens (prompt and completion alike) in the program's currency; default
        ``INSIGHTROI_LLM_PRICE_PER_1K``, else 0 (unknown: costs are reported as 0).

    Attributes
    ----------
    calls : list of LlmCall
        Every completed request, in order.
    """

    method = "llm"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str | None = None,
                 timeout: float = 30.0, max_examples: int = 20, price_per_1k: float | None = None):
        self.base_url = (base_url or os.environ.get("INSIGHTROI_LLM_BASE_URL") or "").rstrip("/")
        if self.base_url:
            parts = urllib.parse.urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                # urllib would raise a bare ValueError on the first call ("unknown url type").
                raise LlmError(f"LLM endpoint {self.base_url!r} is not an http(s) URL "
                               "(e.g. http://localhost:8000/v1; /chat/completions is appended)")
        self._api_key = api_key if api_key is not None else os.environ.get("INSIGHTROI_LLM_API_KEY")
        self.model = model or os.environ.get("INSIGHTROI_LLM_MODEL") or "gpt-4o-mini"
        self.timeout = timeout
        self.max_examples = max_examples
        if price_per_1k is None:
            raw = os.environ.get("INSIGHTROI_LLM_PRICE_PER_1K", "").strip()
            try:
                price_per_1k = float(raw) if raw else 0.0
            except ValueError:
                raise LlmError(f"INSIGHTROI_LLM_PRICE_PER_1K={raw!r} is not a number (price per 1,000 tokens)") from None
        if price_per_1k < 0:
            raise LlmError(f"price per 1,000 tokens must be >= 0, got {price_per_1k}")
        self.price_per_1k = float(price_per_1k)
        self.calls: list[LlmCall] = []

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
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (user-configured URL)
                payload = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise LlmError(f"LLM endpoint {self.base_url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise LlmError(f"LLM endpoint {self.base_url} unreachable: {getattr(exc, 'reason', exc)}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise LlmError(f"LLM endpoint {self.base_url} returned non-JSON") from None
        latency = time.perf_counter() - t0
        try:
            content = payload["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise LlmError(f"LLM endpoint {self.base_url}: reply has no choices[0].message.content") from None
        call = self._record(payload, latency)
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            parsed = json.loads(text)
            label, summary = str(parsed["label"]), str(parsed["summary"])
        except (json.JSONDecodeError, KeyError, TypeError):
            # A model that ignores the format still gives a usable summary.
            label, summary = "unlabelled_theme", content.strip()[:1000]
        return ClusterSummary(label=label, summary=summary, method=self.method, model_version=self.model_version_,
                              call=call)

    def _record(self, payload: dict, latency: float) -> LlmCall:
        usage = payload.get("usage") if isinstance(payload, dict) else None
        usage = usage if isinstance(usage, dict) else {}

        def _int(v):
            return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None

        p, c = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        cost = ((p or 0) + (c or 0)) / 1000 * self.price_per_1k
        call = LlmCall(latency_s=round(latency, 4), prompt_tokens=p, completion_tokens=c, cost=cost,
                       model=str(payload.get("model") or self.model))
        self.calls.append(call)
        return call


def _snake_label(label: str) -> str | None:
    s = re.sub(r"[^a-z0-9]+", "_", str(label).lower()).strip("_")[:60].strip("_")
    return s if s and s[0].isalpha() else None


def label_themes(themes, summarizer: LlmSummarizer, *, texts_per_theme: int = 10) -> list:
    """Name and summarise each theme through the LLM; on failure keep its c-TF-IDF label and say why.

    Parameters
    ----------
    themes : list of insightroi.insights.Theme
        Proposed themes (their ``examples`` and ``terms`` are sent).
    summarizer : LlmSummarizer
        A configured endpoint (not enabled: the themes come back unchanged, no request made).
    texts_per_theme : int
        Example texts sent per theme.

    Returns
    -------
    list of Theme
        Copies with ``label``, ``summary``, ``label_source`` ("llm", or "c-tf-idf (llm failed:
        <reason>)") and ``llm_call`` (latency, tokens, cost) set. After the first failure the
        remaining themes are not sent (an endpoint that is down would make each wait for its
        timeout); they carry the same reason.
    """
    if not summarizer.enabled:
        return list(themes)
    out, failed = [], None
    for t in themes:
        if failed is None:
            try:
                s = summarizer.summarize(list(t.examples)[:texts_per_theme], hint_terms=list(t.terms))
            except LlmError as exc:
                failed = str(exc)
            else:
                name = _snake_label(s.label) if s.label != "unlabelled_theme" else None
                out.append(dataclasses.replace(
                    t, label=name or t.label, summary=s.summary,
                    label_source="llm" if name else "c-tf-idf (llm gave no usable label)",
                    llm_call=s.call.to_dict() if s.call else None))
                continue
        out.append(dataclasses.replace(t, label_source=f"{t.label_source or 'terms'} (llm failed: {failed})"))
    return out
