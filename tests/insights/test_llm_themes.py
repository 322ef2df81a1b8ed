"""Theme names and summaries through an OpenAI-compatible endpoint: a real loopback HTTP server.

The fake checks what a real endpoint would (path, JSON body, bearer key) and answers with
``usage``; it can fail with HTTP 500, stall past the client's timeout or send broken JSON. The
decision tested: a failure never loses the themes; they keep their c-TF-IDF labels with the reason.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.cli_shell import stage_app
from helpers.fake_llm import chat_endpoint, chat_reply
from insightroi.insights._llm import LlmSummarizer, label_themes
from insightroi.insights._themes import Theme
from insightroi.program import starter_program_text

KEY = "sk-test-very-secret-4242"


class _Fake:
    seen: list = []
    mode = "ok"


def _answer(body: dict) -> tuple[int, bytes | None]:
    if _Fake.mode == "500":
        return 500, None
    if _Fake.mode == "slow":
        time.sleep(1.5)
    if _Fake.mode == "badjson":
        return 200, b"{not json"
    terms = body["messages"][1]["content"].split("Frequent terms: ")[-1]
    label = "Exchange Rate Complaints" if "exchange" in terms else "pin_problems"
    content = json.dumps({"label": label, "summary": f"Customers ask about {terms.split(',')[0]}."})
    return 200, chat_reply(content, model=body["model"],
                           usage={"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150})


@pytest.fixture()
def endpoint():
    _Fake.seen.clear()
    _Fake.mode = "ok"
    with chat_endpoint(_answer, _Fake.seen) as url:
        yield url


THEMES = [
    Theme(terms=["exchange rate", "rates", "foreign"], examples=["What exchange rate do you use?", "Is the rate fair?"],
          size=40, label="exchange_rate_rates", label_source="c-tf-idf"),
    Theme(terms=["pin", "blocked", "unblock"], examples=["My PIN is blocked", "How do I unblock my pin?"],
          size=30, label="pin_blocked_unblock", label_source="c-tf-idf"),
]


def test_llm_names_each_theme_and_records_tokens_cost_latency(endpoint):
    s = LlmSummarizer(base_url=endpoint, api_key=KEY, model="small-1", price_per_1k=0.002)
    out = label_themes(THEMES, s)
    assert [t.label for t in out] == ["exchange_rate_complaints", "pin_problems"]  # made snake_case
    assert [t.label_source for t in out] == ["llm", "llm"]
    assert out[0].summary == "Customers ask about exchange rate."
    call = out[0].llm_call
    assert call["prompt_tokens"] == 120 and call["completion_tokens"] == 30 and call["model"] == "small-1"
    assert call["cost"] == pytest.approx(150 / 1000 * 0.002)
    assert 0 < call["latency_s"] < 5
    assert len(s.calls) == 2
    req = _Fake.seen[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}"
    assert req["ctype"] == "application/json" and req["body"]["model"] == "small-1"
    assert [m["role"] for m in req["body"]["messages"]] == ["system", "user"]
    user = req["body"]["messages"][1]["content"]
    assert "What exchange rate do you use?" in user and "Frequent terms: exchange rate, rates, foreign" in user
    assert KEY not in repr(s)


def test_no_price_means_zero_cost_and_no_url_means_no_call(endpoint, monkeypatch):
    monkeypatch.delenv("INSIGHTROI_LLM_PRICE_PER_1K", raising=False)
    out = label_themes(THEMES[:1], LlmSummarizer(base_url=endpoint, api_key=KEY))
    assert out[0].llm_call["cost"] == 0 and out[0].llm_call["prompt_tokens"] == 120
    monkeypatch.delenv("INSIGHTROI_LLM_BASE_URL", raising=False)
    _Fake.seen.clear()
    assert label_themes(THEMES, LlmSummarizer()) == THEMES and _Fake.seen == []


@pytest.mark.parametrize("mode, reason", [("500", "HTTP 500"), ("slow", "unreachable: timed out"),
                                          ("badjson", "non-JSON")])
def test_failing_endpoint_keeps_ctfidf_labels_with_the_reason(endpoint, mode, reason):
    _Fake.mode = mode
    s = LlmSummarizer(base_url=endpoint, api_key=KEY, timeout=0.5)
    out = label_themes(THEMES, s)
    assert [t.label for t in out] == ["exchange_rate_rates", "pin_blocked_unblock"]
    for t in out:
        assert t.label_source.startswith("c-tf-idf (llm failed: ") and reason in t.label_source, t.label_source
        assert KEY not in t.label_source and t.llm_call is None
    # after the first failure the second theme is not sent: a dead endpoint costs one timeout, not one per theme
    assert len(_Fake.seen) == 1 and s.calls == []


def test_cli_themes_with_llm_prints_costs_never_the_key(endpoint, tmp_path, monkeypatch):
    from datetime import datetime, timedelta

    from insightroi.insights._cli import register
    from insightroi.store import open_store

    monkeypatch.setenv("INSIGHTROI_LLM_API_KEY", KEY)
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text())
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    # 12 + 12 items: discover_themes keeps themes of 10 or more
    cur = ("euros", "dollars", "yen", "pounds", "francs", "pesos")
    texts = ([f"What exchange rate applies to {c} {d}?" for c in cur for d in ("today", "this week")]
             + [f"My pin got blocked after {n} wrong tries {w}" for n in ("two", "three", "four", "five", "six", "seven") for w in ("again", "at the atm")])
    fb = pd.DataFrame({"id": [f"fb-{i}" for i in range(len(texts))], "source": "ticket",
                       "event_time": [datetime(2026, 3, 1) + timedelta(hours=i) for i in range(len(texts))],
                       "text": texts})
    with open_store(url) as st, st.transaction():
        st.append("feedback", fb)
    app = stage_app(register)
    runner = CliRunner()
    assert runner.invoke(app, ["classify", "--store", url, "--program", str(prog), "--json"]).exit_code == 0
    args = ["themes", "--store", url, "--program", str(prog), "--method", "tfidf", "--llm", endpoint,
            "--llm-price-per-1k", "0.01"]
    res = runner.invoke(app, args + ["--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    n = len(out["themes"])
    assert n >= 2 and out["llm"]["calls"] == n and out["llm"]["prompt_tokens"] == 120 * n
    assert out["llm"]["cost"] == pytest.approx(150 * n / 1000 * 0.01)
    assert all(t["label_source"] == "llm" for t in out["themes"])
    assert all(r["auth"] == f"Bearer {KEY}" for r in _Fake.seen)
    assert KEY not in res.output
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "LLM: " in table.output and "tokens" in table.output and KEY not in table.output
    _Fake.mode = "500"
    failed = runner.invoke(app, args)
    assert failed.exit_code == 0 and "llm failed" in failed.output and "HTTP 500" in failed.output
