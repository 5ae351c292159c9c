"""Node 6 (optional, ``Context.review``): human review — the run waits with the proposed tags until a person decides.

The node ``interrupt``s with the proposed tags, the other likely candidates and the content; the
run (kept by the graph's checkpointer, in the knowledge base for the façade's runs) resumes with
``Command(resume={"accept": [...], "reject": [...], "add": [...]})``, validated by
``ReviewDecision``. The decision is a correction of the knowledge base, recorded through the one
path every correction takes (``Runtime.learn``): accepted and added tags are right, rejected ones
wrong. That is the reviewed content's write-back; a proposed tag the decision does not mention is
left out of the verdict. A decision that cannot be recorded (not the schema, a tag outside the
repository, no tag at all) is answered by waiting again, the interrupt now carrying an ``error``
that says why (LangGraph's pattern for validating human input).
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knowledge_base.errors import InputError

from ..context import Context, context_of
from ..runtime import runtime_for
from ..state import State

OTHER_CANDIDATES = 10  # besides the proposed tags, this many of recall's best are offered to the reviewer


class ReviewDecision(BaseModel):
    """A person's decision on proposed tags: every list holds tag names from the repository."""

    model_config = ConfigDict(extra="forbid")
    accept: list[str] = Field(default_factory=list, max_length=100, description="Proposed tags that are right.")
    reject: list[str] = Field(default_factory=list, max_length=100, description="Tags that are wrong for the content.")
    add: list[str] = Field(default_factory=list, max_length=100, description="Right tags that were not proposed.")

    @classmethod
    def parse(cls, value) -> "ReviewDecision":
        if isinstance(value, cls):
            return value
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the decision'}: {e['msg']}" for e in exc.errors())
            raise InputError(f"a review decision is {{\"accept\": [...], \"reject\": [...], \"add\": [...]}} (lists of tag names): {problems}") from None

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


def review_tags(state: State, runtime: Runtime[Context]) -> dict:
    ctx = context_of(runtime)
    request = review_request(state)
    while True:  # a decision that cannot be recorded is answered by waiting again, with the reason
        raw = interrupt(request)
        started = time.perf_counter()
        try:
            decision = ReviewDecision.parse(raw)
            correct, incorrect = decision.verdict()
            recorded = runtime_for(ctx.kb_dir).learn(state["text"], correct, incorrect, cid=state["content_id"])
            break
        except InputError as exc:
            request = {**request, "error": str(exc)}
    proposed = {t["tag"]: t for t in state.get("tags") or []}
    tags = [proposed[t] for t in decision.accept if t in proposed]
    tags += [{"tag": t, "confidence": None, "origin": "review", "paths": [], "description": ""} for t in decision.add if t not in proposed]
    return {
        "tags": [{**t, "rank": i} for i, t in enumerate(tags, 1)],
        "review": {"status": "reviewed", "accepted": list(decision.accept), "rejected": list(decision.reject), "added": list(decision.add),
                   "sample": recorded["id"], "samples": recorded["samples"]},
        "notes": [f"review: {len(correct)} right and {len(incorrect)} wrong tags recorded as sample {recorded['id']}"],
        "timings": {"review": round(time.perf_counter() - started, 4)},
    }
