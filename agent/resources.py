"""Long-lived objects the nodes share: knowledge bases and content embeddings, cached per process."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from knowledge_base import KnowledgeBase
from knowledge_base.demo import open_demo_kb

_kbs: dict[str, KnowledgeBase] = {}
_lock = threading.Lock()
_vectors: "OrderedDict[str, tuple[np.ndarray, bool]]" = OrderedDict()
_VECTOR_CACHE = 256


def get_knowledge_base(kb_dir: str | None) -> KnowledgeBase:
    """The knowledge base at ``kb_dir`` (the demo one, built on first use, when None)."""
    key = str(Path(kb_dir).expanduser().resolve()) if kb_dir else "<demo>"
    with _lock:
        if key not in _kbs:
            _kbs[key] = open_demo_kb() if kb_dir is None else KnowledgeBase(key)
        return _kbs[key]


def embed(kb: KnowledgeBase, text: str) -> tuple[np.ndarray, bool]:
    """The content's embedding (and whether it was truncated), computed once per text."""
    key = kb.config.encoder + ":" + hashlib.sha1(text.encode("utf-8")).hexdigest()
    with _lock:
        if key in _vectors:
            _vectors.move_to_end(key)
            return _vectors[key]
    value = kb.encoder.encode_one(text)
    with _lock:
        _vectors[key] = value
        while len(_vectors) > _VECTOR_CACHE:
            _vectors.popitem(last=False)
    return value
