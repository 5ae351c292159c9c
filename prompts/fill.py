"""The generation and judgment prompts, built from plain arguments.

Used by the pipeline's nodes and by the training sets alike, so a fine-tuned model sees at
training time exactly the prompts it answers at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from . import fill_template, fixed_head, load_prompt, render_prompt

TASKS = {
    "multi": "Choose every candidate tag that applies to the content (at most {n}), most relevant first.",
    "single": "Choose the one candidate tag that fits the content best.",
}


FENCE = re.compile(r"<(/?)\s*content\s*>", re.I)


def fence(text: str) -> str:
    """``text`` with any ``<content>`` or ``</content>`` written in it defused (``‹content›``), so the
    prompt's own fence is the only one: a ``</content>`` in the text would otherwise end the data
    early and let what follows read as the prompt's own words."""
    return FENCE.sub(lambda m: f"‹{m.group(1)}content›", text)


def clip(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut at a word boundary to about ``limit`` characters, and whether it was cut."""
    return (text, False) if len(text) <= limit else (text[:limit].rsplit(" ", 1)[0] + " …", True)


def format_candidates(candidates: list[dict]) -> str:
    """The candidate list the generator chooses from: name, description, recall evidence in words."""
    lines = []
    for c in candidates:
        evidence = []
        for ev in c["evidence"]:
            if ev["path"] == "C2C2T":
                evidence.append(f"on {len(ev['via'])} similar items")
            elif ev["path"] == "C2T":
                evidence.append(f"similar to the text ({ev['score']:.2f})")
            elif ev["path"] == "learned":
                evidence.append(f"predicted from the history ({ev['score']:.2f})")
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


def snippet_source(snippet: dict) -> str:
    """Where a knowledge snippet comes from: ``manual.pdf p. 3``, ``prices.csv row 4``, ``guide.md``, a URL."""
    if snippet.get("page") is not None:
        return f"{snippet['source']} p. {snippet['page']}"
    if snippet.get("row") is not None:
        return f"{snippet['source']} row {snippet['row']}"
    return snippet["source"]


def format_knowledge(snippets: list[dict], limit: int = 300) -> str:
    return "\n".join(f"[{snippet_source(s)}] {clip(s['text'], limit)[0]}" for s in snippets) or "(none)"


@dataclass(frozen=True)
class GenerationPrompt:
    system: str
    user: str
    template: Literal["generate_basic", "generate_retrieval"]
    content_cut: bool  # the content was longer than ``content_chars`` and was cut
    head: str = ""  # the fixed start of ``user`` (the template before its first placeholder)


def generation_prompt(
    text: str,
    candidates: list[dict],
    mode: str,
    tag_limit: int,
    content_chars: int,
    examples: list[dict] | None = None,
    knowledge: list[dict] | None = None,
) -> GenerationPrompt:
    """Template_r(c, Φ(c), R(c)) when examples or knowledge were retrieved, else Template_b(c, Φ(c))."""
    content, cut = clip(fence(text), content_chars)
    values = {"content": content, "candidates": format_candidates(candidates), "task": TASKS[mode].format(n=tag_limit)}
    if examples or knowledge:
        template = "generate_retrieval"
        values |= {"examples": format_examples(examples or []), "knowledge": format_knowledge(knowledge or [])}
    else:
        template = "generate_basic"
    return GenerationPrompt(load_prompt("system"), render_prompt(template, **values), template, cut, fixed_head(template))


def judgment_examples(examples: list[dict], candidates: list[str], limit: int = 2, chars: int = 200) -> str:
    """Yes/No demonstrations from retrieved samples: one right tag and one wrong tag each.

    A wrong tag is one marked incorrect for the sample, else a candidate the sample lacks.
    With the small base model these shots measurably separate right from wrong tags better
    than the bare question (see docs/results.md).
    """
    shots = []
    for ex in examples[:limit]:
        text = clip(ex["text"], chars)[0]
        if ex["tags"]:
            shots.append(f"Item: {text}\nTag: {ex['tags'][0]}\nRelevant: Yes")
        wrong = ex["incorrect_tags"][:1] or [t for t in candidates if t not in ex["tags"]][:1]
        if wrong:
            shots.append(f"Item: {text}\nTag: {wrong[0]}\nRelevant: No")
    return "\n\n".join(shots) or "(none)"


def judgment_head() -> str:
    """The fixed start of every judgment prompt (``LLMBackend.judge``'s ``head``)."""
    return fixed_head("judge")


def judgment_prompts(text: str, tags: list[str], descriptions: dict[str, str], content_chars: int, shots: str = "(none)") -> list[str]:
    """Template_c(c, t) for each tag, the content first so its KV cache is shared across tags."""
    content, _ = clip(fence(text), content_chars)
    template = load_prompt("judge")
    return [fill_template(template, examples=shots, content=content, tag=t, tag_description=descriptions.get(t) or t) for t in tags]
