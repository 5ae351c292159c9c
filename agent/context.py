"""The tagging graph's run configuration: one typed place, the paper's values as defaults.

Every field can be set per run (``graph.invoke(..., context=Context(...))``), from the
environment (``LLM4TAG_<FIELD>``, e.g. ``LLM4TAG_BACKEND=ollama:qwen2.5:7b``), or from the CLI.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Literal, get_args, get_type_hints

from knowledge_base.config import RecallConfig, check_number, check_recall_settings
from knowledge_base.settings import parse_variable

Mode = Literal["multi", "single"]
LANGUAGE_CODE = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"  # label_language: ISO 639 with an optional region or script (de, pt-BR)
LlmMode = Literal["auto", "full", "fast"]


@dataclass(frozen=True)
class Context:
    kb_dir: str | None = field(default=None, metadata={"help": "knowledge base directory; the bundled demo knowledge base when unset"})
    backend: str = field(
        default="llamacpp", metadata={"help": "llamacpp | llamacpp:/path/model.gguf | llamacpp:gemma3-270m | ollama:MODEL"}
    )
    mode: Mode = field(default="multi", metadata={"help": "multi: several tags per content; single: exactly one"})
    max_tags: int = field(default=5, metadata={"help": "at most this many tags are generated in multi-tag mode"})
    use_fine_tuning: bool = field(
        default=True, metadata={"help": "the knowledge base's fine-tuned model or LoRA adapter when it has one (off: the base model)"}
    )
    use_graph_recall: bool = field(default=True, metadata={"help": "graph meta-paths (off: match-based recall, the paper's baseline)"})
    use_learned_recall: bool = field(
        default=True, metadata={"help": "the learned path: the knowledge base's trained classifier, when it has one"}
    )
    use_examples: bool = field(default=True, metadata={"help": "retrieved in-context examples (SRKI a)"})
    max_examples: int = field(default=3, metadata={"help": "at most this many similar annotated samples (paper: 3)"})
    use_knowledge: bool = field(default=True, metadata={"help": "retrieved domain-document snippets (SRKI b)"})
    use_web_search: bool = field(default=False, metadata={"help": "also search the web with ddgs (needs network)"})
    max_snippets: int = field(default=3, metadata={"help": "at most this many knowledge snippets (paper: 3)"})
    min_snippet_similarity: float = field(default=0.2, metadata={"help": "document passages less similar than this are not used"})
    web_timeout_s: float = field(default=5.0, metadata={"help": "web search timeout in seconds"})
    use_generation: bool = field(
        default=True,
        metadata={"help": "the LLM chooses tags from the candidates; its choice and rank become evidence (off: no generation)"},
    )
    use_calibration: bool = field(
        default=True, metadata={"help": "the Yes/No judge scores every likely candidate (recall's top judge_top and every generated tag)"}
    )
    llm: LlmMode = field(
        default="auto",
        metadata={
            "help": "auto: the LLM steps (generation, judge) only for a content where their output can change the answer "
            "(agent.routing); full: always; fast: never (fused recall alone, milliseconds)"
        },
    )
    route_margin: float = field(
        default=1.0,
        metadata={
            "help": "auto, with a fitted fusion: a close call within this many log-odds (of the threshold, or "
            "between the last tag kept and the next) sends the content to the LLM"
        },
    )
    judge_top: int = field(
        default=5, metadata={"help": "recall's top this many candidates are scored (and judged) besides the generated tags"}
    )
    threshold: float | None = field(
        default=None,
        metadata={
            "help": "tags whose confidence is below this are dropped; unset: the knowledge base's tuned threshold, else "
            "its recall ranker's cut, else 0.5 (paper)"
        },
    )
    use_learned_calibration: bool = field(
        default=True,
        metadata={
            "help": "confidence from the knowledge base's fitted fusion of all the evidence, else recall's own P(right) (off: the paper's P(Yes))"
        },
    )
    history_keep: float | None = field(
        default=0.5,
        metadata={"help": "keep a candidate the LLM skipped when this share of similar history items carries it (None: off)"},
    )
    write_back: bool = field(default=False, metadata={"help": "final tags become deterministic edges; the content joins the history"})
    review: bool = field(
        default=False,
        metadata={
            "help": "stop before write-back with the proposed tags until a person accepts, rejects or adds (a correction resumes it)"
        },
    )
    use_cache: bool = field(
        default=True, metadata={"help": "reuse recall and knowledge results for a text already seen, until the knowledge base changes"}
    )
    content_chars: int = field(default=2000, metadata={"help": "content longer than this is cut in prompts (the cut is reported)"})
    delta_ct: float | None = field(default=None, metadata={"help": "override the knowledge base's δ_ct"})
    delta_cc: float | None = field(default=None, metadata={"help": "override the knowledge base's δ_cc"})
    max_c2t: int | None = field(default=None, metadata={"help": "override the knowledge base's C2T cap"})
    max_c2c2t: int | None = field(default=None, metadata={"help": "override the knowledge base's C2C2T cap"})
    budget: int | None = field(default=None, metadata={"help": "override the candidate budget"})
    label_language: str | None = field(
        default=None,
        metadata={
            "help": "each tag also gets its label in this language (ISO 639-1, e.g. de), from the vocabulary's SKOS prefLabels; "
            "a tag without one keeps its name"
        },
    )
    workers: int = field(
        default=1,
        metadata={
            "help": "batch tagging (index) and the REST API tag this many contents at once: model worker processes, each with "
            "its own llama.cpp (threads for an ollama backend); 1: in this process"
        },
    )

    def __post_init__(self):
        if self.mode not in get_args(Mode):
            raise ValueError(f"mode must be 'multi' or 'single', not {self.mode!r}")
        if self.llm not in get_args(LlmMode):
            raise ValueError(f"llm must be 'auto', 'full' or 'fast', not {self.llm!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        if self.max_tags < 1:
            raise ValueError("max_tags must be at least 1")
        if self.judge_top < 0:
            raise ValueError("judge_top must be 0 or more")
        check_recall_settings({name: getattr(self, name) for name in ("delta_ct", "delta_cc", "max_c2t", "max_c2c2t", "budget")})
        for name in ("max_tags", "judge_top", "max_examples", "max_snippets", "content_chars", "workers"):
            check_number(name, getattr(self, name), minimum=1 if name in ("max_tags", "content_chars", "workers") else 0, integer=True)
        check_number("threshold", self.threshold, minimum=0.0, maximum=1.0)
        check_number("history_keep", self.history_keep, minimum=0.0, maximum=1.0)
        check_number("route_margin", self.route_margin, minimum=0.0)
        check_number("min_snippet_similarity", self.min_snippet_similarity, minimum=-1.0, maximum=1.0)
        check_number("web_timeout_s", self.web_timeout_s, minimum=0.0)
        if self.label_language is not None and not re.match(LANGUAGE_CODE, self.label_language):
            raise ValueError(f"label_language must be a language code such as de or pt-BR, not {self.label_language[:40]!r}")

    @classmethod
    def from_env(cls, **overrides) -> "Context":
        """Defaults, then ``LLM4TAG_<FIELD>`` variables, then explicit non-None overrides."""
        hints = get_type_hints(cls)
        values = {}
        for f in fields(cls):
            variable = f"LLM4TAG_{f.name.upper()}"
            raw = os.environ.get(variable, "").strip()
            if raw:
                values[f.name] = parse_variable(variable, raw, hints[f.name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_overrides(self, **overrides) -> "Context":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def uses_llm(self) -> bool:
        """Whether the run may call the language model at all (off: fused recall only, milliseconds);
        with ``llm="auto"`` whether it does is decided per content (``agent.routing``)."""
        return self.llm != "fast" and (self.use_generation or self.use_calibration)

    @property
    def tag_limit(self) -> int:
        return 1 if self.mode == "single" else self.max_tags

    def recall_config(self, base: RecallConfig) -> RecallConfig:
        """The recall settings of this run: the knowledge base's ``base`` with this run's overrides.

        The one place they are combined: tagging, the ``recall`` surfaces and the training sets
        all see the same candidates for the same settings."""
        return base.with_overrides(
            strategy="graph" if self.use_graph_recall else "match",
            delta_ct=self.delta_ct,
            delta_cc=self.delta_cc,
            max_c2t=self.max_c2t,
            max_c2c2t=self.max_c2c2t,
            budget=self.budget,
            max_learned=None if self.use_learned_recall else 0,
        )


def llm_mode(value: "LlmMode | bool | None") -> "LlmMode | None":
    """A surface's ``llm`` argument as a mode: true is ``full``, false ``fast`` (what ``llm: false``
    always meant), a mode name itself, None the run's default."""
    if isinstance(value, bool):
        return "full" if value else "fast"
    return value


def context_of(runtime) -> Context:
    """A node's run configuration: the one the caller gave, else the defaults and ``LLM4TAG_*``
    variables (LangGraph's server runs the graph without a context when an MCP client calls it)."""
    ctx = getattr(runtime, "context", None)
    return ctx if isinstance(ctx, Context) else Context.from_env()
