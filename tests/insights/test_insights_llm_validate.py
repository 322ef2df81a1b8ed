"""LLM summariser against a real loopback HTTP server; validation metrics; the CLI commands."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.fake_llm import chat_endpoint, chat_reply
from insightroi.cli import app
from insightroi.insights import LlmError, LlmSummarizer, TopicClassifier, validate_model
from insightroi.program import parse_program, starter_program_text

PROGRAM = parse_program(starter_program_text())


class _Fake:
    seen: list = []
    mode = "ok"


def _answer(body: dict) -> tuple[int, bytes | None]:
    if _Fake.mode == "500":
        return 500, None
    content = json.dumps({"label": "counterfeit_items", "summary": "Customers report fake products."})
    if _Fake.mode == "prose":
        content = "These are complaints about fakes."
    return 200, chat_reply(content)


@pytest.fixture()
def server():
    _Fake.seen.clear()
    _Fake.mode = "ok"
    with chat_endpoint(_answer, _Fake.seen) as url:
        yield url


def test_llm_summary_over_real_http(server):
    s = LlmSummarizer(base_url=server, api_key="sk-secret-123", model="m1")
    out = s.summarize(["this is a fake", "logo is wrong, counterfeit"], hint_terms=["fake"])
    assert out.label == "counterfeit_items" and out.method == "llm" and out.model_version.startswith("llm-m1")
    req = _Fake.seen[0]
    path, auth, body = req["path"], req["auth"], req["body"]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-secret-123"
    assert body["model"] == "m1" and "counterfeit" in body["messages"][1]["content"]
    assert "sk-secret" not in repr(s)


def test_llm_errors_do_not_leak_key(server):
    _Fake.mode = "500"
    s = LlmSummarizer(base_url=server, api_key="sk-secret-123")
    with pytest.raises(LlmError) as e:
        s.summarize(["x"])
    assert "500" in str(e.value) and "sk-secret" not in str(e.value)
    _Fake.mode = "prose"
    assert s.summarize(["x"]).summary.startswith("These are")
    with pytest.raises(LlmError):
        LlmSummarizer(base_url="http://127.0.0.1:9/v1", api_key="k", timeout=2).summarize(["x"])
    # A typo in --llm is named up front, not a ValueError traceback from urllib on the first call.
    for bad in ("notaurl", "localhost:8000/v1", "ftp://host/v1"):
        with pytest.raises(LlmError, match="is not an http\\(s\\) URL"):
            LlmSummarizer(base_url=bad)


def test_llm_off_by_default(monkeypatch):
    monkeypatch.delenv("INSIGHTROI_LLM_BASE_URL", raising=False)
    s = LlmSummarizer()
    assert not s.enabled
    with pytest.raises(LlmError):
        s.summarize(["x"])


def test_validate_model_hand_computed():
    y = ["a", "a", "b", "b", "c"]
    p = ["a", "b", "b", "b", "a"]
    r = validate_model(p, y, confidence=[0.9, 0.6, 0.8, 0.7, 0.5],
                       times=["2025-01-05", "2025-01-20", "2025-02-01", "2025-02-02", "2025-02-03"])
    per = {d["label"]: d for d in r.per_class}
    assert per["a"]["precision"] == 0.5 and per["a"]["recall"] == 0.5
    assert per["b"]["precision"] == pytest.approx(2 / 3) and per["b"]["recall"] == 1
    assert per["c"]["f1"] == 0
    assert r.macro_f1 == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert r.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # ECE with 10 bins: each prediction alone in its bin -> mean |correct - conf|
    assert r.ece == pytest.approx(np.mean([0.1, 0.6, 0.2, 0.3, 0.5]))
    assert [s["slice"] for s in r.by_slice] == ["2025-01", "2025-02"]


def test_topic_rules_negation_and_multilabel():
    m = TopicClassifier(PROGRAM.taxonomy).fit()
    out = m.predict_multilabel([
        "my order arrived late and the box was crushed", "it was not late at all", "I am not happy",
        "doesn't fit at all", "lovely weather today"])
    assert set(out[0]) == {"shipping_delay", "damaged_packaging"}
    assert out[1] == [] and out[2] == [] and out[3] == ["sizing"] and out[4] == []
    assert list(m.predict(["lovely weather today"])) == ["other"]


def test_cli_validate_classify_detect(tmp_path):
    csv = tmp_path / "labels.csv"
    rows = [("my parcel arrived two weeks late", "shipping_delay"), ("battery drains in an hour", "battery_power"),
            ("the agent was rude", "customer_service"), ("bought it for my dad", "other"),
            ("way too expensive", "price_value"), ("it stopped working, defective", "product_defect")]
    csv.write_text("text,label,time\n" + "\n".join(f'"{t}",{lab},2025-0{i % 2 + 1}-10' for i, (t, lab) in enumerate(rows)))
    prog = tmp_path / "insightroi.toml"
    prog.write_text(starter_program_text())
    runner = CliRunner()
    res = runner.invoke(app, ["validate-model", str(csv), "--program", str(prog), "--json"])
    assert res.exit_code == 0, res.output
    bad = runner.invoke(app, ["validate-model", str(csv), "--program", str(prog), "--method", "bogus"])
    # A clean exit 1 (SystemExit), not an uncaught ValueError with a traceback.
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit), bad.exception
    assert "The 'method' parameter must be one of ['lexicon', 'embedding', 'seeded', 'auto']" in bad.output
    out = json.loads(res.output)
    assert out["n"] == 6 and out["macro_f1"] > 0.8 and len(out["by_slice"]) == 2
    store = f"duckdb:///{tmp_path / 's.duckdb'}"
    res = runner.invoke(app, ["classify", "--store", store, "--program", str(prog), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["n_todo"] == 0
    res = runner.invoke(app, ["detect", "--store", store, "--program", str(prog), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["alerts"] == []
    # Nothing classified yet: zero alerts says nothing, and the table says what to run first.
    res = runner.invoke(app, ["detect", "--store", store, "--program", str(prog)])
    assert res.exit_code == 0 and "run `insightroi classify` first" in res.output, res.output
