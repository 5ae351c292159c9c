"""The Gradio app: chat-shaped tagging that shows every step, learns from feedback, tags batches
and shows the knowledge base. ``llm4tag app`` starts it; so does ``python -m ui.app``.

- **Tag**: paste a text or drop a .txt/.md/.jsonl file; the tagging graph streams one collapsible
  message per step (candidates with their meta-paths, examples, knowledge, the generator's
  selection, the judge's confidence), then the tags with confidence bars. Follow-up messages act
  on the last result: ``accept``, ``accept TAG``, ``reject TAG``, ``add TAG``, ``explain TAG``,
  ``undo`` — feedback is written to the knowledge base at once (a sample with correct and
  incorrect tags, and deterministic graph edges). The threshold slider re-filters the last
  result from the judgments already made, without running the model again.
- **Queue**: a file of texts reviewed one record at a time with the keyboard, each decision learned
  at once and what is left re-ordered (``ui.queue_tab``, ``agent.annotation``).
- **Batch**: a JSONL or CSV file in, a JSONL file of tags out, with a progress bar; a bad row is
  reported in the output and the summary, and the batch goes on.
- **Knowledge base**: statistics, tag search, a picture of a node's neighbourhood in the
  content–tag graph, and loading a vocabulary or samples file.

Per-person data (the last result, the feedback verdict, the undo stack) lives in ``gr.State``;
the knowledge base serialises writers with its own lock, so several people can give feedback at
once. The functions ``tag``, ``learn`` and ``search_tags`` are also Gradio API endpoints and, with
``gradio[mcp]`` installed, MCP tools.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from agent.confidence import DEFAULT_THRESHOLD, rethreshold  # noqa: E402
from agent.context import Context  # noqa: E402
from agent.graph import NODE_ORDER  # noqa: E402
from agent.results import tag_result  # noqa: E402
from agent.tagger import Tagger, tagger_for  # noqa: E402
from agent.served import allowed_backends, check_backend  # noqa: E402
from agent.tools import SearchTagsArgs, TagContentArgs, invalid_arguments  # noqa: E402
from knowledge_base.errors import InputError, Llm4tagError  # noqa: E402
from knowledge_base.graph import content_node, tag_node  # noqa: E402
from knowledge_base.neighbourhood import neighbourhood as graph_around  # noqa: E402
from knowledge_base.loaders import require_text  # noqa: E402

from . import render  # noqa: E402
from .logic import (  # noqa: E402
    HELP,
    Command,
    apply_verdict,
    empty_verdict,
    parse_command,
    prepare_batch_input,
    read_dropped_file,
    resolve_tags,
)
from .queue_tab import CSS as QUEUE_CSS  # noqa: E402
from .queue_tab import KEYS_SCRIPT, build_queue_tab  # noqa: E402

log = logging.getLogger("llm4tag.ui")

CHAT_PLACEHOLDER = (
    "**Paste a text to tag** (or drop a .txt / .md / .jsonl file).\n\n"
    "Each step of the pipeline appears here as it runs: candidate recall over the content–tag graph, "
    "similar annotated examples, domain knowledge, the LLM's selection and its calibrated confidence."
)
INPUT_PLACEHOLDER = "Paste a text to tag, or drop a file — then: accept · accept TAG · reject TAG · add TAG · explain TAG · undo · help"
CSS = """
#result-panel { min-height: 80px; }
footer { display: none !important; }
"""


def new_session() -> dict:
    """One person's state: the last result, their verdict on it, and their feedback history."""
    return {"last": None, "verdict": empty_verdict(), "undo": []}


def _default_context() -> Context:
    try:
        return Context.from_env()
    except ValueError as exc:
        log.warning("ignoring the LLM4TAG_* settings: %s", exc)
        return Context()


MAX_MESSAGES = 80  # the conversation kept on the page: every streamed step sends the whole of it to the browser


def _trimmed(history: list) -> list:
    """The conversation without its oldest messages once it is longer than ``MAX_MESSAGES``, so a
    long session answers as fast as a new one (each update re-sends and re-renders what is kept);
    a note says how many were dropped. Decisions made on them are in the knowledge base already."""
    if len(history) <= MAX_MESSAGES:
        return history
    first = re.match(r"…(\d+) earlier messages", _message_text(history[0])) if history else None
    before = int(first.group(1)) if first else 0
    keep = history[-(MAX_MESSAGES // 2) :]
    dropped = before + len(history) - len(keep) - (1 if first else 0)
    return [
        render.assistant_message(
            f"…{dropped} earlier messages are no longer shown (what you accepted or corrected is in the knowledge base)."
        )
    ] + keep


def _message_text(message) -> str:
    """A chat message's text, whether its content is a string or, as the page sends it back, a list of parts."""
    content = message.get("content", "") if isinstance(message, dict) else getattr(message, "content", "")
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


def _readable(exc: Exception) -> str:
    if isinstance(exc, (Llm4tagError, ValueError)):
        return str(exc)
    log.exception("unexpected error in the app")
    return f"unexpected error ({type(exc).__name__}: {exc}); the app's log has the details"


class TaggingApp:
    """The handlers behind the page; holds configuration only, never a person's data."""

    def __init__(self, kb_dir: str | None = None, warm: "WarmUp | None" = None):
        self.kb_dir = str(kb_dir) if kb_dir else None
        self.warm = warm

    def tagger(self) -> Tagger:
        """The knowledge base's Tagger: every operation the page offers goes through it."""
        return tagger_for(self.kb_dir)

    def kb(self):
        return self.tagger().kb

    def context(self, threshold, mode, n_examples, n_snippets, web, backend, llm=None) -> Context:
        n_examples, n_snippets = int(n_examples or 0), int(n_snippets or 0)
        ctx = Context.from_env(
            llm=llm or None,
            backend=check_backend(backend),
            mode=mode or None,
            threshold=float(threshold),
            max_examples=n_examples,
            use_examples=n_examples > 0,
            max_snippets=n_snippets,
            use_knowledge=n_snippets > 0,
            use_web_search=bool(web),
        )
        return replace(ctx, kb_dir=self.kb_dir)

    # ---- the Tag page --------------------------------------------------------------------
    def respond(self, message, history, session, threshold, mode, n_examples, n_snippets, web, backend, llm=None, clear_input=True):
        """Tag a new text (streaming each step) or act on the last result (a command)."""
        history = list(history or [])
        session = session or new_session()
        message = message if isinstance(message, dict) else {"text": message or "", "files": []}
        text = message.get("text") or ""
        files = [f if isinstance(f, str) else getattr(f, "path", None) or f.get("path") for f in message.get("files") or []]
        done_input = gr.MultimodalTextbox(value=None, interactive=True) if clear_input else gr.skip()

        command = None if files else parse_command(text)
        if command is not None and (session.get("last") is not None or not command.tags):
            history.append(render.user_message(text.strip()))
            self.run_command(command, history, session, float(threshold))
            yield history, session, self.panel(session, threshold), done_input
            return

        try:
            note = None
            if files:
                content, title, note = read_dropped_file(files[0])
                title = text.strip() or title
                shown = f"📄 **{Path(files[0]).name}**\n\n{render.clip(content, 400)}"
            else:
                content, title = text, None
                shown = render.clip(text, 600)
            require_text(content)
            ctx = self.context(threshold, mode, n_examples, n_snippets, web, backend, llm)
        except (Llm4tagError, ValueError) as exc:
            gr.Warning(str(exc))
            if text.strip() or files:
                history.append(render.user_message(text.strip() or ", ".join(Path(f).name for f in files)))
            history.append(render.error_message(str(exc)))
            yield history, session, gr.skip(), done_input
            return

        history = _trimmed(history)
        history.append(render.user_message(shown))
        working = render.working_panel(content)
        if self.warm is not None and not self.warm.recall_ready.is_set():  # say what the first result waits for
            history.append(render.waiting_message(self.warm.status()))
            yield history, session, working, gr.MultimodalTextbox(value=None, interactive=False) if clear_input else gr.skip()
            while not self.warm.recall_ready.wait(1.0):  # not the language model: auto may not need it, and a step that does loads it
                history[-1] = render.waiting_message(self.warm.status())
                yield history, session, gr.skip(), gr.skip()
            history.pop()
        history.append(render.pending_message("recall"))
        yield history, session, working, gr.MultimodalTextbox(value=None, interactive=False) if clear_input else gr.skip()

        result: dict = {}
        judged: dict[str, dict] = {}  # by tag: a retried calibrate step sends its judgments again
        try:
            for node, changes, result in self.tagger().tag_stream(content, title=title, context=ctx):
                if node == "judgment":  # one tag judged: shown at once, before the step ends
                    judged[changes["tag"]] = changes
                    history[-1] = render.judging_message(list(judged.values()))
                    yield history, session, gr.skip(), gr.skip()
                    continue
                duration = (changes.get("timings") or {}).get(node)
                if node == "calibrate":  # what moved a confidence away from the judge's is in recall's evidence
                    changes = {**changes, "candidates": result.get("candidates") or [], "recall_fit": result.get("recall_fit") or {}}
                history[-1] = render.step_message(node, changes, ctx.threshold, duration)
                following = self._next_node(node, ctx, result)
                if following:
                    history.append(render.pending_message(following))
                first = self._first_answer(result, ctx) if node == "recall" else None
                yield history, session, first if first is not None else gr.skip(), gr.skip()
        except Exception as exc:  # shown in the page, never as a traceback or a frozen spinner
            error = _readable(exc)
            gr.Warning(error)
            if history and render.is_pending(history[-1]):
                history[-1] = render.failed_step(history[-1], error)
            history.append(render.error_message(error))
            yield history, session, gr.skip(), done_input
            return

        while history and render.is_pending(history[-1]):
            history.pop()
        if note:
            result["notes"] = [*result.get("notes", []), note]
        session["last"] = {"result": result}
        session["verdict"] = empty_verdict()
        shown_tags = result.get("tags") or []
        history.append(render.final_message(result, shown_tags, ctx.threshold))
        session["last"]["answer_at"] = len(history) - 1  # the slider re-renders this message
        yield history, session, render.result_panel(result, shown_tags, ctx.threshold, session["verdict"]), done_input

    def _first_answer(self, state: dict, ctx: Context) -> str | None:
        """The panel with fused recall's tags, shown as soon as recall is done (the LLM steps, where
        they run, refine it): recall's top candidates with its own P(right) — None when recall's
        scores are not probabilities (no trained ranker)."""
        candidates = state.get("candidates") or []
        if not candidates or candidates[0].get("probability") is None:
            return None
        first = {
            "text": state.get("text", ""),
            "candidates": candidates,
            "judgments": [
                {"tag": c["tag"], "origin": "recall", "confidence": c["probability"]}
                for c in candidates[: max(ctx.judge_top, ctx.tag_limit)]
            ],
        }
        threshold = self.tagger().threshold(ctx)
        return render.result_panel(first, rethreshold(first, threshold, ctx.tag_limit), threshold)

    @staticmethod
    def _next_node(node: str, ctx: Context, state: dict) -> str | None:
        order = [n for n in NODE_ORDER if n != "prepare" and (n not in ("review", "record_review") or ctx.review)]
        if node not in order or order.index(node) + 1 >= len(order):
            return None
        following = order[order.index(node) + 1]
        if following == "write_back" and (ctx.review or not (ctx.write_back and state.get("tags"))):
            return None
        return following

    def press(self, command_text: str):
        """A button that types a command into the conversation."""

        def handler(history, session, threshold, mode, n_examples, n_snippets, web, backend, llm=None):
            yield from self.respond(
                {"text": command_text, "files": []},
                history,
                session,
                threshold,
                mode,
                n_examples,
                n_snippets,
                web,
                backend,
                llm,
                clear_input=False,
            )

        return handler

    def panel(self, session: dict, threshold: float) -> str:
        last = (session or {}).get("last")
        if not last:
            return render.result_panel(None, None, float(threshold))
        result = last["result"]
        return render.result_panel(result, rethreshold(result, float(threshold)), float(threshold), session.get("verdict"))

    @staticmethod
    def graph_picture(session: dict, threshold: float) -> str:
        """The part of the content–tag graph the last result's tags (at the slider's threshold) came
        through (``render.result_graph``)."""
        last = (session or {}).get("last")
        if not last:
            return "<p>Tag a text first: the picture shows the graph its tags came through.</p>"
        result = last["result"]
        rejected = set((session.get("verdict") or {}).get("incorrect", []))  # drawn as the panel shows them: not kept
        g = render.result_graph({**result, "tags": [t for t in rethreshold(result, float(threshold)) if t["tag"] not in rejected]})
        items = sum(1 for _, d in g.nodes(data=True) if d.get("layer") == 1)
        cid = render._esc(last["result"].get("content_id") or "")
        caption = (
            f"<p style='font-size:0.85em;opacity:0.8'>For <code>{cid}</code>: how recall reached each tag — through "
            f"{render.plural(items, 'similar history item')} "
            "(C2C2T), the tag's description (C2T) or the classifier. Hover a line for its score.</p>"
        )
        return render.result_graph_svg(g) + caption

    @classmethod
    def redraw_picture(cls, session: dict, threshold: float, shown: str) -> str:
        """After a new answer, feedback or the slider: the picture again, if one is showing, so it never
        contradicts the panel beside it."""
        return cls.graph_picture(session, threshold) if shown else ""

    def refilter(self, threshold, session, history):
        """The slider: the side panel and the last answer in the conversation, at the new threshold."""
        history = list(history or [])
        last = (session or {}).get("last")
        at = (last or {}).get("answer_at")
        if last is not None and at is not None and at < len(history) and (history[at] or {}).get("role") == "assistant":
            result = last["result"]
            history[at] = render.final_message(result, rethreshold(result, float(threshold)), float(threshold))
            return self.panel(session, threshold), history
        return self.panel(session, threshold), gr.skip()

    def run_command(self, command: Command, history: list, session: dict, threshold: float) -> None:
        """Carry out a follow-up command; every outcome, error included, is a chat message."""
        say = lambda text: history.append(render.assistant_message(text))  # noqa: E731
        fail = lambda text: history.append(render.error_message(text))  # noqa: E731
        if command.action == "help":
            return say(HELP)
        if command.action == "undo":
            return self.undo(history, session)
        last = session.get("last")
        if last is None:
            return fail("There is no result yet: paste a text to tag first.")
        result = last["result"]
        if command.action == "explain":
            if not command.tags:
                return fail("Name the tag: explain TAG")
            try:  # the words behind each tag (occlusion over recall): a failure there leaves the rest of the explanation
                spans = self.tagger().supporting_spans(result["text"], command.tags)
            except Exception as exc:
                log.warning("no evidence spans: %s", exc)
                spans = {}
            return say(
                "\n\n".join(
                    render.explanation_markdown(Tagger.explain(result, t), threshold, session.get("verdict"), spans.get(t), result["text"])
                    for t in command.tags
                )
            )
        try:
            kb = self.kb()
            if command.tags:
                tags, unknown = resolve_tags(command.tags, kb.tag_names())
                if unknown:
                    hints = []
                    for name in unknown:
                        near = [h.id for h in kb.search_tags(name, 3)]
                        hints.append(f"'{name}' is not in the tag repository" + (f" (did you mean {', '.join(near)}?)" if near else ""))
                    return fail("; ".join(hints) + ". Nothing was written.")
            elif command.action == "accept":
                tags = [t["tag"] for t in rethreshold(result, threshold)]
                if not tags:
                    return fail(f"No tag is shown at the threshold {threshold:.2f}; name the tags (accept TAG) or lower the threshold.")
            else:
                return fail(f"Name the tag: {command.action} TAG")
            verdict = apply_verdict(session.get("verdict") or empty_verdict(), command.action, tags)
            cid = result["content_id"]
            previous = self.tagger().sample(cid)
            self.tagger().learn(result["text"], verdict["correct"], verdict["incorrect"], sample_id=cid)
        except Exception as exc:
            error = _readable(exc)
            gr.Warning(error)
            return fail(error + " Nothing was written.")
        summary = f"{command.action} {', '.join(tags)}"
        session["undo"].append({"cid": cid, "previous": previous, "verdict": session.get("verdict") or empty_verdict(), "summary": summary})
        session["verdict"] = verdict
        correct = ", ".join(f"`{t}`" for t in verdict["correct"]) or "(none)"
        incorrect = ", ".join(f"`{t}`" for t in verdict["incorrect"]) or "(none)"
        say(
            f"✓ Saved to the knowledge base as sample `{cid}` — correct: {correct}; incorrect: {incorrect}. "
            "Similar texts will now get it as an example and reach its tags through C2C2T. (`undo` takes it back.)"
        )

    def undo(self, history: list, session: dict) -> None:
        stack = session.get("undo") or []
        if not stack:
            history.append(render.assistant_message("Nothing to undo: no feedback has been given in this session."))
            return
        entry = stack[-1]
        try:
            what = self.tagger().restore(entry["cid"], entry["previous"])
        except Exception as exc:
            error = _readable(exc)
            gr.Warning(error)
            history.append(render.error_message(f"Undo failed: {error}"))
            return
        stack.pop()
        last = session.get("last")
        if last and last["result"].get("content_id") == entry["cid"]:
            session["verdict"] = entry["verdict"]
        history.append(render.assistant_message(f"↶ Undid “{entry['summary']}” on `{entry['cid']}`: {what}."))

    # ---- API / MCP -------------------------------------------------------------------------
    def tag(
        self,
        text: str,
        mode: str | None = None,
        threshold: float | None = None,
        max_tags: int | None = None,
        llm: str | None = None,
        backend: str | None = None,
        explain: bool = False,
        label_language: str | None = None,
    ) -> dict:
        """Tag a text with llm4tag: graph-based candidate recall, knowledge-enhanced LLM selection and calibrated confidence.

        Args:
            text: the content to tag (an article, a product description, a query).
            mode: "multi" for several tags, "single" for exactly one; leave it out for the server's setting (multi).
            threshold: tags whose confidence (P(tag is right), 0 to 1, fused from recall, the generator and the judge) is below this are left out; leave it out for the knowledge base's tuned threshold.
            max_tags: at most this many tags in multi mode; leave it out for the server's setting.
            llm: "auto" (default): the language model only where it can change the answer; "full": always; "fast": never (milliseconds).
            backend: leave it out for the server's model; otherwise one of the backends its operator allowed at start.
            explain: also list, for each tag, the words of the text behind it ("words": those whose removal lowers its score most).
            label_language: also give each tag its label in this language (e.g. de), from the vocabulary's SKOS prefLabels.

        Returns:
            The result every llm4tag surface returns (agent.results.TagResult): "content_id", "tags" (each with "tag", "confidence", "rank", "description", "paths", "origin", "why", with a tag tree "path" (root first), with label_language "label", with explain "words"), "below_threshold" (scored tags that were left out, with confidence), "threshold" (the cut used), "mode", "llm" (whether the language model ran), "route" (why), "candidates_considered" and "notes".
        """
        try:  # the LangChain tool's argument model: the same ranges and the same plain refusal on every surface
            args = TagContentArgs(
                text=text,
                mode=mode or None,
                threshold=threshold,
                max_tags=max_tags,
                llm=llm or None,
                explain=explain,
                label_language=label_language or None,
            )
        except ValidationError as exc:
            raise gr.Error(invalid_arguments(exc, "tag")) from None
        try:
            ctx = replace(
                Context.from_env(
                    mode=args.mode,
                    threshold=args.threshold,
                    max_tags=args.max_tags,
                    llm=args.llm,
                    label_language=args.label_language,
                    backend=check_backend(backend),
                ),
                kb_dir=self.kb_dir,
            )
            result = self.tagger().tag(text, context=ctx)
            spans = self.tagger().supporting_spans(result["text"], [t["tag"] for t in result["tags"]], context=ctx) if explain else None
        except Exception as exc:
            raise gr.Error(_readable(exc)) from exc
        return tag_result(result, spans).model_dump(mode="json")

    def learn(self, text: str, correct: list[str], incorrect: list[str] = []) -> dict:  # noqa: B006
        """Teach llm4tag the right tags for a text: stores it as an annotated sample (correct and incorrect tags) in the knowledge base; the next answer for this text follows it.

        Args:
            text: the content the verdict is about.
            correct: tags that belong to the text (they must be in the tag repository).
            incorrect: tags that do not belong to the text.

        Returns:
            A dict with "id" (the sample id under which the verdict was stored), "correct", "incorrect", "samples" (how many the knowledge base holds) and "retraining" (whether the learned recall path started retraining), as the stdio MCP server's learn returns.
        """
        try:
            return self.tagger().learn(text, correct or [], incorrect or [])
        except Exception as exc:
            raise gr.Error(_readable(exc)) from exc

    def search_tags(self, query: str, limit: int = 10) -> list[dict]:
        """Search the tag repository by name or meaning.

        Args:
            query: a word, a tag name or a phrase.
            limit: at most this many tags.

        Returns:
            A list of tags, each with "tag", "similarity" and "description".
        """
        try:
            args = SearchTagsArgs(query=query, limit=limit)
        except ValidationError as exc:
            raise gr.Error(invalid_arguments(exc, "search_tags")) from None
        try:
            return self.tagger().search_tags(args.query, args.limit)
        except Exception as exc:
            raise gr.Error(_readable(exc)) from exc

    # ---- Batch -----------------------------------------------------------------------------
    def run_batch(self, file, threshold, mode, n_examples, n_snippets, web, backend, llm=None, progress=gr.Progress()):
        from agent.batch import run_batch

        if not file:
            gr.Warning("Upload a .jsonl or .csv file first.")
            yield gr.File(visible=False), "⚠️ **Upload a .jsonl or .csv file first.**", None
            return
        src = Path(file if isinstance(file, str) else file.name)
        # at once, before anything loads: an earlier run's message or warning must not stand while this one starts
        yield gr.File(visible=False), f"⏳ **Tagging `{src.name}`** — loading the knowledge base and the model…", None
        try:
            ctx = self.context(threshold, mode, n_examples, n_snippets, web, backend, llm)
            workdir = Path(tempfile.mkdtemp(prefix="llm4tag-batch-"))
            source = prepare_batch_input(src, workdir)
            out = workdir / f"{src.stem}.tags.jsonl"
            progress(None, desc="loading the knowledge base and the model")  # no share yet: not a 0.0% bar

            def on_item(report, item):
                done = report.tagged + report.skipped_done + len(report.errors)
                progress((done, report.total), desc=f"tagged {done} of {report.total}")

            report = run_batch(source, out, ctx, on_item=on_item)
        except Exception as exc:
            error = _readable(exc)
            gr.Warning(error)
            yield gr.File(visible=False), f"⚠️ **{error}**", None
            return
        lines = [f"**{report.tagged} tagged**, {render.plural(len(report.errors), 'bad row')}, {report.total} in all → `{out.name}`"]
        lines += [f"- {e.replace(str(source), src.name)}" for e in report.errors[:20]]
        if len(report.errors) > 20:
            lines.append(f"- … and {len(report.errors) - 20} more (each has an `error` line in the output)")
        preview = []
        for raw in out.read_text(encoding="utf-8").splitlines()[:50]:
            rec = json.loads(raw)
            if "error" in rec:
                preview.append([rec["id"], "", f"error: {rec['error']}"])
            else:
                preview.append(
                    [
                        rec["id"],
                        ", ".join(f"{t} ({c:.2f})" if c is not None else t for t, c in _tags_of(rec)),
                        "; ".join(rec["notes"]),
                    ]
                )
        yield gr.File(value=str(out), visible=True), "\n".join(lines), preview

    # ---- Knowledge base --------------------------------------------------------------------
    def stats(self) -> str:
        try:
            return render.stats_markdown(self.tagger().stats())
        except Exception as exc:
            return f"⚠️ **{_readable(exc)}**"

    def kb_search_table(self, query):
        try:
            hits = self.tagger().search_tags(query or "", 20)
        except Exception as exc:
            gr.Warning(_readable(exc))
            return None
        return [[h["tag"], round(h["similarity"], 3), h["description"]] for h in hits]

    def neighbourhood(self, name, radius):
        try:
            kb = self.kb()
            kb.graph.refresh()
            node = self._resolve_node(kb, name or "")
            sub = graph_around(kb, node, radius=int(radius or 1), limit=30)
        except Exception as exc:
            error = _readable(exc)
            gr.Warning(error)
            return f"<p>⚠️ <b>{render._esc(error)}</b></p>", ""
        return render.neighbourhood_svg(sub, node), render.neighbourhood_list(sub, node)

    @staticmethod
    def _resolve_node(kb, name: str) -> str:
        name = name.strip()
        if not name:
            raise InputError("give a tag name (e.g. devel::i18n) or a content id (e.g. a sample id, or the sha1:… id under a result)")
        for node in (name, tag_node(name), content_node(name)):
            if node[:2] in ("t:", "c:") and kb.graph.has_node(node):
                return node
        resolved, _ = resolve_tags([name], kb.tag_names())
        if resolved:
            return tag_node(resolved[0])
        raise InputError(f"'{name}' is neither a tag nor a content in the graph; search the tags above for the exact name")

    def last_evaluation(self):
        """The knowledge base's latest ``llm4tag eval``: a summary, its reliability diagram and its
        worst tags (``per-tag-<system>.csv``)."""
        from agent.evaluation.report import read_per_tag_table
        from agent.evaluation.runner import last_evaluation

        record = last_evaluation(self.kb_dir)
        if record is None:
            return (
                "No evaluation of this knowledge base yet: `llm4tag eval labelled.jsonl --out DIR` writes one "
                "(a reliability diagram and a per-tag table) and the page shows it here."
            ), gr.Image(value=None, visible=False)
        out = Path(record["out"])
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record["at"]))
        lines = [
            f"**{record['items']} items**, {when}, in `{out}` — {record['headline']}: "
            + ", ".join(f"{s} {v:.3f}" for s, v in record["figures"].items())
        ]
        system = next((s for s in record["systems"] if (out / f"per-tag-{s}.csv").is_file()), None)
        if system:
            rows = [r for r in read_per_tag_table(out / f"per-tag-{system}.csv") if int(r["support"])][:12]
            lines += [
                "",
                f"The worst tags for **{system}** at its threshold (n: items carrying the tag; P, R, F1: precision, recall, "
                f"F1; ECE of its confidences; every tag in `per-tag-{system}.csv`):",
                "",
                "| tag | n | P | R | F1 | ECE |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for r in rows:
                ece = f"{float(r['ECE']):.2f}" if r["ECE"] else "–"
                lines.append(
                    f"| {r['tag'].replace('|', '∣')} | {r['support']} | {float(r['precision']):.2f} | "
                    f"{float(r['recall']):.2f} | {float(r['f1']):.2f} | {ece} |"
                )
        picture = out / "reliability.png"
        if not picture.is_file():
            lines += [
                "",
                "No reliability diagram: the evaluated systems gave no confidences (train the learned recall path: "
                "`llm4tag kb train-classifier`).",
            ]
            return "\n".join(lines), gr.Image(value=None, visible=False)
        from PIL import Image

        with Image.open(picture) as image:  # the pixels, not the path: the evaluation's folder need not be one the app serves
            return "\n".join(lines), gr.Image(value=image.convert("RGB"), visible=True)

    def change_tag(self, tag: str, action: str, into: str):
        """The knowledge-base tab's tag change: rename, merge or retire (``Tagger.change_tag``)."""
        try:
            change = self.tagger().change_tag((tag or "").strip(), action, (into or "").strip() or None)
        except Exception as exc:
            error = _readable(exc)
            gr.Warning(error)
            return f"⚠️ **{error}**", gr.skip()
        retrain = " Retrain the classifier (`llm4tag kb train-classifier`) so it learns the change." if self.kb().classifier() else ""
        return f"✓ {change['summary']}.{retrain}", render.stats_markdown(self.tagger().stats())

    def load_file(self, file, kind, unknown_tags, progress=gr.Progress()):
        from knowledge_base import read_samples
        from knowledge_base.skos import read_vocabulary

        if not file:
            gr.Warning("Choose a file first.")
            return "⚠️ **Choose a file first.**", gr.skip()
        path = Path(file if isinstance(file, str) else file.name)
        try:
            kb = self.kb()
            bar = lambda done, total: progress((done, total), desc=f"{done} of {total}")  # noqa: E731
            changed: list[dict] = []
            if kind == "samples":
                parsed = read_samples(path, on_error="skip")
                report = kb.add_samples(parsed.records, unknown_tags=unknown_tags, progress=bar)
            else:
                parsed = read_vocabulary(path, on_error="skip", known=kb.tag_names())
                report = kb.add_tags(parsed.records, progress=bar)
                changed = kb.apply_tag_changes(parsed.changes)
        except Exception as exc:
            error = _readable(exc)
            gr.Warning(error)
            return f"⚠️ **{error}**", gr.skip()
        lines = [f"**{path.name}**: {report.summary()}"]
        lines += [f"- {c['summary']}" for c in changed]
        lines += [f"- skipped {str(p).replace(str(path), path.name)}" for p in parsed.problems[:20]]
        lines += [f"- {w.replace(str(path), path.name)}" for w in [*parsed.warnings, *report.warnings][:20]]
        return "\n".join(lines), render.stats_markdown(kb.stats())


def _demo_texts(limit: int = 4) -> list[str]:
    from knowledge_base.demo import demo_examples

    try:
        return [ex["text"] for ex in demo_examples()[:limit]]
    except OSError:
        return []


def build_app(kb_dir: str | None = None) -> gr.Blocks:
    """The app for the knowledge base at ``kb_dir`` (the bundled demo knowledge base when None)."""
    warm = WarmUp()
    app = TaggingApp(kb_dir, warm)
    defaults = _default_context()
    if defaults.threshold is None:  # the knowledge base's tuned threshold (the demo's ships with its model)
        defaults = replace(defaults, threshold=tagger_for(kb_dir).threshold(defaults) if kb_dir else _demo_threshold())
    where = f"knowledge base `{kb_dir}`" if kb_dir else "the bundled demo knowledge base (Debian package descriptions, debtags)"
    with gr.Blocks(title="llm4tag", analytics_enabled=False) as demo:
        session = gr.State(new_session())
        gr.Markdown(
            f"## llm4tag — automatic tagging with graph recall, knowledge-enhanced LLM generation and calibrated confidence\n"
            f"Tagging with {where}."
        )
        status = gr.Markdown(warm.status(), elem_id="warm-up")
        ticker = gr.Timer(1.0)
        ticker.tick(
            lambda: (warm.status(), gr.Timer(active=not warm.ready.is_set())),
            None,
            [status, ticker],
            show_progress="hidden",
            api_visibility="private",
        )
        with gr.Tabs():
            with gr.Tab("Tag", id="tag"):
                controls = _tag_tab(app, session, defaults)
            with gr.Tab("Queue", id="queue"):
                build_queue_tab(kb_dir, demo)
            with gr.Tab("Batch", id="batch"):
                _batch_tab(app, controls)
            with gr.Tab("Knowledge base", id="kb"):
                stats, evaluation = _kb_tab(app)
        demo.load(app.stats, None, stats, api_visibility="private")
        demo.load(app.last_evaluation, None, evaluation, api_visibility="private")
        threading.Thread(target=_warm_up, args=(kb_dir, defaults.backend, warm), daemon=True, name="llm4tag-warm-up").start()
        gr.api(app.tag, api_name="tag")
        gr.api(app.learn, api_name="learn")
        gr.api(app.search_tags, api_name="search_tags")
    return demo


def _tag_tab(app: TaggingApp, session: gr.State, defaults: Context) -> list:
    """The Tag tab: the chat, the current result with its buttons, the settings; returns the
    settings' controls (the Batch tab tags with them too)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            chatbot, chat_input = _chat()
        with gr.Column(scale=2):
            gr.Markdown("### Current result")
            panel = gr.HTML(render.result_panel(None, None, defaults.threshold), elem_id="result-panel")
            with gr.Row():
                accept_btn = gr.Button("✓ Accept shown tags", elem_id="accept-btn", size="sm")
                undo_btn = gr.Button("↶ Undo last feedback", elem_id="undo-btn", size="sm")
                graph_btn = gr.Button("⊶ Graph around the text", elem_id="graph-btn", size="sm")
            result_graph = gr.HTML(elem_id="result-graph")
            with gr.Accordion("Settings", open=True):
                controls = _settings(defaults)
    outputs = [chatbot, session, panel, chat_input]
    threshold = controls[0]
    redraw = dict(
        fn=app.redraw_picture,
        inputs=[session, threshold, result_graph],
        outputs=result_graph,
        show_progress="hidden",
        api_visibility="private",
    )
    chat_input.submit(app.respond, [chat_input, chatbot, session, *controls], outputs, concurrency_limit=4, api_visibility="private").then(
        **redraw
    )
    accept_btn.click(app.press("accept"), [chatbot, session, *controls], outputs, concurrency_limit=4, api_visibility="private").then(
        **redraw
    )
    undo_btn.click(app.press("undo"), [chatbot, session, *controls], outputs, concurrency_limit=4, api_visibility="private").then(**redraw)
    threshold.change(app.refilter, [threshold, session, chatbot], [panel, chatbot], show_progress="hidden", api_visibility="private").then(
        **redraw
    )
    graph_btn.click(app.graph_picture, [session, threshold], result_graph, api_visibility="private")

    return controls


def _chat() -> tuple[gr.Chatbot, gr.MultimodalTextbox]:
    """The Tag tab's conversation and its input, with the demo's texts as examples."""
    chatbot = gr.Chatbot(
        elem_id="chat",
        height=640,
        show_label=False,
        placeholder=CHAT_PLACEHOLDER,
        feedback_options=None,
        buttons=["copy_all"],
        group_consecutive_messages=False,
    )
    chat_input = gr.MultimodalTextbox(
        elem_id="chat-input",
        show_label=False,
        placeholder=INPUT_PLACEHOLDER,
        file_types=[".txt", ".md", ".jsonl"],
        file_count="single",
        sources=["upload"],
        max_plain_text_length=50000,
        max_lines=12,
    )
    texts = _demo_texts()
    if texts:
        gr.Examples(
            [[{"text": t, "files": []}] for t in texts],
            inputs=[chat_input],
            label="Demo texts (not in the knowledge base)",
            example_labels=[t.splitlines()[0][:80] for t in texts],
        )
    return chatbot, chat_input


def _settings(defaults: Context) -> list:
    """The run settings of the page: threshold, mode, examples, snippets, web, backend, language model."""
    threshold = gr.Slider(
        0.0,
        1.0,
        value=defaults.threshold,
        step=0.01,
        label="Confidence threshold",
        info="Re-filters the last result at once, without running the model again.",
        elem_id="threshold",
    )
    mode = gr.Radio(["multi", "single"], value=defaults.mode, label="Task", info="multi: several tags · single: exactly one")
    n_examples = gr.Slider(0, 5, value=defaults.max_examples if defaults.use_examples else 0, step=1, label="Similar examples (0: off)")
    n_snippets = gr.Slider(
        0,
        5,
        value=defaults.max_snippets if defaults.use_knowledge else 0,
        step=1,
        label="Knowledge snippets (0: off)",
    )
    web = gr.Checkbox(value=defaults.use_web_search, label="Web search snippets (needs network)")
    llm = gr.Radio(
        ["auto", "full", "fast"],
        value=defaults.llm,
        label="Language model",
        elem_id="llm-mode",
        info="auto: only where it can change the answer · full: always · fast: never (fused recall, milliseconds)",
    )
    choices = allowed_backends(defaults)
    backend = gr.Dropdown(
        choices,
        value=choices[0],
        label="Backend",
        interactive=len(choices) > 1,
        elem_id="backend",
        info="the models this server's operator allowed (LLM4TAG_ALLOWED_BACKENDS)",
    )
    return [threshold, mode, n_examples, n_snippets, web, backend, llm]


def _batch_tab(app: TaggingApp, controls: list) -> None:
    """The Batch tab: a file tagged with the Tag tab's settings."""
    gr.Markdown(
        'Tag a whole file with the settings of the Tag page. **JSONL**: one `{"id": …, "text": …}` per line '
        "(`title` optional). **CSV**: a `text` column, optional `id` and `title`. A bad row is reported and skipped."
    )
    with gr.Row():
        batch_file = gr.File(label="Input (.jsonl or .csv)", file_types=[".jsonl", ".csv"], elem_id="batch-input")
        batch_out = gr.File(label="Results (JSONL)", visible=False, interactive=False, elem_id="batch-output")
    batch_btn = gr.Button("Tag the file", variant="primary", elem_id="batch-run")
    batch_summary = gr.Markdown(elem_id="batch-summary")
    batch_preview = gr.Dataframe(
        headers=["id", "tags (confidence)", "notes"],
        interactive=False,
        wrap=True,
        elem_id="batch-preview",
        column_widths=["18%", "37%", "45%"],
    )  # an empty tags column once shrank to one letter
    batch_btn.click(app.run_batch, [batch_file, *controls], [batch_out, batch_summary, batch_preview], api_visibility="private")


def _kb_tab(app: TaggingApp) -> tuple[gr.Markdown, list]:
    """The Knowledge base tab; returns its statistics and its last evaluation's outputs (the page fills them on load)."""
    with gr.Row():
        with gr.Column():
            stats, refresh, load, evaluation = _kb_holdings()
        with gr.Column():
            search, neighbourhood, change = _kb_tools()
    refresh.click(app.stats, None, stats, api_visibility="private")
    refresh.click(app.last_evaluation, None, evaluation, api_visibility="private")
    query, hits = search
    query.submit(app.kb_search_table, query, hits, api_name="kb_search", api_visibility="private")
    node, radius, show, picture, listing = neighbourhood
    show.click(app.neighbourhood, [node, radius], [picture, listing], api_visibility="private")
    node.submit(app.neighbourhood, [node, radius], [picture, listing], api_visibility="private")
    load_file, load_kind, unknown, load_btn, load_report = load
    load_btn.click(app.load_file, [load_file, load_kind, unknown], [load_report, stats], api_visibility="private")
    change_name, change_action, change_into, change_btn, change_report = change
    change_btn.click(app.change_tag, [change_name, change_action, change_into], [change_report, stats], api_visibility="private")
    return stats, evaluation


def _kb_holdings() -> tuple:
    """What the knowledge base holds, a file to load into it, and its last evaluation."""
    gr.Markdown("### What it holds")
    stats = gr.Markdown("Loading…", elem_id="kb-stats")
    refresh = gr.Button("Refresh", size="sm")
    gr.Markdown("### Load a file")
    load_file = gr.File(
        label="Vocabulary (.tsv/.csv/.jsonl, SKOS .ttl/.rdf/.jsonld) or samples (.jsonl)",
        file_types=[".tsv", ".csv", ".jsonl", ".txt", ".ttl", ".rdf", ".xml", ".owl", ".jsonld", ".nt"],
    )
    load_kind = gr.Radio(["vocabulary", "samples"], value="vocabulary", label="The file holds")
    unknown = gr.Radio(["skip", "add", "error"], value="skip", label="Sample tags not in the repository")
    load_btn = gr.Button("Load into the knowledge base")
    load_report = gr.Markdown()
    gr.Markdown("### Last evaluation")
    eval_summary = gr.Markdown(elem_id="kb-eval")
    eval_picture = gr.Image(
        label="Reliability diagram",
        show_label=False,
        type="pil",
        interactive=False,
        visible=False,
        elem_id="kb-eval-reliability",
    )
    return stats, refresh, (load_file, load_kind, unknown, load_btn, load_report), [eval_summary, eval_picture]


def _kb_tools() -> tuple:
    """Tag search, the picture of a neighbourhood in the graph, and a tag's rename, merge or retirement."""
    gr.Markdown("### Search tags")
    query = gr.Textbox(label="Name or meaning", placeholder="e.g. translation, python, devel::i18n")
    hits = gr.Dataframe(
        headers=["tag", "similarity", "description"],
        interactive=False,
        wrap=True,
        elem_id="kb-hits",
        column_widths=["200px", "112px", "288px"],
    )  # "similarity" once wrapped in two
    gr.Markdown("### Neighbourhood in the content–tag graph")
    with gr.Row():
        node = gr.Textbox(label="Tag or content id", placeholder="devel::i18n · a sample id · sha1:… under a result", scale=3)
        radius = gr.Slider(1, 2, value=1, step=1, label="Hops", scale=1)
    show = gr.Button("Show")
    picture = gr.HTML()
    listing = gr.Markdown()
    gr.Markdown("### Change a tag")
    with gr.Row():
        change_name = gr.Textbox(label="Tag", placeholder="its exact name", scale=2, elem_id="change-tag")
        change_action = gr.Radio(["rename", "merge", "retire"], value="rename", label="Change", scale=2)
        change_into = gr.Textbox(label="Into", placeholder="new name, or the tag to merge into", scale=2, elem_id="change-into")
    change_btn = gr.Button("Apply the change", elem_id="change-apply")
    change_report = gr.Markdown(elem_id="change-report")
    return (query, hits), (node, radius, show, picture, listing), (change_name, change_action, change_into, change_btn, change_report)


def _tags_of(record: dict) -> list[tuple[str, float | None]]:
    """A batch record's (tag, confidence) pairs: its ``tags`` as every surface returns them, or the
    parallel ``tags`` and ``confidence`` lists of a file an older llm4tag began."""
    tags = record.get("tags") or []
    if tags and isinstance(tags[0], str):
        return list(zip(tags, record.get("confidence") or [None] * len(tags)))
    return [(t["tag"], t.get("confidence")) for t in tags]


def _demo_threshold() -> float:
    """The threshold the demo's shipped model was tuned with, else the default."""
    from agent.demo_model import shipped_demo_model

    described = shipped_demo_model()
    return described["threshold"] if described and described.get("threshold") is not None else DEFAULT_THRESHOLD


def mcp_available() -> bool:
    """Whether Gradio's MCP server can start (the ``gradio[mcp]`` extra is installed)."""
    return importlib.util.find_spec("mcp") is not None


class WarmUp:
    """What the app is still getting ready — the knowledge base, the encoder, the model — shown on
    the page (a status line, and in place of a spinner when a text comes in early) until it is."""

    def __init__(self):
        self.stage = "starting"
        self.ready = threading.Event()  # everything, the language model included
        self.recall_ready = threading.Event()  # the knowledge base and the encoder: enough for fused recall
        self.error: str | None = None
        self.started = time.monotonic()
        self.model = ""

    def set(self, stage: str) -> None:
        self.stage = stage.strip()

    def status(self) -> str:
        if self.error:
            return f"⚠ Warm-up failed: {self.error} — the page reports the same error when it tags."
        if self.ready.is_set():
            return f"✓ Ready · {self.model}"
        if self.recall_ready.is_set():
            return f"✓ Fused recall ready · ⏳ {self.stage} for the steps that need it ({time.monotonic() - self.started:.0f} s)"
        return f"⏳ Getting ready ({time.monotonic() - self.started:.0f} s): {self.stage}"


def _warm_up(kb_dir: str | None, backend: str, warm: WarmUp) -> None:
    """Open the knowledge base, the encoder and the model before the first request needs them,
    saying at each stage what it is doing (``warm``)."""
    try:
        if kb_dir is None:
            from knowledge_base.demo import open_demo_kb

            warm.set("building the demo knowledge base (first run only, about 30 seconds)")
            open_demo_kb(log=lambda line: warm.set(f"building the demo knowledge base: {line.strip()}"))
        warm.set("opening the knowledge base")
        rt = tagger_for(kb_dir)
        warm.set("loading the embedding model and the recall indexes")
        rt.warm_up()
        warm.set("preparing the language model")  # finding (on a first run: converting) the model file
        warm.recall_ready.set()
        ctx = Context.from_env(kb_dir=kb_dir, backend=backend)
        spec = rt.backend_spec(ctx)
        warm.set(f"loading the language model ({_model_name(spec)})")
        model = rt.backend(ctx)
        warm.model = model.describe()
    except Exception as exc:  # the page reports the same error when it is used
        warm.error = f"{type(exc).__name__}: {exc}"
        print(f"note: warm-up failed ({warm.error}); the app will report it when tagging")
    finally:
        warm.recall_ready.set()
        warm.ready.set()


def _model_name(spec: str) -> str:
    model, _, adapter = spec.partition(";lora=")
    name = Path(model.partition(":")[2]).name or "the default model"
    return name + (f" + fine-tuned adapter {Path(adapter).name}" if adapter else "")


def guarded_app(demo: gr.Blocks, token: str | None, mcp: bool):
    """The Gradio app mounted in a FastAPI app behind a guard that covers the page, the Gradio API
    and the MCP server alike: with a ``token`` every request needs it (``guard.TokenGate``);
    without one (loopback only) requests to a name other than localhost, or from a page elsewhere,
    are refused (``guard.LocalOnly``, against DNS rebinding)."""
    from fastapi import FastAPI

    from .guard import LocalOnly, TokenGate, ValidJsonText

    outer = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    outer = gr.mount_gradio_app(
        outer, demo, path="", mcp_server=mcp, ssr_mode=False, theme=gr.themes.Soft(), css=CSS + QUEUE_CSS, head=KEYS_SCRIPT
    )
    checked = ValidJsonText(outer)  # a lone surrogate in a call's JSON: a clear 400, not Gradio's bare 500
    return TokenGate(checked, token) if token else LocalOnly(checked)


def launch(
    kb_dir: str | None = None, host: str = "127.0.0.1", port: int = 7860, share: bool = False, token: str | None = None, **launch_options
):
    """Build the app and serve it (blocking), with Gradio's API and, when available, its MCP server.

    Like ``llm4tag serve``, it refuses to listen beyond loopback (or share a public link) without
    a ``token``; with one, every request needs it (a browser opens ``/?token=…`` once), without one only
    loopback requests from no page or a loopback page are answered (``guarded_app``).
    """
    from .guard import require_token_beyond_loopback

    require_token_beyond_loopback(host, token, share)
    if kb_dir is None:  # the demo knowledge base is built before the page opens (progress in the terminal)
        from knowledge_base.demo import open_demo_kb

        open_demo_kb()
    demo = build_app(kb_dir)
    mcp = mcp_available()
    if not mcp:
        print("note: the MCP server is off because gradio's mcp extra is missing; install it with: pip install 'gradio[mcp]'")
    demo.queue(default_concurrency_limit=2)
    if token and share:  # Gradio's tunnel needs its own launch: its login guards the page and API; MCP stays off
        print("note: over a share link the page and API need the login llm4tag / TOKEN; the MCP server is off")
        return demo.launch(
            server_name=host,
            server_port=port,
            share=True,
            mcp_server=False,
            ssr_mode=False,
            auth=("llm4tag", token),
            theme=gr.themes.Soft(),
            css=CSS + QUEUE_CSS,
            head=KEYS_SCRIPT,
            **launch_options,
        )
    import uvicorn

    if token:
        print(f"open http://{host}:{port}/?token=<your token> once in a browser; API and MCP clients send 'Authorization: Bearer <token>'")
    else:
        print(
            f"llm4tag app: open http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/ "
            "(loopback only: requests to other names or from other sites' pages are refused)"
        )
    return uvicorn.run(guarded_app(demo, token, mcp), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    import sys

    launch(sys.argv[1] if len(sys.argv) > 1 else None)
