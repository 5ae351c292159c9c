"""What a caller of a shared server may choose: the operator decides at start, the caller picks within.

The app's page and API, its MCP tools and LangGraph's server take requests from whoever reaches
them. None of them lets a caller name a file: a backend spec holds a model path
(``llamacpp:/path/model.gguf``) and a context holds a knowledge-base folder, so

- a caller may pick only a backend the operator allowed: the configured one (``LLM4TAG_BACKEND``,
  else the embedded model) or one listed in ``LLM4TAG_ALLOWED_BACKENDS`` (``allowed_backends``);
- LangGraph's server runs the graph with ``ServedContext``: a run's ``kb_dir`` must be the
  operator's (``LLM4TAG_KB_DIR``; better left out), and ``write_back``/``review`` — which change
  the knowledge base — only where the operator set them or allowed them (``LLM4TAG_SERVED_WRITES``).

A refusal never repeats a server path: it names what the caller sent and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from knowledge_base.errors import InputError
from knowledge_base.settings import settings

# absolute imports: LangGraph's server (langgraph.json) loads this file by path, outside its package
from agent.context import Context
from agent.graph import build_graph


def _same_backend(a: str, b: str) -> bool:
    a, b = (a or "llamacpp").strip(), (b or "llamacpp").strip()
    if a.startswith("llamacpp:") and b.startswith("llamacpp:"):
        return Path(a[9:]).expanduser().resolve() == Path(b[9:]).expanduser().resolve()
    return a == b


def allowed_backends(operator: Context | None = None) -> list[str]:
    """The backends a caller may pick: the operator's configured one first, then the allowed list."""
    configured = (operator or Context.from_env()).backend
    allowed = [configured]
    for spec in (settings().allowed_backends or "").split(","):
        spec = spec.strip()
        if spec and not any(_same_backend(spec, seen) for seen in allowed):
            allowed.append(spec)
    return allowed


def check_backend(spec: str | None, operator: Context | None = None) -> str | None:
    """``spec`` when the operator allowed it (None: the configured one), else an ``InputError``."""
    if spec is None or not spec.strip():
        return None
    for allowed in allowed_backends(operator):
        if _same_backend(spec, allowed):
            return allowed  # the operator's spelling: one loaded copy per model, however a caller writes it
    shown = spec.strip()[:80]
    raise InputError(
        f"backend {shown!r} is not one this server allows: leave it out to use the server's model, or ask its operator "
        "to allow it at start (LLM4TAG_ALLOWED_BACKENDS)"
    )


@dataclass(frozen=True)
class ServedContext(Context):
    """A run's context on LangGraph's server (``langgraph.json``): checked against the operator's
    settings when LangGraph builds it from the request."""

    def __post_init__(self):
        super().__post_init__()
        operator = Context.from_env()
        if self.kb_dir is not None and (
            operator.kb_dir is None or Path(self.kb_dir).expanduser().resolve() != Path(operator.kb_dir).expanduser().resolve()
        ):
            raise InputError(
                f"kb_dir {str(self.kb_dir)[:80]!r} is not the knowledge base this server serves: leave kb_dir out "
                "(the operator chooses it with LLM4TAG_KB_DIR)"
            )
        if self.kb_dir is not None:
            object.__setattr__(self, "kb_dir", operator.kb_dir)
        object.__setattr__(self, "backend", check_backend(self.backend, operator) or operator.backend)
        writes = settings().served_writes
        for name in ("write_back", "review"):
            if getattr(self, name) and not getattr(operator, name) and not writes:
                raise InputError(
                    f"{name} changes the knowledge base and this server does not let a run turn it on: leave it out, or "
                    f"ask its operator to start the server with LLM4TAG_SERVED_WRITES=true (or LLM4TAG_{name.upper()}=true)"
                )


graph = build_graph(context_schema=ServedContext)  # what langgraph.json serves
