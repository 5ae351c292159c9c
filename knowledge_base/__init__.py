"""Everything the tagger knows, at the bottom of the house (it imports nothing from ``agent/`` or
``ui/``): the tag repository, annotated samples, domain documents, their embeddings (``encoder``)
and Chroma collections (``store``), the networkx content–tag graph with its journal (``graph``;
with a Chroma server, a cache of the server's edge store: ``shared_graph``),
candidate recall over it (``recall``), file readers (``loaders``; ``documents`` for PDF, HTML,
DOCX and CSV), settings (``config``) and the bundled demo (``demo``). A new store backend or loader goes here; nothing here calls an LLM.

The names below are imported on first use (PEP 562): the errors and settings are light, the
store (numpy, networkx, Chroma) is loaded only by a command that opens a knowledge base."""

from importlib import import_module

from .config import KnowledgeBaseConfig, RecallConfig
from .errors import ConflictError, InputError, KnowledgeBaseError, KnowledgeBaseReadOnlyError, Llm4tagError, LoadError, UnknownTagsError

_LAZY = {
    "Passage": "loaders",
    "Sample": "loaders",
    "Tag": "loaders",
    "read_documents": "loaders",
    "read_samples": "loaders",
    "read_tags": "loaders",
    "Candidate": "recall",
    "Evidence": "recall",
    "RecallResult": "recall",
    "recall_candidates": "recall",
    "KnowledgeBase": "store",
    "LoadReport": "store",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Candidate",
    "ConflictError",
    "Evidence",
    "InputError",
    "KnowledgeBase",
    "KnowledgeBaseConfig",
    "KnowledgeBaseError",
    "KnowledgeBaseReadOnlyError",
    "Llm4tagError",
    "LoadError",
    "LoadReport",
    "Passage",
    "RecallConfig",
    "RecallResult",
    "Sample",
    "Tag",
    "UnknownTagsError",
    "read_documents",
    "read_samples",
    "read_tags",
    "recall_candidates",
]
