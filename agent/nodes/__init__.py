"""One module per node of the tagging graph, in pipeline order."""

from .calibrate import calibrate_confidence
from .examples import retrieve_examples
from .generate import generate_tags
from .knowledge import retrieve_knowledge
from .prepare import prepare_content
from .recall import recall_tags
from .review import record_review, review_tags
from .write_back import write_back

__all__ = [
    "calibrate_confidence",
    "generate_tags",
    "prepare_content",
    "recall_tags",
    "record_review",
    "retrieve_examples",
    "retrieve_knowledge",
    "review_tags",
    "write_back",
]
