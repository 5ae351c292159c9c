"""Node 4: knowledge-enhanced tag generation — the LLM selects tags from the candidate set.

Template_r (examples and knowledge) when any were retrieved, Template_b otherwise. Decoding is
constrained to candidate names and the output is validated again. Candidates that the history
strongly supports (a C2C2T vote share of at least ``history_keep``) are kept even when the LLM
skips them, and marked as such: a small model must not throw away what the history shows.
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from prompts import load_prompt, render_prompt

from ..context import Context
from ..resources import backend_for
from ..state import State

TASKS = {
    "multi": "Choose every candidate tag that applies to the content (at most {n}), most relevant first.",
    "single": "Choose the one candidate tag that fits the content best.",
}


def clip(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit].rsplit(" ", 1)[0] + " …", True)


def format_candidates(candidates: list[dict]) -> str:
    lines = []
    for c in candidates:
        evidence = []
        for ev in c["evidence"]:
            if ev["path"] == "C2C2T":
                evidence.append(f"on {len(ev['via'])} similar items")
            elif ev["path"] == "C2T":
                evidence.append(f"similar to the text ({ev['score']:.2f})")
        desc = f": {clip(c['description'], 100)[0]}" if c.get("description") else ""
        lines.append(f"- {c['tag']}{desc}" + (f" [{'; '.join(evidence)}]" if evidence else ""))
    return "\n".join(lines)


def format_examples(examples: list[dict], limit: int = 300) -> str:
    blocks = []
    for i, ex in enumerate(examples, 1):
        text, _ = clip(ex["text"], limit)
        block = f"Example {i}: {text}\n  right tags: {', '.join(ex['tags']) or '(none)'}"
        if ex["incorrect_tags"]:
            block += f"\n  wrong tags: {', '.join(ex['incorrect_tags'])}"
        blocks.append(block)
    return "\n".join(blocks) or "(none)"


def format_knowledge(snippets: list[dict], limit: int = 300) -> str:
    return "\n".join(f"[{s['source']}] {clip(s['text'], limit)[0]}" for s in snippets) or "(none)"


def build_generation_prompt(state: State, ctx: Context) -> tuple[str, str, bool]:
    content, cut = clip(state["text"], ctx.content_chars)
    values = {
        "content": content,
        "candidates": format_candidates(state["candidates"]),
        "task": TASKS[ctx.mode].format(n=ctx.tag_limit),
    }
    examples, knowledge = state.get("examples") or [], state.get("knowledge") or []
    if examples or knowledge:
        template = "generate_retrieval"
        values |= {"examples": format_examples(examples), "knowledge": format_knowledge(knowledge)}
    else:
        template = "generate_basic"
    return load_prompt("system"), render_prompt(template, **values), cut


def history_supported(candidates: list[dict], share: float | None) -> list[str]:
    if share is None:
        return []
    return [
        c["tag"]
        for c in candidates
        if any(ev["path"] == "C2C2T" and ev["score"] >= share for ev in c["evidence"])
    ]


def generate_tags(state: State, runtime: Runtime[Context]) -> dict:
    started = time.perf_counter()
    ctx = runtime.context
    candidates = state.get("candidates") or []
    notes: list[str] = []
    if not candidates:
        return {"selection": {"tags": [], "raw": "", "prompt_tokens": 0, "completion_tokens": 0, "rejected": [], "from_history": []},
                "timings": {"generate": round(time.perf_counter() - started, 4)}}
    system, user, cut = build_generation_prompt(state, ctx)
    if cut:
        notes.append(f"the content was cut to {ctx.content_chars} characters in the prompts")
    backend = backend_for(ctx)
    gen = backend.select_tags(system, user, [c["tag"] for c in candidates], ctx.tag_limit)
    if gen.rejected:
        notes.append(f"the generator named {len(gen.rejected)} tags outside the candidate set; they were dropped")
    selected = list(gen.tags)
    from_history = [t for t in history_supported(candidates, ctx.history_keep) if t not in selected]
    if ctx.mode == "single":
        if not selected and candidates:
            selected = [from_history[0] if from_history else candidates[0]["tag"]]
            notes.append("the generator chose no tag; the top-ranked candidate was used")
        from_history = []
    else:
        selected = (selected + from_history)[: max(ctx.tag_limit, len(selected))]
    return {
        "selection": {
            "tags": selected,
            "raw": gen.raw,
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
            "rejected": gen.rejected,
            "from_history": [t for t in from_history if t in selected],
            "template": "generate_retrieval" if (state.get("examples") or state.get("knowledge")) else "generate_basic",
            "backend": backend.describe(),
        },
        "notes": notes,
        "timings": {"generate": round(time.perf_counter() - started, 4)},
    }
