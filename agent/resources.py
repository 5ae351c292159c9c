"""Long-lived objects the nodes share: knowledge bases and content embeddings, cached per process."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from knowledge_base import KnowledgeBase
from knowledge_base.demo import open_demo_kb

from .calibration import FILE_NAME as CALIBRATION_FILE
from .calibration import LearnedCalibration
from .context import Context
from .llm import LLMBackend, load_backend

_kbs: dict[str, KnowledgeBase] = {}
_lock = threading.Lock()
_vectors: "OrderedDict[str, tuple[np.ndarray, bool]]" = OrderedDict()
_VECTOR_CACHE = 256
_calibrations: dict[str, tuple[float | None, LearnedCalibration | None]] = {}


def get_knowledge_base(kb_dir: str | None) -> KnowledgeBase:
    """The knowledge base at ``kb_dir`` (the demo one, built on first use, when None)."""
    key = str(Path(kb_dir).expanduser().resolve()) if kb_dir else "<demo>"
    with _lock:
        if key not in _kbs:
            _kbs[key] = open_demo_kb() if kb_dir is None else KnowledgeBase(key)
        return _kbs[key]


def backend_spec(ctx: Context) -> str:
    """The LLM backend a run uses: the knowledge base's fine-tuned model (``llm4tag train``) when
    the default embedded backend is asked for and one is recorded, else ``ctx.backend`` as given."""
    if (ctx.backend or "llamacpp").strip() == "llamacpp":
        from .training import trained_model_path

        kb = get_knowledge_base(ctx.kb_dir)
        model = trained_model_path(kb.directory)
        if model:
            return f"llamacpp:{model}"
    return ctx.backend


def backend_for(ctx: Context) -> LLMBackend:
    return load_backend(backend_spec(ctx))


DEFAULT_THRESHOLD = 0.5  # the paper's


def effective_threshold(ctx: Context) -> float:
    """The run's confidence threshold: explicit, else the knowledge base's tuned one, else 0.5."""
    if ctx.threshold is not None:
        return ctx.threshold
    tuned = get_knowledge_base(ctx.kb_dir).config.threshold
    return DEFAULT_THRESHOLD if tuned is None else tuned


def learned_calibration(ctx: Context) -> LearnedCalibration | None:
    """The knowledge base's fitted calibration (``llm4tag calibrate``) when the run uses it."""
    if not ctx.use_learned_calibration:
        return None
    kb = get_knowledge_base(ctx.kb_dir)
    key = str(kb.directory)
    path = kb.directory / CALIBRATION_FILE
    stamp = path.stat().st_mtime if path.is_file() else None
    with _lock:
        cached = _calibrations.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
    model = LearnedCalibration.load(kb.directory) if stamp is not None else None
    with _lock:
        _calibrations[key] = (stamp, model)
    return model


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
