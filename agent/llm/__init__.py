"""LLM backends behind one interface, chosen by a spec string."""

from __future__ import annotations

import threading

from .base import BackendError, Generation, Judgment, LLMBackend, TransientBackendError, yes_probability

_backends: dict[str, LLMBackend] = {}
_lock = threading.Lock()


def load_backend(spec: str) -> LLMBackend:
    """``llamacpp`` | ``llamacpp:/path/model.gguf`` | ``llamacpp:/path/model.gguf;lora=/path/adapter.gguf``
    (a LoRA adapter GGUF applied at load time; no model path: the default model) | ``llamacpp:NAME``
    (a model in ``llamacpp.NAMED_MODELS``, e.g. ``gemma3-270m``, when its package is installed) | ``ollama:MODEL``
    — loaded once per spec."""
    spec = (spec or "llamacpp").strip()
    with _lock:
        if spec in _backends:
            return _backends[spec]
        kind, _, target = spec.partition(":")
        if kind == "llamacpp":
            from .llamacpp import LlamaCppBackend

            model, _, adapter = target.partition(";lora=")
            backend = LlamaCppBackend(model or None, lora_path=adapter or None)
        elif kind == "ollama":
            if not target:
                raise BackendError("name the Ollama model: ollama:MODEL, e.g. ollama:qwen2.5:7b")
            from .ollama import OllamaBackend

            backend = OllamaBackend(target)
        else:
            raise BackendError(f"unknown backend {spec!r}; use llamacpp, llamacpp:/path/model.gguf or ollama:MODEL")
        _backends[spec] = backend
        return backend


def forget_backends() -> None:
    """Forget every loaded backend (tests: the next ``load_backend`` loads afresh)."""
    with _lock:
        _backends.clear()


__all__ = [
    "BackendError",
    "Generation",
    "Judgment",
    "LLMBackend",
    "TransientBackendError",
    "forget_backends",
    "load_backend",
    "yes_probability",
]
