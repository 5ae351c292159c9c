"""The tagging graph's state: a clean public input, the working state, and the public output.

Everything in the state is plain JSON (dicts, lists, strings, numbers), so it streams to the
app, serialises for LangGraph's server, and can be logged or stored as it is.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

# typing_extensions' TypedDict, not typing's: on Python < 3.12 LangGraph's server cannot read
# typing.TypedDict schemas and leaves the graph out of its MCP tool list
from typing_extensions import NotRequired, TypedDict


def merge_dicts(left: dict | None, right: dict | None) -> dict:
    return {**(left or {}), **(right or {})}


class InputState(TypedDict):
    content: str  # the text to tag
    title: NotRequired[str | None]  # optional title, prepended to the content
    content_id: NotRequired[str | None]  # stable id; its own history entry is never used as evidence
    metadata: NotRequired[dict[str, Any]]  # passed through to the output untouched


class OutputState(TypedDict):
    text: str  # the cleaned content the pipeline worked on (title + content); a correction uses it as is
    content_id: str
    tags: list[dict]  # final tags: tag, confidence, rank, description, paths, origin
    candidates: list[dict]  # Φ(c) with provenance (path, score, via), best first
    recall_scores: str  # what a candidate's score is: "probability" (the recall ranker's P(right)) or "evidence" (summed path scores)
    recall_fit: dict[str, float]  # how well the content fits the knowledge base: nearest history item and tag, in_domain (its probability)
    similar_contents: list[dict]  # history contents the C2C2T path walked through
    examples: list[dict]  # retrieved samples with correct and incorrect tags
    knowledge: list[dict]  # snippets with their sources
    selection: dict  # the generator's raw output and what was kept
    route: dict  # whether the LLM steps ran for this content and why: {"mode": auto|full|fast, "llm": bool, "reason"} (agent.routing)
    threshold: float  # the confidence threshold the final tags were cut at
    mode: str  # multi (several tags) or single (exactly one), as the run asked
    tree: dict  # with a tag tree: {"parents": child → parent for the scored tags' ancestors, "output": the rule the answer follows}
    judgments: list[
        dict
    ]  # one per scored tag: origin, the fused confidence and its evidence features; p_yes and the Yes/No logits when judged
    review: dict  # with Context.review: "pending" and the proposed tags until a person decides, then what was decided
    notes: list[str]  # what a person should know (truncation, fallbacks, unreachable services)
    timings: dict[str, float]  # seconds per node
    metadata: dict[str, Any]


class State(InputState, total=False):
    text: str  # the cleaned content the nodes work on (title + content)
    content_id: str
    cache_keys: dict[str, str]  # per cached node, the key of its result for this run (agent.nodes.prepare)
    tags: list[dict]
    candidates: list[dict]
    recall_scores: str
    recall_fit: dict[str, float]
    similar_contents: list[dict]
    examples: list[dict]
    knowledge: list[dict]
    selection: dict
    route: dict
    threshold: float
    mode: str
    tree: dict
    judgments: list[dict]
    review: dict
    review_decision: dict  # the validated decision between the review and record_review nodes
    notes: Annotated[list[str], operator.add]
    timings: Annotated[dict[str, float], merge_dicts]
