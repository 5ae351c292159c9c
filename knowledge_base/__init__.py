"""Everything the tagger knows: tag repository, annotated samples, documents, embeddings, graph."""

from .config import KnowledgeBaseConfig, RecallConfig
from .errors import InputError, KnowledgeBaseError, Llm4tagError, LoadError
from .loaders import Passage, Sample, Tag, read_documents, read_samples, read_tags
from .recall import Candidate, Evidence, RecallResult, recall_candidates
from .store import KnowledgeBase, LoadReport

__all__ = [
    "Candidate",
    "Evidence",
    "InputError",
    "KnowledgeBase",
    "KnowledgeBaseConfig",
    "KnowledgeBaseError",
    "Llm4tagError",
    "LoadError",
    "LoadReport",
    "Passage",
    "RecallConfig",
    "RecallResult",
    "Sample",
    "Tag",
    "read_documents",
    "read_samples",
    "read_tags",
    "recall_candidates",
]
