"""The one shape a tagging result leaves every surface in: ``TagResult``.

The tagging graph's output (``agent.state.OutputState``) is the full working record: every
candidate with its evidence, the examples, the judgments, the timings. What a caller gets back
— the LangChain tool, both MCP servers (as ``structuredContent``, with the model as the tool's
output schema), the app's API, the CLI's ``tag --json`` and, with its own additions, REST's
``TagResponse`` — is ``tag_result`` of it: the final tags, each with its confidence and a
one-line why, the scored tags left under the threshold, and the threshold, mode and route the
answer was made with. One function builds it, so no surface restates the shape.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .confidence import scored_tags
from .explanation import why


class ScoredTag(BaseModel):
    """A final tag of a result."""

    tag: str
    confidence: float | None = Field(
        description="P(tag is right), fused from recall, the generator and the judge; null when neither "
        "the judge nor a recall ranker gives one."
    )
    rank: int = Field(description="1 for the best tag.")
    description: str = ""
    paths: list[str] = Field(
        default_factory=list,
        description="Meta-paths that recalled the tag: C2T, C2C2T, learned, match, memory "
        "(a person's verdict on this text or a near-duplicate).",
    )
    origin: str = Field(
        default="llm",
        description="llm: chosen by the generator; history: kept because similar items carry it; recall: "
        "ranked high by recall, not chosen by the generator; review: added by a person in "
        "review; memory: a person marked it right on this text or a near-duplicate; "
        "hierarchy: an ancestor of a kept tag (hierarchy_output add-ancestors).",
    )
    why: str = Field(
        description="One line: the recall evidence, the tag's origin and its confidence, and what moved the confidence "
        "more than 0.3 away from the judge's P(Yes) when it did."
    )
    path: list[str] | None = Field(
        default=None, description="With a tag tree: the tag's place in it, root first (the tag last); null for a tag outside any tree."
    )
    label: str | None = Field(
        default=None, description="With label_language: the tag's label in that language (its name when the vocabulary has none)."
    )
    words: list[str] | None = Field(
        default=None, description="With explain: the words of the text behind the tag (those whose removal lowers its score most)."
    )


class UnderThreshold(BaseModel):
    """A scored tag the threshold left out."""

    tag: str
    confidence: float


class RecalledTag(BaseModel):
    """A candidate of the recalled set Φ(c), each of its scores under its own name."""

    tag: str
    score: float = Field(description="What the candidates are ranked by: probability when there is one, else evidence_score.")
    probability: float | None = Field(default=None, description="The recall ranker's P(right); null without a trained ranker.")
    evidence_score: float = Field(default=0.0, description="The sum of its recall paths' scores (C2T, C2C2T, learned, match).")
    paths: list[str] = Field(default_factory=list, description="The meta-paths that recalled it.")


def recalled_tags(result: dict) -> list[RecalledTag]:
    """A result's candidates as ``RecalledTag`` (REST's and the batch record's ``candidates``)."""
    return [
        RecalledTag(
            tag=c["tag"],
            score=c["score"],
            probability=c.get("probability"),
            evidence_score=c.get("evidence_score", 0.0),
            paths=list(c.get("paths") or [e["path"] for e in c.get("evidence") or []]),
        )
        for c in result.get("candidates") or []
    ]


class Route(BaseModel):
    """Whether the language model ran for this text, and why (``agent.routing``)."""

    mode: Literal["auto", "full", "fast"]
    llm: bool
    reason: str = ""
    instructions: list[str] | None = Field(
        default=None,
        description="When the text holds instructions addressed to a language model: those found (the model was then not run).",
    )


class TagResult(BaseModel):
    """A tagging result: the same fields on every surface."""

    content_id: str = Field(description="The content's id in the knowledge base (derived from the text unless one was given).")
    tags: list[ScoredTag] = Field(description="The final tags, best first.")
    below_threshold: list[UnderThreshold] = Field(
        default_factory=list, description="Scored tags whose confidence fell under the threshold, best first."
    )
    threshold: float | None = Field(default=None, description="The confidence threshold the tags were cut at.")
    mode: Literal["multi", "single"] = Field(default="multi", description="multi: several tags; single: exactly one.")
    llm: bool = Field(default=False, description="Whether the language model ran for this text.")
    route: Route | None = Field(default=None, description="The language-model mode asked for, whether it ran and why.")
    candidates_considered: int = Field(default=0, description="How many candidates recall offered.")
    notes: list[str] = Field(default_factory=list, description="What a person should know (truncation, fallbacks, unreachable services).")
    review: dict[str, Any] | None = Field(
        default=None, description="With review: status pending (with the proposed tags) until a decision, then reviewed (what was decided)."
    )


def scored_tag_list(result: dict, spans: dict[str, list[dict]] | None = None) -> list[ScoredTag]:
    """A result's final tags as ``ScoredTag``; with ``spans`` (``tagging.supporting_spans``) each lists its words."""
    by_tag = {c["tag"]: c for c in result.get("candidates") or []}
    judged = {j["tag"]: j for j in result.get("judgments") or []}
    return [
        ScoredTag(
            tag=t["tag"],
            confidence=t.get("confidence"),
            rank=t.get("rank") or i,
            description=t.get("description") or "",
            paths=list(t.get("paths") or []),
            origin=t.get("origin") or "llm",
            path=t.get("path"),
            label=t.get("label"),
            why=why(t, by_tag.get(t["tag"]), judged.get(t["tag"]), result.get("recall_fit")),
            words=None if spans is None else [s["text"] for s in spans.get(t["tag"], [])],
        )
        for i, t in enumerate(result.get("tags") or [], 1)
    ]


def below_threshold(result: dict) -> list[UnderThreshold]:
    """The scored tags of a result that are not among its final tags, best first."""
    kept = {t["tag"] for t in result.get("tags") or []}
    left = [t for t in scored_tags(result) if t["tag"] not in kept and t["confidence"] is not None]
    return [UnderThreshold(tag=t["tag"], confidence=t["confidence"]) for t in sorted(left, key=lambda t: -t["confidence"])]


def tag_result(result: dict, spans: dict[str, list[dict]] | None = None) -> TagResult:
    """The ``TagResult`` of a tagging graph's output."""
    route = result.get("route") or None
    return TagResult(
        content_id=result["content_id"],
        tags=scored_tag_list(result, spans),
        below_threshold=below_threshold(result),
        threshold=result.get("threshold"),
        mode=result.get("mode") or "multi",
        llm=bool((route or {}).get("llm")),
        route=Route(
            mode=route["mode"], llm=bool(route.get("llm")), reason=route.get("reason") or "", instructions=route.get("instructions")
        )
        if route
        else None,
        candidates_considered=len(result.get("candidates") or []),
        notes=list(result.get("notes") or []),
        review=result.get("review") or None,
    )
