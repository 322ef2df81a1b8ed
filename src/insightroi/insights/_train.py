"""Rebuild the bundled sentiment parameters from the human-labelled reference data.

    python -m insightroi.insights._train --reference DIR [--embeddings cached.npz] [--skip-embeddings]

Trains on the reference TRAIN split only (ids not divisible by 5); the test split stays held out
for the tests and ``validate-model``. Writes ``insights/_models/*.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np

from insightroi.insights._sentiment import (
    _MODELS,
    EmbeddingSentiment,
    LexiconSentiment,
    load_reference_sentiment,
)


def _data_tag(df) -> str:
    h = hashlib.sha256("\n".join(f"{c}:{i}:{r}" for c, i, r in zip(df.corpus, df.id, df.rating)).encode())
    return f"Hutto&Gilbert2014 tweets+movies train split (id%5!=0) n={len(df)} sha={h.hexdigest()[:10]}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reference", required=True, help="folder with the Hutto & Gilbert texts (shared/reference/sentiment)")
    ap.add_argument("--embeddings", default=None, help="npz with arrays 'tweets' and 'movieReviewSnippets'")
    ap.add_argument("--skip-embeddings", action="store_true")
    args = ap.parse_args(argv)
    df = load_reference_sentiment(args.reference)
    train = df[df.split == "train"]
    tag = _data_tag(train)
    _MODELS.mkdir(exist_ok=True)

    lex = LexiconSentiment().fit(train.text.tolist(), train.rating.to_numpy())
    (_MODELS / "lexicon_calibration.json").write_text(
        json.dumps({"coef": lex.cal_coef_.tolist(), "intercept": lex.cal_intercept_.tolist(), "training_data": tag})
    )
    print("lexicon calibration written")
    if args.skip_embeddings:
        return
    if args.embeddings:
        z = np.load(args.embeddings)
        E = np.concatenate([z["tweets"], z["movieReviewSnippets"]])
        assert len(E) == len(df), (len(E), len(df))
        E_train = E[(df.split == "train").to_numpy()]
        emb = EmbeddingSentiment().fit(None, train.rating.to_numpy(), embeddings=E_train)
    else:
        emb = EmbeddingSentiment().fit(train.text.tolist(), train.rating.to_numpy())
    (_MODELS / "embedding_sentiment_head.json").write_text(
        json.dumps(
            {
                "coef": np.round(emb.coef_, 6).tolist(), "intercept": np.round(emb.intercept_, 6).tolist(),
                "ridge_coef": np.round(emb.ridge_coef_, 6).tolist(), "ridge_intercept": round(emb.ridge_intercept_, 6),
                "rating_scale": emb.rating_scale_, "training_data": tag,
            }
        )
    )
    print("embedding head written")


if __name__ == "__main__":
    main()
