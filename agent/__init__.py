"""The tagging agent: the LangGraph pipeline, its configuration, LLM backends and command line."""

from .context import Context
from .graph import build_graph, graph
from .tagging import tag

__all__ = ["Context", "build_graph", "graph", "tag"]
