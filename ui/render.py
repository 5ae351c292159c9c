"""What the app shows, as plain strings: one chat message per pipeline step, confidence bars,
explanations, knowledge-base statistics and a picture of a graph neighbourhood (inline SVG).

Chat messages are dicts in Gradio's messages format — ``{"role", "content", "metadata"}``, where
``metadata = {"title", "status", "duration"}`` makes a collapsible step (``gr.ChatMessage``'s
fields) — so they are built and tested without Gradio.
"""

from __future__ import annotations

import html

import networkx as nx

from agent.confidence import confidence_of, scored_tags
from agent.explanation import departure, evidence_parts
from prompts.fill import snippet_source

LOW_MARGIN = 0.1  # a kept tag whose confidence is within this of the threshold is marked "low confidence"
LEANS_NO = 0.5  # ... and so is one the judge leans against (P(Yes) under 0.5), whatever the threshold
SNIPPET = 280

PENDING_TITLES = {
    "recall": "Recalling candidate tags (graph meta-paths C2T and C2C2T)…",
    "examples": "Retrieving similar annotated examples…",
    "knowledge": "Retrieving domain knowledge…",
    "generate": "The LLM is selecting tags from the candidates…",
    "calibrate": "Judging every selected tag (P(Yes))…",
    "write_back": "Writing the tags back to the knowledge base…",
    "review": "Waiting for a review of the proposed tags…",
}

COMMAND_HINT = (
    "Reply `accept`, `accept TAG`, `reject TAG`, `add TAG`, `explain TAG` or `undo` — feedback is "
    "written to the knowledge base at once. Move the threshold slider to re-filter without re-running."
)


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell or list item."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def plural(n: int, word: str) -> str:
    """``1 tag``, ``2 tags``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def clip(text: str, limit: int = SNIPPET) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def is_low(confidence: float | None, threshold: float) -> bool:
    """A kept tag worth a second look: close to the threshold, or one the judge leans against."""
    return confidence is not None and (confidence < threshold + LOW_MARGIN or confidence < LEANS_NO)


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# ---- chat messages --------------------------------------------------------------------------
def user_message(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant_message(text: str) -> dict:
    return {"role": "assistant", "content": text}


def error_message(text: str) -> dict:
    return {"role": "assistant", "content": f"⚠️ **{_md(text)}**"}


def pending_message(node: str) -> dict:
    return {"role": "assistant", "content": "", "metadata": {"title": PENDING_TITLES.get(node, f"{node}…"), "status": "pending"}}


def waiting_message(status: str) -> dict:
    """In place of the first step while the app is still loading what tagging needs."""
    return {"role": "assistant", "content": "", "metadata": {"title": status, "status": "pending"}}


def judging_message(judgments: list[dict]) -> dict:
    """The calibrate step while it runs: each judgment as soon as it is known (streamed by the graph)."""
    rows = [
        f"- `{_md(j['tag'])}` ({j.get('origin', 'llm')}): "
        + (f"P(Yes) {j['p_yes']:.3f}" if j.get("p_yes") is not None else "not judged")
        + (f" → confidence {j['confidence']:.3f}" if j.get("confidence") is not None else "")
        for j in judgments
    ]
    title = f"Judging the likely tags (P(Yes))… {len(judgments)} done"
    return {"role": "assistant", "content": "\n".join(rows), "metadata": {"title": title, "status": "pending"}}


def is_pending(message: dict) -> bool:
    meta = message.get("metadata") if isinstance(message, dict) else None
    return bool(meta) and meta.get("status") == "pending"


def failed_step(message: dict, error: str) -> dict:
    title = (message.get("metadata") or {}).get("title", "step").rstrip("…")
    return {"role": "assistant", "content": f"This step stopped: {_md(error)}", "metadata": {"title": f"✗ {title}", "status": "done"}}


def render_recall(changes: dict) -> tuple[str, str]:
    candidates = changes.get("candidates") or []
    similar = changes.get("similar_contents") or []
    counts: dict[str, int] = {}
    for c in candidates:
        for p in c.get("paths") or []:
            counts[p] = counts.get(p, 0) + 1
    paths = " · ".join(f"{p} {counts[p]}" for p in ("C2C2T", "C2T", "learned", "match") if p in counts)
    title = f"Candidates · {plural(len(candidates), 'tag')}" + (f" ({paths})" if paths else "")
    if not candidates:
        return title, "No candidate tag was found. " + " ".join(changes.get("notes") or [])
    rows = "".join(
        f'<tr><td style="font-family:monospace;word-break:break-word">{_esc(c["tag"])}</td>'
        f'<td style="white-space:nowrap;text-align:right">{c["score"]:.2f}</td>'
        f"<td>{_esc('; '.join(evidence_parts(c, detail=True, via_limit=3)))}</td></tr>"
        for c in candidates
    )
    lines = [
        '<table class="l4t-candidates"><thead><tr><th>candidate tag</th><th style="white-space:nowrap">score</th><th>found by</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    ]
    if similar:
        lines += ["", "**Similar items the C2C2T path walks through:**"]
        for s in similar[:5]:
            tags = ", ".join(f"`{_md(t)}`" for t in s.get("tags", [])[:6]) or "(no tags)"
            lines.append(f"- **{_md(s['id'])}** ({s['similarity']:.2f}): {_md(clip(s['snippet'], 140))} — {tags}")
    lines += [f"> {_md(n)}" for n in changes.get("notes") or []]
    return title, "\n".join(lines)


def render_examples(changes: dict) -> tuple[str, str]:
    examples = changes.get("examples") or []
    title = f"Examples · {len(examples)} similar annotated samples"
    if not examples:
        return title, "No examples (turned off, or no annotated sample in the knowledge base)."
    blocks = []
    for ex in examples:
        right = ", ".join(f"`{_md(t)}`" for t in ex["tags"]) or "(none)"
        block = f"**{_md(ex['id'])}** · similarity {ex['similarity']:.2f}\n> {_md(clip(ex['text']))}\n\n✓ correct: {right}"
        if ex.get("incorrect_tags"):
            block += "  \n✗ incorrect: " + ", ".join(f"`{_md(t)}`" for t in ex["incorrect_tags"])
        blocks.append(block)
    return title, "\n\n".join(blocks)


def render_knowledge(changes: dict) -> tuple[str, str]:
    snippets = changes.get("knowledge") or []
    title = f"Knowledge · {plural(len(snippets), 'snippet')}"
    notes = [f"> {_md(n)}" for n in changes.get("notes") or []]
    if not snippets:
        return title, "\n".join(["No knowledge snippet was similar enough (or retrieval is turned off).", *notes])
    blocks = []
    for s in snippets:
        kind = "web" if s.get("kind") == "web" else "document"
        sim = f", similarity {s['similarity']:.2f}" if s.get("similarity") is not None else ""
        part = f", passage {s['index'] + 1}" if s.get("index") is not None else ""
        blocks.append(f"**{_md(snippet_source(s))}** ({kind}{part}{sim})\n> {_md(clip(s['text'], 400))}")
    return title, "\n\n".join([*blocks, *notes])


def render_selection(changes: dict) -> tuple[str, str]:
    sel = changes.get("selection") or {}
    if sel.get("skipped"):
        route = changes.get("route") or {}
        if route.get("mode") == "auto" and not route.get("llm"):
            return (
                "Generator · not needed",
                f"The LLM steps did not run for this text (language model: auto): {_md(route.get('reason') or '')}. Recall's "
                "candidates go straight to the confidence step; choose **full** under Settings to run them anyway.",
            )
        return "Generator · off", "Generation is off: recall's top candidates go straight to the confidence step."
    tags = sel.get("tags") or []
    history = sel.get("from_history") or []
    title = f"Generator · selected {plural(len(tags), 'tag')}" + (f" ({len(history)} from history)" if history else "")
    lines = [f"Raw output: `{_md(sel.get('raw') or '(nothing)')}`", ""]
    llm = [t for t in tags if t not in history]
    lines.append("Chosen by the LLM: " + (", ".join(f"`{_md(t)}`" for t in llm) or "(none)"))
    if history:
        lines.append(
            "  \nKept from history (the LLM skipped them, but most similar items carry them): " + ", ".join(f"`{_md(t)}`" for t in history)
        )
    if sel.get("rejected"):
        lines.append("  \nNamed outside the candidate set (dropped): " + ", ".join(f"`{_md(t)}`" for t in sel["rejected"]))
    details = [
        sel.get("backend"),
        sel.get("template"),
        f"{sel.get('prompt_tokens', 0)} prompt + {sel.get('completion_tokens', 0)} output tokens" if sel.get("prompt_tokens") else None,
    ]
    if any(details):
        lines += ["", "<sub>" + " · ".join(_esc(d) for d in details if d) + "</sub>"]
    lines += [f"> {_md(n)}" for n in changes.get("notes") or []]
    return title, "\n".join(lines)


def render_calibration(changes: dict, threshold: float) -> tuple[str, str]:
    judgments = changes.get("judgments") or []
    kept = {t["tag"] for t in changes.get("tags") or []}
    if not judgments or all(confidence_of(j) is None for j in judgments):
        return "Confidence · none", "No judge and no recall ranker: the generator's order is kept, with no confidence."
    judged = [j for j in judgments if j.get("p_yes") is not None]
    fused = any(confidence_of(j) != j.get("p_yes") for j in judgments)
    title = f"Confidence · {'fused ' if fused else 'P(Yes) '}for {plural(len(judgments), 'tag')}, {len(kept)} kept at ≥ {threshold:.2f}"
    rows = [
        {"tag": j["tag"], "confidence": confidence_of(j), "kept": j["tag"] in kept}
        for j in sorted(judgments, key=lambda j: -confidence_of(j))
    ]
    table = ["", "| tag | origin | P(Yes) | confidence |", "|---|---|---|---|"]
    table += [
        f"| `{_md(j['tag'])}` | {j.get('origin', 'llm')} | {'' if j.get('p_yes') is None else format(j['p_yes'], '.3f')} | {confidence_of(j):.3f} |"
        for j in judgments
    ]
    if not judged:
        table.append("\nThe judge was off: each confidence is recall's own P(right).")
    by_tag = {c["tag"]: c for c in changes.get("candidates") or []}
    moved = [(j["tag"], m) for j in judgments if (m := departure(j, by_tag.get(j["tag"]), changes.get("recall_fit")))]
    if moved:
        table += ["", "Where the confidence departs from the judge's P(Yes) by more than 0.3:"]
        table += [f"- `{_md(tag)}`: {_md(m)}" for tag, m in moved]
    notes = [f"> {_md(n)}" for n in changes.get("notes") or []]
    return title, "\n".join([confidence_bars(rows, threshold), *table, *notes])


def render_write_back(changes: dict) -> tuple[str, str]:
    return "Write-back", "\n".join(changes.get("notes") or ["Nothing was written back."])


def step_message(node: str, changes: dict, threshold: float, duration: float | None = None) -> dict:
    """The finished, collapsible chat message for one node's update."""
    renderers = {
        "recall": render_recall,
        "examples": render_examples,
        "knowledge": render_knowledge,
        "generate": render_selection,
        "write_back": render_write_back,
    }
    if node == "calibrate":
        title, body = render_calibration(changes, threshold)
    elif node in renderers:
        title, body = renderers[node](changes)
    else:
        title, body = node, f"```\n{changes}\n```"
    meta = {"title": title, "status": "done"}
    if duration is not None:
        meta["duration"] = round(float(duration), 2)
    return {"role": "assistant", "content": body, "metadata": meta}


# ---- tags and confidence ----------------------------------------------------------------------
def tag_rows(result: dict, shown: list[dict], verdict: dict | None = None) -> list[dict]:
    """Rows for the bars: the tags shown at the threshold, then the generated tags under it."""
    verdict = verdict or {}
    correct, incorrect = set(verdict.get("correct", [])), set(verdict.get("incorrect", []))
    shown_names = {t["tag"] for t in shown}
    from_history = set((result.get("selection") or {}).get("from_history") or [])
    scored = {s["tag"]: s["confidence"] for s in scored_tags(result)}  # a tag a person rejected for this text is not listed
    rows = [
        {
            "tag": t["tag"],
            "confidence": t.get("confidence"),
            "kept": True,
            "history": t["tag"] in from_history,
            "path": t.get("path") or [],
            "ancestor": t.get("origin") == "hierarchy",
        }
        for t in shown
    ]
    dropped = [{"tag": t, "confidence": c, "kept": False, "history": t in from_history} for t, c in scored.items() if t not in shown_names]
    rows += sorted(dropped, key=lambda r: -(r["confidence"] or 0.0))
    listed = {r["tag"] for r in rows}
    rows += [{"tag": t, "confidence": None, "kept": False, "history": False, "added": True} for t in correct if t not in listed]
    rows += [{"tag": t, "confidence": None, "kept": False, "history": False, "extra": True} for t in incorrect if t not in listed]
    for r in rows:
        r["verdict"] = "correct" if r["tag"] in correct else "incorrect" if r["tag"] in incorrect else None
    return rows


def confidence_bars(rows: list[dict], threshold: float) -> str:
    """HTML bars, one per tag: kept tags green (amber when close to the threshold), tags under
    the threshold grey, with the threshold drawn as a line; badges for history, low confidence
    and the person's verdict."""
    out = ['<div class="l4t-bars" style="margin:4px 0">']
    mark = round(threshold * 100)
    for r in rows:
        conf = r.get("confidence")
        low = r["kept"] and is_low(conf, threshold) and r.get("verdict") is None  # a person's verdict settles it
        color = "#9ca3af" if not r["kept"] or r.get("verdict") == "incorrect" else "#d97706" if low else "#16a34a"
        width = 0 if conf is None else max(0, min(100, round(conf * 100)))
        badges = []
        if r.get("added"):
            badges.append(("added by you", "#2563eb"))
        elif not r["kept"] and not r.get("extra") and r.get("verdict") != "correct":
            over_limit = conf is not None and conf >= threshold  # scored above the threshold, but past the tag limit
            badges.append(("over the tag limit" if over_limit else "below threshold", "#6b7280"))
        elif low:
            badges.append(("low confidence", "#b45309"))
        if r.get("history"):
            badges.append(("from history", "#7c3aed"))
        if r.get("ancestor"):
            badges.append(("ancestor of a kept tag", "#0f766e"))
        if len(r.get("path") or []) > 1:  # its place in the tag tree
            badges.append(("in " + " › ".join(r["path"][:-1]), "#0f766e"))
        if r.get("verdict") == "correct":
            badges.append(("✓ accepted", "#15803d"))
        elif r.get("verdict") == "incorrect":
            badges.append(("✗ rejected", "#b91c1c"))
        badge_html = "".join(
            f'<span style="font-size:0.75em;padding:1px 6px;border-radius:8px;border:1px solid {c};color:{c};white-space:nowrap">{_esc(b)}</span>'
            for b, c in badges
        )
        name_style = "font-family:monospace;overflow:hidden;text-overflow:ellipsis;white-space:nowrap" + (
            ";text-decoration:line-through" if r.get("verdict") == "incorrect" else ""
        )
        state = "kept" if r["kept"] else "dropped"
        out.append(  # one grid row per tag: every bar starts at the same place, so the threshold marks line up
            f'<div class="l4t-tag" data-tag="{_esc(r["tag"])}" data-state="{state}" '
            f'style="display:grid;grid-template-columns:minmax(6em,13em) 140px 3.2em minmax(0,1fr);align-items:center;column-gap:8px;margin:3px 0">'
            f'<span style="{name_style}" title="{_esc(r["tag"])}">{_esc(r["tag"])}</span>'
            f'<span style="position:relative;display:inline-block;width:140px;height:10px;background:#e5e7eb;border-radius:5px">'
            f'<span style="position:absolute;left:0;top:0;height:10px;width:{width}%;background:{color};border-radius:5px"></span>'
            f'<span title="threshold {threshold:.2f}" style="position:absolute;top:-3px;height:16px;left:{mark}%;border-left:2px solid #111"></span>'
            f'</span><span style="font-family:monospace">{fmt(conf)}</span>'
            f'<span style="display:flex;flex-wrap:wrap;gap:2px;min-width:0">{badge_html}</span></div>'
        )
    out.append(
        f'<div class="l4t-legend" style="font-size:0.75em;color:#6b7280;margin-top:2px">the black mark on each bar is the '
        f"threshold {threshold:.2f}: tags whose bar reaches it are kept</div>"
    )
    out.append("</div>")
    return "".join(out)


def final_message(result: dict, shown: list[dict], threshold: float) -> dict:
    rows = tag_rows(result, shown)
    if shown:
        head = f"**Tags** ({plural(len(shown), 'tag')} at confidence ≥ {threshold:.2f})"
    elif result.get("selection", {}).get("tags"):
        head = f"**No tag reaches the threshold {threshold:.2f}** — lower it with the slider to see the generated tags."
    else:
        head = "**No tag** could be proposed for this text."
    parts = [head, "", confidence_bars(rows, threshold) if rows else ""]
    notes = result.get("notes") or []
    if notes:
        parts += ["", *[f"> {_md(n)}" for n in notes]]
    total = sum((result.get("timings") or {}).values())
    parts += ["", f"<sub>{_esc(result.get('content_id', ''))} · {total:.1f}s</sub>", "", COMMAND_HINT]
    return assistant_message("\n".join(parts))


def result_panel(result: dict | None, shown: list[dict] | None, threshold: float, verdict: dict | None = None) -> str:
    """The side panel: the current result's tags at the slider's threshold, with verdict badges."""
    if not result:
        return '<div id="l4t-panel" data-count="0"><p style="color:#6b7280">Tag a text to see its tags here.</p></div>'
    shown = shown or []
    rows = tag_rows(result, shown, verdict)
    rejected = set((verdict or {}).get("incorrect", []))
    added = [t for t in (verdict or {}).get("correct", []) if t not in {s["tag"] for s in shown}]
    kept = [t for t in shown if t["tag"] not in rejected]
    if kept or added:  # what the person would store now: the kept tags they did not reject, and the ones they accepted or added
        head = f"<b>{plural(len(kept), 'tag')}</b> at confidence ≥ {threshold:.2f}" + (f" + {len(added)} accepted by you" if added else "")
        if rejected & {t["tag"] for t in shown}:
            head += f" ({len(rejected & {t['tag'] for t in shown})} rejected)"
    else:
        head = f"<b>No tag</b> reaches the threshold {threshold:.2f}"
    snippet = _esc(clip(result.get("text", ""), 160))
    return (
        f'<div id="l4t-panel" data-count="{len(kept) + len(added)}">'
        f'<div style="color:#6b7280;font-size:0.85em;margin-bottom:6px">{snippet}</div>'
        f"<div>{head}</div>{confidence_bars(rows, threshold) if rows else ''}</div>"
    )


def working_panel(text: str) -> str:
    """The side panel while a text is being tagged, until its first tags are known."""
    return (
        f'<div id="l4t-panel" data-count="0"><div style="color:#6b7280;font-size:0.85em;margin-bottom:6px">{_esc(clip(text, 160))}</div>'
        '<p style="color:#6b7280">Finding its tags… the first ones appear here when recall is done.</p></div>'
    )


def highlighted(text: str, spans: list[dict], limit: int = 600) -> str:
    """The text (HTML-escaped, cut to about ``limit`` characters around the spans) with its spans in ``<mark>``."""
    if not spans:
        return _esc(clip(text, limit))
    first, last = spans[0]["start"], spans[-1]["end"]
    lo = max(0, min(first - 80, last - limit))
    hi = min(len(text), max(last + 80, lo + limit))
    out, at = [], lo
    for s in spans:
        if s["end"] <= lo or s["start"] >= hi:
            continue
        out += [_esc(text[at : s["start"]]), f"<mark>{_esc(text[s['start'] : s['end']])}</mark>"]
        at = s["end"]
    out.append(_esc(text[at:hi]))
    return ("…" if lo > 0 else "") + "".join(out).replace("\n", " ") + ("…" if hi < len(text) else "")


def explanation_markdown(
    explained: dict, threshold: float, verdict: dict | None = None, spans: list[dict] | None = None, text: str | None = None
) -> str:
    """Why a tag was, or was not, proposed: ``agent.tagging.explain``'s facts, in Markdown; with
    ``spans`` (``tagging.supporting_spans``) of ``text``, the words behind it highlighted."""
    tag = explained["tag"]
    lines = [f"**Why `{_md(tag)}`?**", ""]
    if explained.get("path"):
        lines.append(f"- **In the tag tree:** {' › '.join(_md(p) for p in explained['path'])}")
    cand = explained["candidate"]
    if cand is None:
        lines.append(
            "- **Recall:** not among the candidates, so the LLM could not choose it. "
            "Use `add TAG` if it belongs here: the next similar text will reach it through C2C2T."
        )
    else:
        if cand["description"]:
            lines.append(f"- **Meaning:** {_md(cand['description'])}")
        evidence = "; ".join(_md(e) for e in cand["evidence"])
        lines.append(f"- **Recall:** candidate {cand['rank']} of {explained['candidates']}, score {cand['score']:.2f} — {evidence}")
        generation = explained["generation"] or {}
        lines.append(
            {
                "history": "- **Generation:** the LLM skipped it, but it was kept because most similar history items carry it.",
                "chosen": f"- **Generation:** the LLM chose it (position {generation.get('position')}).",
            }.get(generation.get("kind"), "- **Generation:** the LLM did not choose it.")
        )
    j = explained["judgment"]
    if j and j["confidence"] is not None:
        kept = "kept" if j["confidence"] >= threshold else "dropped"
        if j["p_yes"] is None:
            lines.append(
                f"- **Confidence:** {j['confidence']:.3f} from recall's evidence (the judge did not run) → {kept} at threshold {threshold:.2f}"
            )
        else:
            learned = f", fused to {j['confidence']:.3f} with the recall evidence" if j["learned"] else ""
            lines.append(
                f"- **Confidence:** P(Yes) = {j['p_yes']:.3f} (logits Yes {j['logit_yes']:.2f} / No {j['logit_no']:.2f}){learned} → {kept} at threshold {threshold:.2f}"
            )
            if j.get("moved_by"):
                lines.append(f"- **Why the confidence differs from the judge:** {_md(j['moved_by'])}")
    for e in explained["examples"]:
        lines.append(f"- **Example:** {_md(e['id'])} (similarity {e['similarity']:.2f}) has it marked {e['marked']}")
    if spans and text:
        lines.append("- **Words behind it** (removing them lowers recall's score for it the most): " + highlighted(text, spans))
    elif spans is not None and cand is not None:
        lines.append("- **Words behind it:** no part of the text alone moves recall's score for it")
    verdict = verdict or {}
    if tag in verdict.get("correct", []):
        lines.append("- **Your feedback:** accepted")
    elif tag in verdict.get("incorrect", []):
        lines.append("- **Your feedback:** rejected")
    return "\n".join(lines)


# ---- knowledge base ---------------------------------------------------------------------------
def stats_markdown(stats: dict) -> str:
    graph = stats.get("graph") or {}
    recall = stats.get("recall") or {}
    rows = [
        ("tags", f"{stats.get('tags', 0)} ({stats.get('tags_with_description', 0)} with a description)"),
        ("annotated samples", stats.get("samples", 0)),
        ("contents in the graph", stats.get("contents", 0)),
        ("document passages", stats.get("document_passages", 0)),
        (
            "graph",
            f"{graph.get('tag_nodes', 0)} tag + {graph.get('content_nodes', 0)} content nodes, "
            f"{graph.get('deterministic_edges', 0)} deterministic edges; similarity edges are asked of the vector index",
        ),
        ("recall", ", ".join(f"{k} {v}" for k, v in recall.items())),
        ("encoder", stats.get("encoder", "")),
        ("store", f"{stats.get('store', '')} in {stats.get('directory', '')}"),
    ]
    return "\n".join(["| holds | |", "|---|---|", *[f"| {k} | {_md(v)} |" for k, v in rows]])


def _node_label(node: str, limit: int = 28) -> str:
    name = node[2:] if node[:2] in ("t:", "c:") else node
    return name if len(name) <= limit else name[: limit - 1] + "…"


def neighbourhood_svg(g: nx.Graph, center: str, width: int = 600, row: int = 24) -> str:
    """An SVG picture of a node's neighbourhood, in columns by hops from the chosen node (ringed,
    on the left), one row per node so no label overlaps another: tags amber, contents blue,
    deterministic edges solid, similarity edges dashed (thicker = more similar); an edge between
    two nodes of one column is drawn as an arc to the left of it."""
    if g.number_of_nodes() == 0 or center not in g:
        return "<p>The node is not in the graph.</p>"
    hops = nx.single_source_shortest_path_length(g, center)
    columns: dict[int, list[str]] = {}
    for node, hop in hops.items():
        columns.setdefault(hop, []).append(node)

    def strength(node: str) -> float:  # the strongest edge towards the previous column
        return max(
            (
                float(d.get("weight", 1.0)) + (1.0 if d.get("kind") == "det" else 0.0)
                for m, d in g[node].items()
                if hops.get(m, 99) == hops[node] - 1
            ),
            default=0.0,
        )

    for hop, members in columns.items():
        members.sort(key=lambda n: (not n.startswith("t:"), -strength(n), n))
    rows = max(len(m) for m in columns.values())
    height = 30 + rows * row + 40
    x_of = {hop: 80 + hop * (width - 300) / max(max(columns), 1) for hop in columns}  # room on the right for the last labels

    def xy(node):
        members = columns[hops[node]]
        top = 20 + (rows - len(members)) * row / 2
        return x_of[hops[node]], top + members.index(node) * row + row / 2

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px;background:#fff;border:1px solid #e5e7eb;border-radius:8px">'
    ]
    for u, v, d in g.edges(data=True):
        (x1, y1), (x2, y2) = xy(u), xy(v)
        if d.get("kind") == "det":
            style = 'stroke="#374151" stroke-width="1.6"'
        else:
            w = float(d.get("weight", 0.5))
            style = f'stroke="#9ca3af" stroke-width="{0.8 + 2.5 * max(0.0, w):.1f}" stroke-dasharray="5,4"'
        title = f"<title>{_esc(d.get('kind', ''))} {float(d.get('weight', 1.0)):.2f}</title>"
        if hops[u] == hops[v]:  # within a column: an arc to its left
            bend = x1 - 20 - abs(y2 - y1) * 0.3
            parts.append(
                f'<path d="M{x1:.0f},{y1:.0f} Q{bend:.0f},{(y1 + y2) / 2:.0f} {x2:.0f},{y2:.0f}" fill="none" {style}>{title}</path>'
            )
        else:
            parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" {style}>{title}</line>')
    for node in g.nodes:
        x, y = xy(node)
        fill = "#f59e0b" if node.startswith("t:") else "#3b82f6"
        r = 10 if node == center else 6
        ring = ' stroke="#111827" stroke-width="3"' if node == center else ' stroke="#fff" stroke-width="1.5"'
        parts.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="{r}" fill="{fill}"{ring}><title>{_esc(node)}</title></circle>')
        anchor, dx = ("end", -r - 6) if node == center else ("start", r + 6)
        weight = "bold" if node == center else "normal"
        parts.append(
            f'<text x="{x + dx:.0f}" y="{y + 4:.0f}" font-size="12" text-anchor="{anchor}" font-family="sans-serif" font-weight="{weight}" '
            f'fill="#111827" stroke="#fff" stroke-width="3" paint-order="stroke">{_esc(_node_label(node, 30))}</text>'
        )
    y = height - 14
    legend = [
        ('<circle cx="6" cy="0" r="6" fill="#f59e0b"/>', "tag"),
        ('<circle cx="6" cy="0" r="6" fill="#3b82f6"/>', "content"),
        ('<line x1="0" y1="0" x2="28" y2="0" stroke="#374151" stroke-width="2"/>', "annotated (det)"),
        ('<line x1="0" y1="0" x2="28" y2="0" stroke="#9ca3af" stroke-width="2" stroke-dasharray="5,4"/>', "similar (sim)"),
    ]
    x = 12
    for mark, text in legend:
        parts.append(
            f'<g transform="translate({x},{y - 4})">{mark}</g><text x="{x + 34}" y="{y}" font-size="11" font-family="sans-serif">{text}</text>'
        )
        x += 44 + len(text) * 6.5
    parts.append("</svg>")
    return "".join(parts)


def result_graph(result: dict, more_tags: int = 3, items: int = 8) -> nx.Graph:
    """The part of the content–tag graph a result's tags came through: the content, the similar
    history items its C2C2T path walked (with the similarity), the kept tags and the next
    ``more_tags`` candidates, the annotation edges from those items to those tags, and an edge from
    the content to a tag its description resembles (C2T) or, else, the classifier gave (``learned``).
    Node attribute ``layer``: 0 content, 1 history item, 2 tag; a tag's ``kept`` says whether the
    result keeps it."""
    g = nx.Graph()
    center = "c:" + str(result.get("content_id") or "this text")
    g.add_node(center, layer=0, label="this text")
    kept = [t["tag"] for t in result.get("tags") or []]
    candidates = {c["tag"]: c for c in result.get("candidates") or []}
    shown = kept + [t for t in candidates if t not in kept][:more_tags]
    similar = {c["id"]: set(c.get("tags") or []) for c in result.get("similar_contents") or []}
    walked: dict[str, float] = {}  # history item → its similarity to the text
    carriers: dict[str, set[str]] = {}  # tag → the history items whose vote reached it
    for tag in shown:
        g.add_node("t:" + tag, layer=2, label=tag, kept=tag in kept)
        paths = {ev["path"]: ev for ev in (candidates.get(tag) or {}).get("evidence", [])}
        direct = paths.get("C2T") or paths.get("learned")  # from the text itself: its description, else the classifier
        if direct is not None:
            g.add_edge(center, "t:" + tag, kind=direct["path"], weight=float(direct["score"]))
        for v in (paths.get("C2C2T") or {}).get("via") or []:
            walked[v["id"]] = max(walked.get(v["id"], 0.0), float(v["similarity"]))
            carriers.setdefault(tag, set()).add(v["id"])
    for item, similarity in sorted(walked.items(), key=lambda kv: -kv[1])[:items]:
        node = "c:" + item
        g.add_node(node, layer=1, label=item)
        g.add_edge(center, node, kind="sim", weight=similarity)
        for tag in shown:
            if tag in similar.get(item, ()) or item in carriers.get(tag, ()):
                g.add_edge(node, "t:" + tag, kind="det", weight=1.0)
    return g


def result_graph_svg(g: nx.Graph, width: int = 520, row: int = 30) -> str:
    """A layered picture of ``result_graph``: the content on the left, the similar history items in
    the middle, the tags on the right (kept ones amber, the others grey), one row per node so no
    label overlaps another; C2C2T's walk drawn as similarity (dashed, thicker = more similar) then
    annotation (solid), C2T as a dotted line straight to the tag."""
    layers = {k: [n for n, d in g.nodes(data=True) if d.get("layer") == k] for k in (0, 1, 2)}
    rows = max(len(layers[1]), len(layers[2]), 1)
    height = 40 + rows * row + 50
    columns = {0: 70, 1: width * 0.40, 2: width * 0.66}

    def xy(node):
        layer = g.nodes[node]["layer"]
        members = layers[layer]
        top = 30 + (rows - len(members)) * row / 2
        return columns[layer], top + members.index(node) * row + row / 2

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px;background:#fff;border:1px solid #e5e7eb;border-radius:8px" class="l4t-result-graph">'
    ]
    for u, v, d in g.edges(data=True):
        (x1, y1), (x2, y2) = xy(u), xy(v)
        w = float(d.get("weight", 1.0))
        style = {
            "det": 'stroke="#374151" stroke-width="1.6"',
            "C2T": 'stroke="#d97706" stroke-width="1.4" stroke-dasharray="2,3"',
            "learned": 'stroke="#a78bfa" stroke-width="1.2" stroke-dasharray="1,4"',
        }.get(d["kind"], f'stroke="#60a5fa" stroke-width="{0.8 + 3 * max(0.0, w - 0.3):.1f}" stroke-dasharray="6,4"')
        parts.append(
            f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" {style}><title>{_esc(d["kind"])} {w:.2f}</title></line>'
        )
    for node, d in g.nodes(data=True):
        x, y = xy(node)
        layer = d["layer"]
        fill = "#3b82f6" if layer < 2 else ("#f59e0b" if d.get("kept") else "#d1d5db")
        r = 10 if layer == 0 else 6
        parts.append(
            f'<circle cx="{x:.0f}" cy="{y:.0f}" r="{r}" fill="{fill}" stroke="#fff" stroke-width="1.5"><title>{_esc(node)}</title></circle>'
        )
        label = _node_label(d.get("label", node), 26 if layer else 14)
        # the content's label to its left, a history item's above it, a tag's to its right; a white halo over the lines
        anchor, dx, dy = {0: ("end", -r - 6, 4), 1: ("middle", 0, -r - 4), 2: ("start", r + 6, 4)}[layer]
        weight = "bold" if layer == 0 or d.get("kept") else "normal"
        parts.append(
            f'<text x="{x + dx:.0f}" y="{y + dy:.0f}" font-size="{11 if layer == 1 else 12}" text-anchor="{anchor}" '
            f'font-family="sans-serif" font-weight="{weight}" fill="#111827" stroke="#fff" stroke-width="3" '
            f'paint-order="stroke">{_esc(label)}</text>'
        )
    y = height - 34
    legend = [
        ('<line x1="0" y1="0" x2="26" y2="0" stroke="#60a5fa" stroke-width="2" stroke-dasharray="6,4"/>', "similar item (C2C2T)"),
        ('<line x1="0" y1="0" x2="26" y2="0" stroke="#374151" stroke-width="1.6"/>', "annotated with"),
        ('<line x1="0" y1="0" x2="26" y2="0" stroke="#d97706" stroke-width="1.4" stroke-dasharray="2,3"/>', "C2T: like its description"),
        ('<line x1="0" y1="0" x2="26" y2="0" stroke="#a78bfa" stroke-width="1.2" stroke-dasharray="1,4"/>', "the classifier"),
        ('<circle cx="13" cy="0" r="5" fill="#f59e0b"/>', "kept tag"),
        ('<circle cx="13" cy="0" r="5" fill="#d1d5db"/>', "other candidate"),
    ]
    x = 10
    for mark, text in legend:
        needed = 36 + len(text) * 6
        if x + needed > width:  # the legend wraps rather than run off the picture
            x, y = 10, y + 18
        parts.append(
            f'<g transform="translate({x},{y - 4})">{mark}</g><text x="{x + 30}" y="{y}" font-size="11" font-family="sans-serif" fill="#374151">{text}</text>'
        )
        x += needed
    parts.append("</svg>")
    return "".join(parts)


def neighbourhood_list(g: nx.Graph, center: str, limit: int = 40) -> str:
    if center not in g:
        return ""
    rows = sorted(g[center].items(), key=lambda kv: (kv[1].get("kind") != "det", -float(kv[1].get("weight", 1.0))))
    lines = [f"**{_md(center)}** — {g.degree(center)} neighbours shown", "", "| neighbour | kind | edge | weight |", "|---|---|---|---|"]
    for node, d in rows[:limit]:
        kind = "tag" if node.startswith("t:") else "content"
        lines.append(f"| `{_md(node[2:])}` | {kind} | {d.get('kind', '')} | {float(d.get('weight', 1.0)):.2f} |")
    return "\n".join(lines)
