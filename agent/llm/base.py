"""One interface for every LLM backend: select tags from candidates, and judge (content, tag).

A backend is chosen by a spec string: ``llamacpp`` (the bundled SmolLM2-135M-Instruct GGUF),
``llamacpp:/path/model.gguf``, or ``ollama:MODEL`` (e.g. ``ollama:qwen2.5:7b``).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from knowledge_base.errors import Llm4tagError

YES_VARIANTS = ("Yes", " Yes", "yes", " yes", "YES")
NO_VARIANTS = ("No", " No", "no", " no", "NO")


class BackendError(Llm4tagError):
    """The model server or model file cannot serve the request; the message says what to do."""


class TransientBackendError(BackendError):
    """The model server failed in a way another try may get past: it refused the connection or
    answered with a server error (5xx). The tagging graph retries the node (``agent.retries``)."""


@dataclass
class Generation:
    tags: list[str]  # valid candidates, in the order the model gave them
    raw: str  # the model's raw output
    prompt_tokens: int
    completion_tokens: int
    rejected: list[str]  # names the model produced that are not candidates (dropped)
    reused_tokens: int = 0  # tokens of the prompt served from the KV cache (prompt_tokens counts them too)


@dataclass
class Judgment:
    p_yes: float  # exp(s_Yes) / (exp(s_Yes) + exp(s_No))
    logit_yes: float
    logit_no: float
    prompt_tokens: int  # tokens evaluated for this judgment (after any cache reuse)
    reused_tokens: int  # tokens of the prompt served from the KV cache


def yes_probability(logit_yes: float, logit_no: float) -> float:
    """The paper's confidence: a softmax restricted to the Yes and No next-token scores."""
    m = max(logit_yes, logit_no)
    ey, en = math.exp(logit_yes - m), math.exp(logit_no - m)
    return ey / (ey + en)


def tag_selection_schema(candidates: list[str], max_tags: int) -> dict:
    """A JSON schema that only admits an array of distinct candidate names."""
    return {
        "type": "array",
        "items": {"type": "string", "enum": list(candidates)},
        "uniqueItems": True,
        "minItems": 1 if max_tags == 1 else 0,
        "maxItems": max_tags,
    }


def parse_selection(raw: str, candidates: list[str], max_tags: int) -> tuple[list[str], list[str]]:
    """Validate the model's output: keep candidate names (first occurrence), report the rest.

    Accepts a JSON array (what constrained decoding produces) and, as a fallback for servers
    that ignore the schema, a comma- or newline-separated list.
    """
    allowed = set(candidates)
    try:
        items = json.loads(raw)
        if isinstance(items, dict):
            items = next((v for v in items.values() if isinstance(v, list)), [])
        if not isinstance(items, list):
            items = [items]
    except ValueError:
        items = [p.strip(" \"'[]-*•\t") for p in raw.replace("\n", ",").split(",")]
    kept: list[str] = []
    rejected: list[str] = []
    for item in items:
        name = str(item).strip()
        if not name:
            continue
        if name in allowed and name not in kept:
            kept.append(name)
        elif name not in allowed:
            rejected.append(name)
    return kept[:max_tags], rejected


class LLMBackend(ABC):
    """What the tagging graph needs from a language model."""

    spec: str

    @abstractmethod
    def select_tags(self, system: str, user: str, candidates: list[str], max_tags: int, head: str = "") -> Generation:
        """Generate a selection of tags, constrained to ``candidates`` (at most ``max_tags``).

        ``head`` is the fixed start of ``user`` (the template's instructions before its first
        placeholder): backends that can, keep the KV cache of the system message and this head
        and reuse it for every content instead of evaluating it again."""

    @abstractmethod
    def judge(self, system: str, prompts: list[str], reuse_cache: bool = True, head: str = "") -> list[Judgment]:
        """P(Yes) for each judgment prompt. Prompts share a long prefix (the content); backends
        that can, evaluate that prefix once. ``head``: the prompts' fixed start, as for ``select_tags``."""

    def describe(self) -> str:
        return self.spec
