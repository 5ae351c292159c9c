"""The tagging agent: one ``Tagger`` per knowledge base (``tagger``; the module functions of
``tagging`` call it), the result every surface returns (``results``), the LangGraph pipeline (``graph``, ``state``,
``context``, ``nodes/``), LLM backends (``llm/``), the run-time holders (``runtime``,
``confidence``), the LangChain tool (``tools``), batch tagging (``batch``), and the offline
workflows (``evaluation/``, ``training/``). Surfaces live in ``ui/``; the knowledge base below in
``knowledge_base/``.

The names below are imported on first use (PEP 562), so ``import agent.context`` — what the
command line needs to start — does not load LangGraph and LangChain.
"""

import sys
from importlib import import_module
from types import ModuleType

_EXPORTS = {
    "Context": "agent.context",
    "TagResult": "agent.results",
    "Tagger": "agent.tagger",
    "tag_result": "agent.results",
    "tagger_for": "agent.tagger",
    "build_graph": "agent.graph",
    "graph": "agent.graph",
    "explain": "agent.tagging",
    "learn": "agent.tagging",
    "recall": "agent.tagging",
    "review": "agent.tagging",
    "tag": "agent.tagging",
    "tag_stream": "agent.tagging",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agent' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(ModuleType):
    """``agent.graph`` is the compiled graph (as ``from agent import graph`` has always given), even
    after the submodule ``agent.graph`` was imported — which makes the import system set the
    package's ``graph`` attribute to that module; the module itself stays in ``sys.modules``."""

    @property
    def graph(self):
        return import_module("agent.graph").graph

    @graph.setter
    def graph(self, value) -> None:  # the import system stores the submodule here; the property keeps answering
        pass


sys.modules[__name__].__class__ = _Package
