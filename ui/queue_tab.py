"""The page's Queue tab: an annotator reviews a file record by record (``agent.annotation``).

Each record shows its text and its suggested tags with their confidence, those at or above the
threshold pre-selected. Keys (when no text box has the focus): 1–9 toggle a tag, Enter accepts
the selection, S skips, X says no suggestion fits. Every decision is learned at once, and the
records it can change are re-scored in the background; the progress bar and the annotator's
counts follow. The queue lives in the knowledge base, so a reload or a restart goes on where the
annotator stopped.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import gradio as gr

from agent.annotation import SUGGESTIONS, AnnotationQueue
from knowledge_base.annotation_queue import QueueCounts, QueueRecord, uncertainty
from knowledge_base.errors import Llm4tagError

from .logic import csv_to_jsonl, resolve_tags
from .render import _esc, plural

log = logging.getLogger("llm4tag.ui")

ORDERS = [("most uncertain first", "uncertain"), ("surest first", "score"), ("file order", "file")]

# The keys of the Queue tab: a listener on the document that acts only while the tab is shown and
# no text box has the focus (typing a tag name must not accept the record)
KEYS_SCRIPT = """
<script>
document.addEventListener("keydown", (event) => {
  const record = document.getElementById("queue-record");
  if (!record || record.offsetParent === null || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  const typing = target && (target.tagName === "TEXTAREA" || target.isContentEditable ||
    (target.tagName === "INPUT" && !["checkbox", "radio", "range", "button"].includes(target.type)));
  if (typing) return;
  const press = (id) => { const button = document.getElementById(id); if (button) { event.preventDefault(); button.click(); } };
  if (/^[1-9]$/.test(event.key)) {
    const boxes = document.querySelectorAll("#queue-tags input[type=checkbox]");
    const box = boxes[Number(event.key) - 1];
    if (box) { event.preventDefault(); box.click(); }
  } else if (event.key === "Enter") press("queue-accept");
  else if (event.key === "s" || event.key === "S") press("queue-skip");
  else if (event.key === "x" || event.key === "X") press("queue-reject");
});
</script>
"""

CSS = """
#queue-record .queue-text { white-space: pre-wrap; max-height: 320px; overflow-y: auto; padding: 10px 12px;
  border: 1px solid var(--border-color-primary); border-radius: 8px; background: var(--background-fill-secondary); }
#queue-progress .queue-bar { height: 10px; border-radius: 5px; background: var(--background-fill-secondary); overflow: hidden; }
#queue-progress .queue-bar > div { height: 100%; background: var(--color-accent); }
#queue-progress .queue-counts { margin-top: 6px; font-size: 0.95em; }
.queue-keys kbd { border: 1px solid var(--border-color-primary); border-radius: 4px; padding: 0 5px; font-size: 0.9em; }
"""


def progress_html(counts: QueueCounts) -> str:
    """The progress bar and the annotator's counts."""
    if not counts.total:
        return "<div class='queue-counts'>The queue is empty: load a file of texts to review.</div>"
    share = counts.decided / counts.total
    rate = counts.acceptance_rate
    parts = [
        f"<b>{counts.decided} of {counts.total}</b> decided",
        f"{counts.accepted} accepted as suggested",
        f"{counts.changed} changed",
        f"{counts.rejected} with no suggestion right",
    ]
    if counts.skipped:
        parts.append(f"{counts.skipped} skipped")
    if rate is not None:
        parts.append(f"suggestions accepted: <b>{rate:.0%}</b>")
    return (
        f"<div class='queue-bar' title='{share:.0%} decided'><div style='width:{share * 100:.1f}%'></div></div>"
        f"<div class='queue-counts'>{' · '.join(parts)}</div>"
    )


def record_html(record: QueueRecord | None, counts: QueueCounts, threshold: float) -> str:
    if record is None:
        if counts.total:
            return f"<p><b>All {plural(counts.decided, 'record')} are decided.</b> Load another file to go on.</p>"
        return '<p>No record to review. Load a <code>.jsonl</code> (one <code>{"text": …}</code> per line), <code>.csv</code> (a <code>text</code> column) or <code>.txt</code> file (one text per line).</p>'
    title = f"<h4>{_esc(record.title)}</h4>" if record.title else ""
    skipped = " · skipped before" if record.status == "skipped" else ""
    scored = any(p is not None for _, p in record.suggestions)
    kept = (
        f"the tags the Tag page keeps (confidence ≥ {threshold:.2f})"
        if scored
        else "the tags the Tag page keeps; no confidences: this knowledge base has no trained ranker (llm4tag kb train-classifier)"
    )
    return (
        f"{title}<div class='queue-text'>{_esc(record.text)}</div>"
        f"<p style='font-size:0.85em;opacity:0.75'>record <code>{_esc(record.id)}</code>{skipped} · pre-selected: {kept}</p>"
    )


LIST_COLUMNS = ["#", "surest tag", "confidence", "uncertainty", "status", "text"]
LIST_ROWS = 25


def listing_rows(records: list[QueueRecord], threshold: float) -> list[list]:
    """The record list beside the record on screen: the next undecided records in the chosen order
    and filter (Argilla's record list): place in the queue (1: the first record loaded), the surest suggestion and its
    confidence, the expected number of wrong pre-selections, the status and the text's start."""
    rows = []
    for r in records:
        top = next(((t, p) for t, p in r.suggestions if p is not None), (r.suggestions[0][0], None) if r.suggestions else ("", None))
        text = " ".join(r.text.split())
        rows.append(
            [
                r.position,
                top[0],
                None if top[1] is None else round(top[1], 2),
                round(uncertainty(r.suggestions, threshold), 2),
                r.status,
                text if len(text) <= 90 else text[:89] + "…",
            ]
        )
    return rows


def tag_choices(record: QueueRecord | None, threshold: float) -> tuple[list[tuple[str, str]], list[str]]:
    """The checkbox labels ("1 · tag · 0.82") and the pre-selected tags."""
    if record is None:
        return [], []
    suggestions = record.suggestions[:SUGGESTIONS]
    return (
        [(f"{i} · {tag}" + (f" · {p:.2f}" if p is not None else ""), tag) for i, (tag, p) in enumerate(suggestions, 1)],
        [tag for tag in record.preselected if tag in dict(suggestions)],
    )


class QueuePage:
    """The handlers of the Queue tab; the queue itself is opened on first use."""

    def __init__(self, kb_dir: str | None):
        self.kb_dir = kb_dir
        self._queue: AnnotationQueue | None = None

    def queue(self) -> AnnotationQueue:
        if self._queue is None:
            self._queue = AnnotationQueue(self.kb_dir)
        return self._queue

    def show(self, order: str, match: str | None = None, after: list[str] | None = None, report: str | None = None, rid: str | None = None):
        """The next record in ``order`` among those ``match`` finds (or record ``rid``): (its id, its
        HTML, the tag checkboxes, the progress, the added-tags box, the report, the record list)."""
        order = order or "uncertain"
        try:
            queue = self.queue()
            chosen = queue.store.get(rid) if rid else None
            if chosen is not None and not chosen.decided:
                record = queue.fresh(chosen)
            else:
                record = queue.next(order, after or [], match) or (queue.next(order, [], match) if after else None)
            counts, threshold = queue.counts(), queue.threshold()
            upcoming = listing_rows(queue.store.listing(order, match, LIST_ROWS), threshold)
        except Exception as exc:
            return None, f"<p>⚠️ <b>{_esc(_readable(exc))}</b></p>", gr.update(choices=[], value=[]), "", "", gr.skip(), gr.skip()
        choices, selected = tag_choices(record, threshold)
        label = f"Suggested tags — {len(choices)}, keys 1–{len(choices)} toggle" if choices else "Suggested tags"
        if record is None and match and match.strip() and counts.total > counts.decided:
            report = report or f"No undecided record matches “{match.strip()}”; clear the filter to see the others."
        return (
            record.id if record else None,
            record_html(record, counts, threshold),
            gr.update(choices=choices, value=selected, label=label),
            progress_html(counts),
            "",
            report if report is not None else gr.skip(),
            gr.update(value=upcoming),
        )

    def pick(self, order, match, rows, event: gr.SelectData):
        """A click on a row of the record list shows that record."""
        try:
            position = int(event.row_value[0]) if event.row_value else None
        except (TypeError, ValueError):
            position = None
        record = next((r for r in self.queue().store.listing(order or "uncertain", match, LIST_ROWS) if r.position == position), None)
        return self.show(order, match, rid=record.id if record else None)

    def load(self, file, order, match, progress=gr.Progress()):
        if not file:
            gr.Warning("Choose a file first.")
            return self.show(order, match, report="⚠️ **Choose a file of texts first.**")
        src = Path(file if isinstance(file, str) else file.name)
        try:
            source = src
            if src.suffix.lower() == ".csv":
                source = Path(tempfile.mkdtemp(prefix="llm4tag-queue-")) / f"{src.stem}.jsonl"
                csv_to_jsonl(src, source)
            progress(None, desc="encoding the texts")
            report = self.queue().load(
                source, progress=lambda done, total: progress((done, total), desc=f"suggesting tags: {done} of {total}")
            )
        except Exception as exc:
            error = _readable(exc)
            gr.Warning(error)
            return self.show(order, match, report=f"⚠️ **{error}**")
        lines = [
            f"**{src.name}**: {plural(report['added'], 'record')} queued"
            + (f", {report['already_queued']} already in the queue" if report["already_queued"] else "")
        ]
        lines += [f"- skipped {p}" for p in report["problems"][:10]]
        if len(report["problems"]) > 10:
            lines.append(f"- … and {len(report['problems']) - 10} more bad lines")
        return self.show(order, match, report="\n".join(lines))

    @staticmethod
    def _added_tags(queue: AnnotationQueue, added: str | None) -> list[str]:
        """The tags typed in the "add tags" box, resolved against the repository (an unknown name is refused)."""
        names = [n.strip() for n in (added or "").replace(",", " ").split() if n.strip()]
        extra, unknown = resolve_tags(names, queue.runtime.kb.tag_names())
        if unknown:
            raise ValueError(f"not in the tag repository: {', '.join(unknown)}; search the Knowledge base tab for the exact names")
        return extra

    def accept(self, current, selected, added, order, match):
        """Enter: the selected suggestions and the added tags are the record's tags."""
        if not current:
            return self.show(order, match, report="Nothing to accept: load a file first.")
        try:
            queue = self.queue()
            extra = self._added_tags(queue, added)
            chosen = list(dict.fromkeys([*(selected or []), *extra]))
            if not chosen:
                return self.reject(current, added, order, match)
            decided = queue.decide(current, chosen)
        except Exception as exc:
            return self._refused(exc)
        return self.show(order, match, after=[current], report=f"✓ `{current}`: {decided['status']} — learned {', '.join(chosen)}")

    def reject(self, current, added, order, match):
        """X: no suggestion fits (the tags added by hand, if any, are the record's tags)."""
        if not current:
            return self.show(order, match, report="Nothing to reject: load a file first.")
        try:
            queue = self.queue()
            extra = self._added_tags(queue, added)
            record = queue.store.get(current)
            wrong = [t for t in (record.preselected if record else []) if t not in extra] or [
                t for t, _ in (record.suggestions[:1] if record else []) if t not in extra
            ]
            decided = queue.decide(current, extra, wrong)
        except Exception as exc:
            return self._refused(exc)
        return self.show(
            order,
            match,
            after=[current],
            report=f"✗ `{current}`: {decided['status']}" + (f" — marked wrong: {', '.join(wrong)}" if wrong else ""),
        )

    def skip(self, current, order, match):
        if current:
            self.queue().skip(current)
        return self.show(
            order,
            match,
            after=[current] if current else [],
            report=f"Skipped `{current}`; it comes back after the open records." if current else None,
        )

    def accept_above(self, cut, order, match, progress=gr.Progress()):
        """Bulk: on every undecided record the filter finds, accept its suggestions at or above ``cut``."""
        among = f" among those matching “{match.strip()}”" if match and match.strip() else ""
        try:
            progress(None, desc="accepting")
            n = self.queue().accept_above(float(cut), match=match)
        except Exception as exc:
            return self._refused(exc)
        return self.show(
            order,
            match,
            report=f"✓ Accepted {plural(n, 'record')}{among}: their suggestions at confidence ≥ {float(cut):.2f}, each learned"
            if n
            else f"No undecided record{among} has a suggestion at confidence ≥ {float(cut):.2f}.",
        )

    def _refused(self, exc: Exception):
        error = _readable(exc)
        gr.Warning(error)
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), f"⚠️ **{error}**", gr.skip()


def _readable(exc: Exception) -> str:
    if isinstance(exc, (Llm4tagError, ValueError)):
        return str(exc)
    log.exception("unexpected error in the Queue tab")
    return f"unexpected error ({type(exc).__name__}: {exc}); the app's log has the details"


def build_queue_tab(kb_dir: str | None, demo: gr.Blocks) -> None:
    """The Queue tab's components and events (inside an open ``gr.Tab``); ``demo`` gets the on-load refresh."""
    page = QueuePage(kb_dir)
    gr.Markdown(
        "Review a file of texts one record at a time. Every decision is learned at once and reorders what is left. "
        "<span class='queue-keys'>Keys: <kbd>1</kbd>–<kbd>9</kbd> toggle a tag · <kbd>Enter</kbd> accept · "
        "<kbd>S</kbd> skip · <kbd>X</kbd> no suggestion fits</span>"
    )
    current = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            progress = gr.HTML(elem_id="queue-progress")
            record = gr.HTML(elem_id="queue-record")
            tags = gr.CheckboxGroup(choices=[], value=[], label="Suggested tags", elem_id="queue-tags")
            added = gr.Textbox(label="Add tags (names, space- or comma-separated)", placeholder="e.g. devel::i18n", elem_id="queue-add")
            with gr.Row():
                accept = gr.Button("✓ Accept · Enter", variant="primary", elem_id="queue-accept")
                skip = gr.Button("Skip · S", elem_id="queue-skip")
                reject = gr.Button("✗ No suggestion fits · X", elem_id="queue-reject")
            report = gr.Markdown(elem_id="queue-report")
        with gr.Column(scale=2):
            source = gr.File(label="Texts to review (.jsonl, .csv or .txt)", file_types=[".jsonl", ".csv", ".txt"], elem_id="queue-input")
            load = gr.Button("Load into the queue", elem_id="queue-load")
            order = gr.Radio(
                ORDERS,
                value="uncertain",
                label="Order",
                elem_id="queue-order",
                info="most uncertain: the record you are expected to correct most first · surest: for bulk acceptance",
            )
            match = gr.Textbox(
                label="Filter: only records whose text or suggested tags contain",
                placeholder="e.g. pdf, or devel::",
                elem_id="queue-filter",
            )
            cut = gr.Slider(
                0.5, 1.0, value=0.9, step=0.01, label="Bulk: accept the filtered records' suggestions at or above", elem_id="queue-cut"
            )
            bulk = gr.Button("Accept all above", elem_id="queue-bulk")
    upcoming = gr.Dataframe(
        headers=LIST_COLUMNS,
        value=[],
        interactive=False,
        wrap=False,
        elem_id="queue-list",
        label=f"Next records in this order and filter (up to {LIST_ROWS}; click one to review it)",
        column_widths=["56px", "190px", "112px", "124px", "84px", "520px"],
    )
    shown = [current, record, tags, progress, added, report, upcoming]
    load.click(page.load, [source, order, match], shown, api_visibility="private")
    accept.click(page.accept, [current, tags, added, order, match], shown, api_visibility="private")
    added.submit(page.accept, [current, tags, added, order, match], shown, api_visibility="private")
    reject.click(page.reject, [current, added, order, match], shown, api_visibility="private")
    skip.click(page.skip, [current, order, match], shown, api_visibility="private")
    bulk.click(page.accept_above, [cut, order, match], shown, api_visibility="private")
    order.change(page.show, [order, match], shown, api_visibility="private")
    match.submit(page.show, [order, match], shown, api_visibility="private")
    upcoming.select(page.pick, [order, match, upcoming], shown, api_visibility="private")
    demo.load(page.show, [order, match], shown, api_visibility="private")
