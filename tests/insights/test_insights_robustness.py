"""Bad input never crashes: each case is classified or marked unclassifiable with a reason."""

import json

import numpy as np
import pytest

from insightroi.insights import LexiconSentiment, TopicClassifier, build_models, prepare_texts
from insightroi.program import parse_program, starter_program_text

PROGRAM = parse_program(starter_program_text())
CASES = {
    "empty": "",
    "blank": "   \n\t ",
    "none": None,
    "nan": float("nan"),
    "huge": "the battery drains fast and it is broken. " * 2500,  # ~100 KB
    "german": "Das Produkt ist leider kaputt und die Lieferung kam viel zu spät an, schade",
    "japanese": "配送が遅れて箱が潰れていました",
    "emoji": "😢😢😢",
    "html": "<div><p>The box was <b>crushed</b> &amp; the item broke</p><script>alert(1)</script></div>",
    "only_tags": "<br/><p></p>",
    "number": 12345,
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_model_survives(name):
    text = CASES[name]
    models = build_models(PROGRAM, "lexicon")
    import pandas as pd

    rows = models.classify_frame(pd.DataFrame({"id": ["x"], "text": [text], "rating": [np.nan]}))
    assert len(rows) == 3
    for r in rows.itertuples():
        ev = json.loads(r.evidence)
        if r.label == "unclassifiable":
            assert r.confidence == 0
            assert ev.get("reason"), (name, r.task, ev)
        else:
            assert 0 <= r.confidence <= 1


def test_expected_outcomes():
    lex = LexiconSentiment().fit()
    out = lex.classify([CASES[k] for k in ("empty", "german", "japanese", "emoji", "html", "huge")])
    assert list(out.label[:3]) == ["unclassifiable"] * 3
    assert "not English" in json.loads(out.evidence[1])["reason"]
    assert out.label[3] == "negative"  # emoji lexicon: "crying face"
    assert "html markup removed" in json.loads(out.evidence[4])["notes"]
    assert "truncated" in json.loads(out.evidence[5])["notes"][0]
    topic = TopicClassifier(PROGRAM.taxonomy).fit().classify([CASES["html"], CASES["emoji"]])
    assert topic.label[0] in ("damaged_packaging", "product_defect")
    assert "script" not in topic.evidence[0]
    assert topic.label[1] == "unclassifiable"


def test_prepare_reasons():
    p = prepare_texts(["", "<p></p>", "fine thanks"])
    assert p[0].reason.startswith("empty") and p[1].reason.startswith("empty") and p[2].text == "fine thanks"
