"""Node 6 (optional, ``Context.review``): human review — the run waits with the proposed tags until a person decides.

The node ``interrupt``s with the proposed tags, the other likely candidates and the content; the
run (kept by the graph's checkpointer, in the knowledge base for the façade's runs) resumes with
``Command(resume={"accept": [...], "reject": [...], "add": [...]})``, validated by
``ReviewDecision``. The decision is a correction of the knowledge base, recorded through the one
path every correction takes (``Runtime.record``): accepted and added tags are right, rejected ones
wrong. That is the reviewed content's write-back; a proposed tag the decision does not mention is
left out of the verdict. Two nodes: ``review`` waits and validates (a decision that is not the
schema, names a tag outside the repository or no tag at all is answered by waiting again, the
interrupt now carrying an ``error`` that says why — LangGraph's pattern for validating human
input; the node writes nothing, since a resume replays it), then ``record_review`` writes.
"""

from __future__ import annotations

import time
from typing import Annotated

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from knowledge_base.errors import InputError, UnknownTagsError
from knowledge_base.loaders import valid_unicode

from ..context import Context, context_of
from ..runtime import runtime_for
from ..state import State

OTHER_CANDIDATES = 10  # besides the proposed tags, this many of recall's best are offered to the reviewer


def _tag_name(value: str) -> str:
    return valid_unicode(value, "a tag name")  # an InputError is a ValueError: pydantic reports it with the field


TagName = Annotated[str, AfterValidator(_tag_name)]


class ReviewDecision(BaseModel):
    """A person's decision on proposed tags: every list holds tag names from the repository. The
    one schema of a decision: the graph's review node and REST's ``POST /v1/review/{content_id}``
    body alike."""

    model_config = ConfigDict(extra="forbid")
    accept: list[TagName] = Field(default_factory=list, max_length=100, description="Proposed tags that are right.")
    reject: list[TagName] = Field(default_factory=list, max_length=100, description="Tags that are wrong for the content.")
    add: list[TagName] = Field(default_factory=list, max_length=100, description="Right tags that were not proposed.")

    @classmethod
    def parse(cls, value) -> "ReviewDecision":
        if isinstance(value, cls):
            return value
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the decision'}: {e['msg']}" for e in exc.errors())
            raise InputError(
                f'a review decision is {{"accept": [...], "reject": [...], "add": [...]}} (lists of tag names): {problems}'
            ) from None

    def verdict(self) -> tuple[list[str], list[str]]:
        """(correct, incorrect) for the knowledge base."""
        correct = list(dict.fromkeys(self.accept + self.add))
        return correct, [t for t in dict.fromkeys(self.reject) if t not in correct]


def review_request(state: State) -> dict:
    """What the run waits with: the value of its interrupt."""
    proposed = [t["tag"] for t in state.get("tags") or []]
    return {
        "content_id": state["content_id"],
        "text": state["text"],
        "proposed": state.get("tags") or [],
        "other_candidates": [c["tag"] for c in state.get("candidates") or [] if c["tag"] not in proposed][:OTHER_CANDIDATES],
        "resume_with": {"accept": ["proposed tags that are right"], "reject": ["tags that are wrong"], "add": ["right tags not proposed"]},
    }


def check_decision(raw, kb) -> ReviewDecision:
    """The decision, validated without writing anything: its shape, at least one tag, every tag in
    the repository (the review node's check, and the façade's before it resumes a run)."""
    decision = ReviewDecision.parse(raw)
    correct, incorrect = decision.verdict()
    if not correct and not incorrect:
        raise InputError("a review decision needs at least one tag to accept, reject or add")
    unknown = sorted({t for t in (*correct, *incorrect) if not kb.has_tag(t)})
    if unknown:
        raise UnknownTagsError(f"unknown tags (not in the tag repository): {', '.join(unknown)}", unknown)
    return decision


def review_tags(state: State, runtime: Runtime[Context]) -> dict:
    """Wait for a valid decision. Nothing is written here: LangGraph re-runs this node from its
    start on every resume, replaying the earlier decisions, so it must have no side effects."""
    ctx = context_of(runtime)
    kb = runtime_for(ctx.kb_dir).kb
    request = review_request(state)
    while True:  # a decision that cannot be used is answered by waiting again, with the reason
        raw = interrupt(request)
        try:
            return {"review_decision": check_decision(raw, kb).model_dump()}
        except InputError as exc:
            request = {**request, "error": str(exc)}


def record_review(state: State, runtime: Runtime[Context]) -> dict:
    """Record the decision through the one write every correction takes (``Runtime.record``). A
    failure here (a locked or failing store) fails the run and leaves it at this step; the next
    decision replaces this one (``agent.tagging.review``) and the step runs again."""
    started = time.perf_counter()
    ctx = context_of(runtime)
    decision = ReviewDecision.parse(state["review_decision"])
    correct, incorrect = decision.verdict()
    recorded = runtime_for(ctx.kb_dir).record(state["text"], correct, incorrect, cid=state["content_id"])
    proposed = {t["tag"]: t for t in state.get("tags") or []}
    tags = [proposed[t] for t in correct if t in proposed]
    tags += [{"tag": t, "confidence": None, "origin": "review", "paths": [], "description": ""} for t in correct if t not in proposed]
    return {
        "tags": [{**t, "rank": i} for i, t in enumerate(tags, 1)],
        "review": {
            "status": "reviewed",
            "accepted": list(decision.accept),
            "rejected": list(decision.reject),
            "added": list(decision.add),
            "sample": recorded["id"],
            "samples": recorded["samples"],
            "retraining": recorded["retraining"],
        },
        "notes": [f"review: {len(correct)} right and {len(incorrect)} wrong tags recorded as sample {recorded['id']}"],
        "timings": {"review": round(time.perf_counter() - started, 4)},
    }
