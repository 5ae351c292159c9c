"""Everything the tagger knows, at the bottom of the house (it imports nothing from ``agent/`` or
``ui/``): the tag repository, annotated samples, domain documents, their embeddings (``encoder``)
and Chroma collections (``store``), the networkx content–tag graph with its journal (``graph``),
candidate recall over it (``recall``), file readers (``loaders``; ``documents`` for PDF, HTML,
DOCX and CSV), settings (``config``) and the bundled demo (``demo``). A new store backend or loader goes here; nothing here calls an LLM."""

from .config import KnowledgeBaseConfig, RecallConfig
from .errors import ConflictError, InputError, KnowledgeBaseError, KnowledgeBaseReadOnlyError, Llm4tagError, LoadError, UnknownTagsError
from .loaders import Passage, Sample, Tag, read_documents, read_samples, read_tags
from .recall import Candidate, Evidence, RecallResult, recall_candidates
from .store import KnowledgeBase, LoadReport

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
