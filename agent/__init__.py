"""The tagging agent: the façade (``tagging``), the LangGraph pipeline (``graph``, ``state``,
``context``, ``nodes/``), LLM backends (``llm/``), the run-time holders (``runtime``,
``confidence``), the LangChain tool (``tools``), batch tagging (``batch``), and the offline
workflows (``evaluation/``, ``training/``). Surfaces live in ``ui/``; the knowledge base below in
``knowledge_base/``.
"""

from .context import Context
from .graph import build_graph, graph
from .tagging import explain, learn, recall, tag, tag_stream

__all__ = ["Context", "build_graph", "explain", "graph", "learn", "recall", "tag", "tag_stream"]
