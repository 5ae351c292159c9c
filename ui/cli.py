"""The ``llm4tag`` command line: build a knowledge base, recall, tag, index batches, evaluate,
train, and start the other surfaces (the Gradio app, the REST API, the MCP server).

Like every surface it parses its input, calls the knowledge base's Tagger (``agent.tagger``) or an offline
workflow (``agent.evaluation``, ``agent.training``), and formats the output — nothing else.
Heavy libraries are imported inside the commands that use them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from knowledge_base.errors import Llm4tagError

from agent.context import Context
from agent.explanation import departure


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def argument_text(value: str, name: str = "TEXT") -> str:
    """A command-line argument as text. Python turns bytes that are not UTF-8 into lone surrogates
    (``surrogateescape``), which no encoder takes: refuse them here, naming the byte."""
    for position, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raw = char.encode("utf-8", "surrogateescape") if "\udc80" <= char <= "\udcff" else None
            what = f"byte 0x{raw[0]:02x}" if raw else f"a lone surrogate {ascii(char)[1:-1]}"
            raise click.BadParameter(
                f"{name} is not valid UTF-8 text ({what} at character {position + 1}); "
                "convert it (e.g. iconv -t UTF-8) or pipe it on standard input with '-'",
                param_hint=name,
            )
    return value


def read_text_argument(text: str | None) -> str:
    """TEXT, or standard input when TEXT is '-' or missing and input is piped."""
    if text is not None and text != "-":
        return argument_text(text)
    if text is None and sys.stdin.isatty():
        raise click.UsageError("give the text as an argument, or pipe it on standard input (use '-' to read it)")
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"standard input is not valid UTF-8 (byte {exc.start}: {exc.reason}); convert it, e.g. with iconv -t UTF-8"
        )


def _require_kb(ctx: click.Context) -> None:
    """Refuse a ``--kb`` folder that is not a knowledge base: only commands that write may create one
    (a mistyped path must not quietly become an empty knowledge base). The demo (no --kb) is built on demand."""
    kb_dir = ctx.obj["kb_dir"]
    if kb_dir is None:
        return
    directory = Path(kb_dir).expanduser()
    if not directory.exists():
        raise click.UsageError(
            f"there is no knowledge base at {directory} (the folder does not exist); check --kb, "
            "or create one with: llm4tag --kb DIR kb load-vocab TAGS"
        )
    if not (directory / "config.json").is_file():
        raise click.UsageError(
            f"{directory} is not a knowledge base (it has no config.json); check --kb, "
            "or create one with: llm4tag --kb DIR kb load-vocab TAGS"
        )


def _tagger(ctx: click.Context):
    """The Tagger of ``--kb`` (every operation on the knowledge base), after checking the folder is one."""
    from agent.tagger import tagger_for

    _require_kb(ctx)
    return tagger_for(ctx.obj["kb_dir"])


def _open_kb(ctx: click.Context, create: bool = False):
    """The knowledge base of ``--kb``; ``create`` (the loading commands only) makes a new one and says so."""
    from agent.runtime import get_knowledge_base

    kb_dir = ctx.obj["kb_dir"]
    if not create:
        _require_kb(ctx)
    elif kb_dir is not None and not (Path(kb_dir).expanduser() / "config.json").is_file():
        kbase = get_knowledge_base(kb_dir, create=True)
        click.echo(f"created a new knowledge base at {kbase.directory}", err=True)
        return kbase
    return get_knowledge_base(kb_dir)


class _Bar:
    """A tqdm bar driven by (done, total) progress callbacks."""

    def __init__(self, desc: str):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.desc = desc
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=total, desc=self.desc, unit="item", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--kb",
    "kb_dir",
    envvar="LLM4TAG_KB",
    type=click.Path(file_okay=False),
    default=None,
    help="Knowledge base directory (env LLM4TAG_KB). Default: the bundled demo knowledge base.",
)
@click.pass_context
def main(ctx: click.Context, kb_dir: str | None) -> None:
    """llm4tag: automatic tagging with graph-based recall, knowledge-enhanced LLM generation and
    calibrated confidence (after LLM4Tag, KDD 2025)."""
    ctx.ensure_object(dict)
    ctx.obj["kb_dir"] = kb_dir


# ---- knowledge base ------------------------------------------------------------------------
@main.group()
def kb() -> None:
    """Build and inspect the knowledge base."""


ON_ERROR = click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="A malformed line stops the load (nothing loaded) or is skipped and reported.",
)


def _print_report(report, parsed) -> None:
    for problem in parsed.problems:
        click.echo(f"skipped {problem}", err=True)
    for warning in [*parsed.warnings, *report.warnings]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(report.summary())


@kb.command("load-vocab")
@click.argument("path", type=click.Path(dir_okay=False))
@ON_ERROR
@click.option(
    "--language",
    default="en",
    show_default=True,
    help="SKOS only: the language of the labels to load (else labels without one, else the first).",
)
@click.pass_context
def load_vocab(ctx, path, on_error, language):
    """Load a tag repository: .tsv/.csv/.jsonl (name, description, synonyms, parent) or SKOS (.ttl, .rdf, .jsonld)."""
    from knowledge_base.skos import read_vocabulary

    try:
        kb_dir = ctx.obj["kb_dir"]
        exists = kb_dir is None or (Path(kb_dir).expanduser() / "config.json").is_file()
        # the file is checked before a new knowledge base is made for it (parents may be tags already there)
        parsed = read_vocabulary(path, on_error, known=_open_kb(ctx).tag_names() if exists else (), language=language)
        bar = _Bar("tags")
        kbase = _open_kb(ctx, create=True)
        report = kbase.add_tags(parsed.records, progress=bar)
        bar.close()
        changed = kbase.apply_tag_changes(parsed.changes)
    except Llm4tagError as exc:
        _fail(exc)
    _print_report(report, parsed)
    for change in changed:
        click.echo(change["summary"])


def _change_tag(ctx, tag: str, into: str | None, action: str) -> None:
    try:
        change = _tagger(ctx).change_tag(tag, action, into)
        trained = _open_kb(ctx).classifier() is not None
    except Llm4tagError as exc:
        _fail(exc)
    click.echo(change["summary"] + ("; retrain the classifier (llm4tag kb train-classifier) so it learns the change" if trained else ""))


@kb.command("rename-tag")
@click.argument("tag")
@click.argument("new_name")
@click.pass_context
def rename_tag(ctx, tag, new_name):
    """Rename TAG to NEW_NAME: its description, history and children move; the old name stays a synonym."""
    _change_tag(ctx, tag, new_name, "rename")


@kb.command("merge-tags")
@click.argument("tag")
@click.argument("into")
@click.pass_context
def merge_tags(ctx, tag, into):
    """Merge TAG into the existing tag INTO: TAG's history moves to INTO and TAG leaves the repository."""
    _change_tag(ctx, tag, into, "merge")


@kb.command("retire-tag")
@click.argument("tag")
@click.pass_context
def retire_tag(ctx, tag):
    """Retire TAG: never suggested again; its verdicts are kept in the knowledge base's tag-changes.jsonl."""
    _change_tag(ctx, tag, None, "retire")


@kb.command("export-vocab")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--namespace", default="urn:llm4tag:tag:", show_default=True, help="The concepts' URIs: this prefix + the tag name.")
@click.pass_context
def export_vocab(ctx, path, namespace):
    """Write the tag repository as a SKOS concept scheme (.ttl, .rdf, .jsonld or .nt, from PATH's suffix)."""
    from knowledge_base.skos import write_skos

    try:
        kbase = _open_kb(ctx)
        tags = kbase.get_tags(sorted(kbase.tag_names()))
        written = write_skos(tags.values(), path, namespace=namespace)
    except Llm4tagError as exc:
        _fail(exc)
    click.echo(f"{written} concepts → {path}")


@kb.command("load-samples")
@click.argument("path", type=click.Path(dir_okay=False))
@ON_ERROR
@click.option(
    "--unknown-tags",
    type=click.Choice(["skip", "add", "error"]),
    default="skip",
    show_default=True,
    help="Tags not in the repository: ignore them (reported), add them, or refuse the file.",
)
@click.pass_context
def load_samples(ctx, path, on_error, unknown_tags):
    """Load annotated samples (JSONL: id, text, tags, optional incorrect_tags)."""
    from knowledge_base import read_samples

    try:
        parsed = read_samples(path, on_error)
        bar = _Bar("samples")
        report = _open_kb(ctx, create=True).add_samples(parsed.records, unknown_tags=unknown_tags, progress=bar)
        bar.close()
    except Llm4tagError as exc:
        _fail(exc)
    _print_report(report, parsed)


@kb.command("load-docs")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@ON_ERROR
@click.pass_context
def load_docs(ctx, paths, on_error):
    """Load domain documents (files or folders): definitions, tagging rules.

    Reads .txt and .md, and with the docs extra (pip install 'llm4tag[docs]') .pdf, .html/.htm,
    .docx and .csv; folders are searched recursively. Every file is read before anything is
    written; re-loading a file replaces its passages."""
    from knowledge_base import read_documents

    try:
        parsed = read_documents(list(paths), on_error)
        bar = _Bar("passages")
        report = _open_kb(ctx, create=True).add_documents(parsed.records, progress=bar)
        bar.close()
    except Llm4tagError as exc:
        _fail(exc)
    _print_report(report, parsed)


@kb.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats(ctx, as_json):
    """Show what the knowledge base holds."""
    try:
        data = _open_kb(ctx).stats(check=True)
    except Llm4tagError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@kb.command("rebuild-graph")
@click.pass_context
def rebuild_graph(ctx):
    """Rebuild the content–tag graph from the stores (tags, contents and their embeddings): after a
    damaged graph store (graph.sqlite), or to migrate an old knowledge base's graph.pickle without ever reading it."""
    from knowledge_base import KnowledgeBase
    from knowledge_base.demo import demo_kb_dir

    directory = Path(ctx.obj["kb_dir"] or demo_kb_dir()).expanduser()
    if not (directory / "config.json").is_file():
        raise click.ClickException(f"{directory} is not a knowledge base (it has no config.json); check --kb")
    bar = _Bar("contents")
    try:
        counts = KnowledgeBase(directory, load_graph=False).rebuild_graph(progress=bar)
    except Llm4tagError as exc:
        _fail(exc)
    finally:
        bar.close()
    click.echo(
        f"rebuilt the graph of {directory} from its stores: {counts['tag_nodes']} tags, {counts['content_nodes']} contents, "
        f"{counts['deterministic_edges']} deterministic edges in {counts['seconds']}s (similarity edges are asked of the vector index)"
    )
    if counts.get("restored_contents"):
        click.echo(f"restored the content entry of {counts['restored_contents']} samples that a halfway write had left without one")


@kb.command("train-classifier")
@click.option("--threads", type=int, default=1, show_default=True, help="Training threads (1 is fastest on a busy 2-core machine).")
@click.pass_context
def train_classifier(ctx, threads):
    """Train the learned recall path (omikuji over the samples' TF-IDF words and embeddings, or the
    embeddings alone, whichever the held-out slice prefers) and the recall ranker (fitted on that
    slice); re-run after corrections."""
    from knowledge_base.learned_recall import train_learned_recall

    try:
        kbase = _open_kb(ctx)
        report = train_learned_recall(kbase, n_threads=threads)
    except Llm4tagError as exc:
        _fail(exc)
    ranker = (
        f"ranker fitted on {report['held_out']} held-out samples ({report['ranker_pairs']} candidates; {report['cold_tags']} tags "
        f"recalled as if they had no history, carried by {report['cold_items']} of those samples; bias for tags without history "
        f"{report['cold_bias']}"
        + (f" within {report['cold_width']} of the best description match" if report["cold_width"] else "")
        + (
            f", chosen over {report['cold_splits']} further simulated choices of such tags"
            if report["cold_splits"]
            else ", chosen on the ranker's own simulation"
        )
        + "), default threshold "
        f"{report['threshold']}"
        if report["ranker"]
        else "no ranker (too little history to hold some out)"
    )
    held = report.get("held_out_accuracy") or {}
    paired = report.get("held_out_paired")
    features = report["features"] + (
        " (held-out Acc@1 "
        + ", ".join(f"{n} {a:.3f}" for n, a in held.items())
        + (
            f"; right with words only {paired['words_only_right']}, with the embedding only "
            f"{paired['embedding_only_right']}: words kept only for a clear lead"
            if paired
            else ""
        )
        + ")"
        if held
        else ""
    )
    click.echo(
        f"learned recall path: {report['samples']} samples, {report['tags']} tags, features {features}; {ranker}; "
        f"{report['seconds']:.1f}s → {kbase.directory / 'classifier'}"
    )


@kb.command("search")
@click.argument("query")
@click.option("-k", "limit", type=click.IntRange(min=1), default=10, show_default=True, help="At most this many tags.")
@click.pass_context
def search(ctx, query, limit):
    """Find tags by name or meaning."""
    query = argument_text(query, "QUERY")
    try:
        for hit in _open_kb(ctx).search_tags(query, limit):
            click.echo(f"{hit.similarity:.3f}  {hit.id}  {hit.metadata.get('description', '')}")
    except Llm4tagError as exc:
        _fail(exc)


# ---- recall --------------------------------------------------------------------------------
@main.command()
@click.argument("text", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--strategy", type=click.Choice(["graph", "match"]), default=None, help="Graph meta-paths or top-k by cosine.")
@click.option("--paper", is_flag=True, help="Use the paper's thresholds (δ_ct 0.5, δ_cc 0.8), tuned for BGE.")
@click.option("--delta-ct", type=float, default=None)
@click.option("--delta-cc", type=float, default=None)
@click.option("--max-c2t", type=int, default=None)
@click.option("--max-c2c2t", type=int, default=None)
@click.option("--budget", type=int, default=None, help="Candidate set size.")
@click.pass_context
def recall(ctx, text, as_json, strategy, paper, delta_ct, delta_cc, max_c2t, max_c2c2t, budget):
    """Recall candidate tags for TEXT (or standard input), with the path that found each."""
    from agent.explanation import evidence_parts
    from knowledge_base import RecallConfig

    content = read_text_argument(text)
    try:
        context = Context.from_env(
            kb_dir=ctx.obj["kb_dir"], delta_ct=delta_ct, delta_cc=delta_cc, max_c2t=max_c2t, max_c2c2t=max_c2c2t, budget=budget
        )
    except ValueError as exc:
        raise click.UsageError(str(exc))
    _require_kb(ctx)
    try:
        if strategy:
            context = context.with_overrides(use_graph_recall=strategy == "graph")
        result = _tagger(ctx).recall_text(content, context=context, base=RecallConfig.paper() if paper else None)
    except (Llm4tagError, ValueError) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{len(result.candidates)} candidates ({result.strategy} recall):")
    for c in result.to_dict()["candidates"]:
        click.echo(f"  {c['score']:6.3f}  {c['tag']:40s} {'; '.join(evidence_parts(c, detail=True))}")


# ---- tagging -------------------------------------------------------------------------------
def context_help(name: str) -> str:
    """A run option's help: the ``Context`` field's own (the one place it is written), with its variable."""
    from dataclasses import fields

    text = next(f.metadata["help"] for f in fields(Context) if f.name == name)
    return f"{text} (env LLM4TAG_{name.upper()})"


# the run options: (flag, the Context field it sets, click's extra arguments); the help is the field's
CONTEXT_OPTIONS = [
    ("--backend", "backend", {}),
    ("--fine-tuning/--no-fine-tuning", "use_fine_tuning", {}),
    ("--mode", "mode", {"type": click.Choice(["multi", "single"])}),
    ("--limit", "max_tags", {"type": click.IntRange(min=1)}),
    ("--threshold", "threshold", {"type": float}),
    ("--examples/--no-examples", "use_examples", {}),
    ("--knowledge/--no-knowledge", "use_knowledge", {}),
    ("--web/--no-web", "use_web_search", {}),
    ("--generate/--no-generate", "use_generation", {}),
    # --judge, as eval's no-judge system; --calibrate, its older name, still works (eval's no-calibration is another ablation)
    (("--judge/--no-judge", "--calibrate/--no-calibrate"), "use_calibration", {}),
    ("--judge-top", "judge_top", {"type": click.IntRange(min=0)}),
    ("--llm", "llm", {"type": click.Choice(["auto", "full", "fast"])}),
    ("--learned-calibration/--no-learned-calibration", "use_learned_calibration", {}),
    ("--graph-recall/--match-recall", "use_graph_recall", {}),
    ("--write-back/--no-write-back", "write_back", {}),
    ("--review/--no-review", "review", {}),
    ("--label-language", "label_language", {}),
]


def context_options(f):
    options = [
        click.option(*(flags if isinstance(flags, tuple) else (flags,)), name, default=None, help=context_help(name), **extra)
        for flags, name, extra in CONTEXT_OPTIONS
    ]
    options.insert(
        12,
        click.option(
            "--no-llm",
            "no_llm",
            is_flag=True,
            default=False,
            help="Fused recall only, no language model (milliseconds): the same as --llm fast.",
        ),
    )
    for option in reversed(options):
        f = option(f)
    return f


def build_context(ctx: click.Context, no_llm: bool = False, **options) -> Context:
    if no_llm:
        options.update(llm="fast")
    try:
        context = Context.from_env(kb_dir=ctx.obj["kb_dir"], **options)
    except ValueError as exc:
        raise click.BadParameter(str(exc))
    _require_kb(ctx)
    return context


def _start_remote_backend(context: Context) -> None:
    """Reach a model server (``ollama:MODEL``) before the knowledge base and its encoder are loaded,
    so a server that is down or stuck is reported in seconds, not after the whole start-up. The
    embedded backend's spec depends on the knowledge base (its fine-tuned model), so it waits."""
    if not context.uses_llm or not (context.backend or "").strip().startswith("ollama:"):
        return
    from agent.llm import load_backend

    try:
        load_backend(context.backend)
    except Llm4tagError as exc:
        _fail(exc)


@main.command("tag")
@click.argument("text", required=False)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result as JSON, in the shape every surface returns (with --explain: the "
    "pipeline's full output, every candidate, example, snippet and judgment).",
)
@click.option("--explain", is_flag=True, help="Also print candidates, examples, knowledge and judgments.")
@context_options
@click.pass_context
def tag_command(ctx, text, as_json, explain, **options):
    """Tag TEXT (or standard input) with the full pipeline."""

    content = read_text_argument(text)
    context = build_context(ctx, **options)
    _start_remote_backend(context)
    try:
        result = _tagger(ctx).tag(content, context=context)
    except Llm4tagError as exc:
        _fail(exc)
    if as_json:
        from agent.results import tag_result

        click.echo(json.dumps(result if explain else tag_result(result).model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    for note in result["notes"]:
        click.echo(f"note: {note}", err=True)
    if explain:
        from prompts.fill import snippet_source

        click.echo(f"candidates ({len(result['candidates'])}):")
        for c in result["candidates"]:
            click.echo(f"  {c['score']:6.3f}  {c['tag']:40s} {'+'.join(c['paths'])}")
        click.echo(f"examples ({len(result['examples'])}):")
        for e in result["examples"]:
            click.echo(
                f"  {e['similarity']:.3f} {e['id']}: right {e['tags']}" + (f" wrong {e['incorrect_tags']}" if e["incorrect_tags"] else "")
            )
        click.echo(f"knowledge ({len(result['knowledge'])}):")
        for s in result["knowledge"]:
            click.echo(f"  [{snippet_source(s)}] {' '.join(s['text'].split())[:100]}")
        sel = result["selection"]
        click.echo(f"generator: {sel.get('raw')!r} (+ from history: {sel.get('from_history')})")
        click.echo("judgments:")
        for j in result["judgments"]:
            p_yes = "   -  " if j.get("p_yes") is None else f"{j['p_yes']:.3f}"
            conf = "   -  " if j.get("confidence") is None else f"{j['confidence']:.3f}"
            click.echo(f"  P(Yes)={p_yes}  confidence={conf}  {j['tag']} ({j.get('origin', 'llm')})")
            moved = departure(j, next((c for c in result["candidates"] if c["tag"] == j["tag"]), None), result.get("recall_fit"))
            if moved:
                click.echo(f"    {moved}")
        kept = [t["tag"] for t in result["tags"]]
        if kept:
            click.echo("words behind each tag (removing them lowers recall's score for it the most):")
            for tag, spans in _tagger(ctx).supporting_spans(result["text"], kept, context=context).items():
                click.echo(
                    f"  {tag}: " + (" · ".join(f"«{s['text']}» (−{s['drop']:.2f})" for s in spans) or "no part of the text alone moves it")
                )
        click.echo("tags:")
    if not result["tags"]:
        click.echo("(no tag passed the confidence threshold)")
    _print_tags(result)


def _print_tags(result: dict) -> None:
    for t in result["tags"]:
        conf = "   -  " if t["confidence"] is None else f"{t['confidence']:.3f}"
        origin = {"history": ", from history", "recall": ", from recall", "review": ", added in review"}.get(t["origin"], "")
        label = f" «{t['label']}»" if t.get("label") and t["label"] != t["tag"] else ""
        tree = f" in {' › '.join(t['path'][:-1])}" if len(t.get("path") or []) > 1 else ""
        click.echo(f"{t['rank']:2d}. {conf}  {t['tag']}{label}  ({'+'.join(t['paths']) or 'llm'}{origin}{tree})")
    review = result.get("review") or {}
    if review.get("status") == "pending":
        click.echo(f"review pending: llm4tag review {result['content_id']} --accept TAG --reject TAG --add TAG")


@main.command("review")
@click.argument("content_id", required=False)
@click.option("--accept", multiple=True, help="A proposed tag that is right (repeatable).")
@click.option("--reject", multiple=True, help="A tag that is wrong (repeatable).")
@click.option("--add", multiple=True, help="A right tag that was not proposed (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def review_command(ctx, content_id, accept, reject, add, as_json):
    """Show the review waiting for CONTENT_ID (from `tag --review`), or resume it with a decision."""
    _require_kb(ctx)
    if not content_id:
        raise click.UsageError("name the content: llm4tag review CONTENT_ID (tag --review prints it)")
    try:
        if not (accept or reject or add):
            waiting = _tagger(ctx).pending_review(content_id=content_id)
            if waiting is None:
                _fail(Llm4tagError(f"no review is waiting for {content_id!r}; tag the text with --review first"))
            if as_json:
                click.echo(json.dumps(waiting, indent=2, ensure_ascii=False))
                return
            click.echo(f"waiting for a review: {' '.join(waiting['text'].split())[:200]}")
            for t in waiting["proposed"]:
                conf = "   -  " if t.get("confidence") is None else f"{t['confidence']:.3f}"
                click.echo(f"  proposed {conf}  {t['tag']}")
            if waiting.get("other_candidates"):
                click.echo(f"  other candidates: {', '.join(waiting['other_candidates'])}")
            if waiting.get("error"):
                click.echo(f"  last decision refused: {waiting['error']}")
            return
        result = _tagger(ctx).review(content_id, accept=accept, reject=reject, add=add)
    except Llm4tagError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for note in result.get("notes") or []:
        click.echo(f"note: {note}", err=True)
    _print_tags(result)


@main.command("learn")
@click.argument("text", required=False)
@click.option("--correct", "-c", multiple=True, help="A tag that is right for the text (repeatable).")
@click.option("--incorrect", "-i", multiple=True, help="A tag that is wrong for the text (repeatable).")
@click.option("--id", "sample_id", default=None, help="The sample's id (default: derived from the text).")
@click.option("--replace", is_flag=True, help="The id holds another text: replace it (its sample and graph edges).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def learn_command(ctx, text, correct, incorrect, sample_id, replace, as_json):
    """Correct the tags of TEXT (or standard input): the right ones and the wrong ones.

    The verdict is stored at once as an annotated sample and graph edges: tagging the same text
    again returns its right tags and none of its wrong ones, and similar texts learn from it."""
    _require_kb(ctx)
    if not correct and not incorrect:
        raise click.UsageError("name at least one tag: --correct TAG (right) or --incorrect TAG (wrong), each repeatable")
    content = read_text_argument(text)
    try:
        result = _tagger(ctx).learn(
            content,
            [argument_text(t, "--correct") for t in correct],
            [argument_text(t, "--incorrect") for t in incorrect],
            sample_id=sample_id,
            replace=replace,
        )
    except Llm4tagError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    marked = [
        f"right: {', '.join(result['correct'])}" if result["correct"] else "",
        f"wrong: {', '.join(result['incorrect'])}" if result["incorrect"] else "",
    ]
    click.echo(
        f"learned {result['id']} ({'; '.join(m for m in marked if m)}); the knowledge base holds {result['samples']} samples"
        + ("; the learned recall path is retraining in the background" if result.get("retraining") else "")
    )


WORKERS_OPTION = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Tag this many contents at once: model worker processes, each with its own llama.cpp and one core "
    "(threads for an ollama backend). Default 1 (env LLM4TAG_WORKERS).",
)


@main.command("index")
@click.argument("in_path", type=click.Path(dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
@WORKERS_OPTION
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this machine (--workers processes); ray: Ray Data, an actor pool of --workers taggers on a local Ray "
    "instance or the cluster at --ray-address (pip install 'llm4tag[ray]'; docs/scaling.md).",
)
@click.option("--ray-address", default=None, help="A running Ray cluster (ray://HEAD:10001, or auto); unset: a local Ray instance.")
@context_options
@click.pass_context
def index_command(ctx, in_path, out_path, workers, engine, ray_address, **options):
    """Tag every line of IN.jsonl into OUT.jsonl; re-run to resume after an interruption."""
    from tqdm import tqdm

    from agent.batch import run_batch

    context = build_context(ctx, workers=workers, **options)
    _start_remote_backend(context)
    bar = None

    def on_item(report, item):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=report.total, desc="tagging", unit="item", file=sys.stderr)
        bar.update(1)
        if item.error:
            bar.write(f"line {item.line}: {item.error}", file=sys.stderr)

    try:
        report = run_batch(in_path, out_path, context, on_item=on_item, workers=context.workers, engine=engine, ray_address=ray_address)
    except Llm4tagError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; run the same command again to resume (finished items in {out_path} are kept)")
    finally:
        if bar is not None:
            bar.close()
    click.echo(
        f"{report.tagged} tagged, {report.skipped_done} already done, {len(report.failed)} failed, "
        f"{len(report.errors)} bad lines → {out_path}"
    )
    if report.failed or report.errors:
        raise click.ClickException(
            f"{len(report.failed) + len(report.errors)} items were not tagged (their error lines are in {out_path}); "
            "fix the cause (bad lines, the model or server) and run the same command again: it retries only those"
        )


@main.command("eval")
@click.argument("labelled", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    default="eval-out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for metrics.json, report.md, the plot and per-item results (re-run to resume; results computed "
    "from an earlier state of the knowledge base or other settings are set aside).",
)
@click.option(
    "--systems",
    default=",".join(("full", "no-calibration", "embedding-match", "knn")),
    show_default=True,
    help="Comma-separated: full, paper, no-llm, no-generation, no-judge, no-calibration, match-recall, no-examples, no-knowledge, "
    "no-fine-tuning, no-learned-calibration, no-learned-recall, taggpt, embedding-match, knn, learned-recall, recall-order.",
)
@click.option("--items", "limit", type=int, default=None, help="Evaluate only the first N items.")
@click.option("--seed", type=int, default=None, help="Evaluate a seeded random sample of --items instead of the first ones.")
@click.option(
    "--offset", type=int, default=0, show_default=True, help="Skip this many (sampled) items first, e.g. to split a run across processes."
)
@click.option(
    "--report-only", is_flag=True, help="Run nothing: summarise the items every chosen system has finished (e.g. while a run goes on)."
)
@click.option(
    "--out-of-domain",
    "ood_files",
    type=click.Path(dir_okay=False, exists=True),
    multiple=True,
    help="Texts that fit none of the tags (e.g. bench/out_of_domain.jsonl, another data set's JSONL), mixed in to "
    "measure abstention. Repeatable: each file's share left untagged is reported too.",
)
@click.option(
    "--ood-items", type=click.IntRange(min=1), default=50, show_default=True, help="How many out-of-domain texts per file (seeded sample)."
)
@click.option(
    "--cold-start",
    "cold_start",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="Simulate new tags: a seeded share (e.g. 0.1) of the tags lose their history in a copy of the knowledge base "
    "made for the run (names and descriptions stay); their items are reported apart as 'cold'.",
)
@click.option(
    "--external",
    "external",
    multiple=True,
    metavar="NAME=FILE",
    help="Score another tool's answers for the same items side by side (JSONL with id and predicted), e.g. "
    "annif-omikuji=bench/out/annif-debtags-validation/items-annif-omikuji.jsonl. Repeatable.",
)
@context_options
@click.pass_context
def eval_command(ctx, labelled, out_dir, systems, limit, seed, offset, report_only, ood_files, ood_items, cold_start, external, **options):
    """Evaluate on LABELLED.jsonl (text + tags): paper metrics, baselines and ablations side by side."""
    from tqdm import tqdm

    from agent.evaluation import comparison_rows, evaluate, load_labelled, load_out_of_domain

    context = build_context(ctx, **options)
    bars: dict[str, tqdm] = {}

    def progress(system, done, total):
        if system not in bars:
            bars[system] = tqdm(total=total, desc=system, unit="item", file=sys.stderr)
        bars[system].update(done - bars[system].n)

    try:
        items = load_labelled(labelled, limit, seed, offset)
        stems = [Path(path).stem for path in ood_files]
        names = [f"{Path(path).parent.name}-{stem}" if stems.count(stem) > 1 else stem for path, stem in zip(ood_files, stems)]
        ood = [
            item
            for path, name in zip(ood_files, names)
            for item in load_out_of_domain(path, ood_items, source=name if len(ood_files) > 1 else None)
        ]
        named = {}
        for spec in external:
            name, sep, path = spec.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise click.BadParameter(f"{spec!r} is not NAME=FILE", param_hint="--external")
            named[name.strip()] = path.strip()
        groups = {}
        if cold_start is not None:
            from agent.evaluation.cold_start import cold_start_kb
            from agent.runtime import get_knowledge_base

            _require_kb(ctx)
            click.echo(f"making a copy of the knowledge base in which {cold_start:.0%} of the tags have no history …", err=True)
            copy, cold = cold_start_kb(get_knowledge_base(context.kb_dir), out_dir, cold_start, 13 if seed is None else seed)
            context = context.with_overrides(kb_dir=str(copy))
            groups["cold"] = {i.id for i in items if set(i.tags) & set(cold)}
            groups["warm"] = {i.id for i in items if i.id not in groups["cold"]}
            click.echo(f"{len(cold)} tags without history; {len(groups['cold'])} of the {len(items)} items carry one", err=True)
        metrics = evaluate(
            items,
            context,
            out_dir,
            [s.strip() for s in systems.split(",") if s.strip()],
            progress=progress,
            report_only=report_only,
            out_of_domain=ood,
            external=named,
            groups=groups,
        )
    except Llm4tagError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; run the same command again to resume (results so far are in {out_dir})")
    finally:
        for bar in bars.values():
            bar.close()
    if metrics.get("stale_results_set_aside"):
        click.echo(
            f"the knowledge base or the settings changed since the results in {out_dir} were computed: they were moved to "
            f"{metrics['stale_results_set_aside']} and every item ran again",
            err=True,
        )
    header, rows = comparison_rows(metrics)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    for system, m in metrics["systems"].items():
        if "confidence" in m:
            c = m["confidence"]
            click.echo(
                f"{system}: confidence ECE {c['ECE']:.3f}, Brier {c['Brier']:.3f}, AUROC {c['AUROC'] if c['AUROC'] is None else round(c['AUROC'], 3)}"
            )
    for system, a in (metrics.get("abstention") or {}).items():
        mixed = f", mixed-set ECE {a['mixed_confidence']['ECE']:.3f}" if a.get("mixed_confidence") else ""
        sources = "".join(f"; {name} {b['untagged']:.0%}" for name, b in (a.get("by_source") or {}).items())
        click.echo(
            f"{system}: {a['untagged']:.0%} of {a['items']} out-of-domain items left untagged ({a['in_domain_untagged']:.0%} of in-domain items){mixed}{sources}"
        )
    for system, m in metrics["systems"].items():
        if "best_cut" in m:
            b = m["best_cut"]
            click.echo(
                f"{system}: micro-F1 {m['at_threshold']['f1_micro']:.3f} at the default threshold, {b['f1_micro']:.3f} at its best cut {b['threshold']:.3f}"
            )
    for group, g in (metrics.get("groups") or {}).items():
        click.echo(f"{group} items ({g['items']}): " + ", ".join(f"{s} {m[metrics['headline']]:.3f}" for s, m in g["systems"].items()))
    for name, f in (metrics.get("fusion_out_of_fold") or {}).items():
        click.echo(f"fused out of fold, {name}: {metrics['headline']} {f[metrics['headline']]:.3f}, ECE {f['ECE']:.3f}")
    click.echo(f"→ {out_dir}/metrics.json, {out_dir}/report.md")


@main.command("optimize")
@click.argument("validation", type=click.Path(dir_okay=False))
@click.option("--metric", default="HR#3", show_default=True, type=click.Choice(["#Right", "HR#1", "HR#2", "HR#3"]))
@click.option("--items", "limit", type=int, default=300, show_default=True)
@click.option(
    "--from-eval",
    "eval_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also sweep the confidence threshold over a finished eval folder's items-full.jsonl.",
)
@click.option(
    "--mode",
    "threshold_mode",
    type=click.Choice(["multi", "single"]),
    default="multi",
    show_default=True,
    help="Metrics for the threshold sweep: multi-tag or single-tag.",
)
@click.option(
    "--coverage",
    type=float,
    default=None,
    help="With --from-eval: the highest threshold that still tags this share of items (e.g. 0.9), instead of the best F1.",
)
@click.option(
    "--apply",
    is_flag=True,
    help="Write the best recall settings (and, with --from-eval, the threshold) into the knowledge base's config.json.",
)
@click.pass_context
def optimize_command(ctx, validation, metric, limit, eval_dir, threshold_mode, coverage, apply):
    """Sweep δ_ct, δ_cc and the meta-path caps (and the confidence threshold) on labelled data."""
    from dataclasses import replace

    from tqdm import tqdm

    from agent.batch import read_finished
    from agent.evaluation import load_labelled, optimize_recall, optimize_threshold, threshold_for_coverage

    _require_kb(ctx)
    try:
        items = load_labelled(validation, limit)
        bar = tqdm(desc="settings", unit="setting", file=sys.stderr)

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        rows = optimize_recall(items, ctx.obj["kb_dir"], metric, progress=progress)
        bar.close()
    except Llm4tagError as exc:
        _fail(exc)
    click.echo(f"recall settings on {len(items)} items, best {metric} first:")
    for r in rows[:10]:
        click.echo(
            f"  δ_ct {r['delta_ct']:.2f}  δ_cc {r['delta_cc']:.2f}  C2T≤{r['max_c2t']}  C2C2T≤{r['max_c2c2t']}  "
            f"#Right {r['#Right']:.2f}  HR#1 {r['HR#1']:.3f}  HR#2 {r['HR#2']:.3f}  HR#3 {r['HR#3']:.3f}  no graph candidate {r['no_graph_candidate']:.1%}"
        )
    if eval_dir:
        records = list(read_finished(Path(eval_dir) / "items-full.jsonl").values())
        if not records:
            raise click.ClickException(f"{eval_dir}/items-full.jsonl has no results; run llm4tag eval with the 'full' system first")
        if coverage is not None:
            try:
                best_threshold = threshold_for_coverage(records, coverage, threshold_mode)
            except Llm4tagError as exc:
                _fail(exc)
            headline = "f1_micro" if threshold_mode == "single" else "Acc@1"
            click.echo(
                f"highest confidence threshold tagging ≥ {coverage:.0%} of the items: {best_threshold['threshold']:.2f} "
                f"(coverage {best_threshold['coverage']:.1%}, {headline} {best_threshold[headline]:.3f}); "
                f"use --threshold {best_threshold['threshold']:.2f} or --apply"
            )
        else:
            best_threshold = optimize_threshold(records, mode=threshold_mode)[0]
            click.echo(
                f"best confidence threshold by micro F1: {best_threshold['threshold']:.2f} (F1 {best_threshold['f1_micro']:.3f}); "
                f"use --threshold {best_threshold['threshold']:.2f} or --apply"
            )
    if apply:
        kbase = _open_kb(ctx)
        best = rows[0]
        config = replace(
            kbase.config,
            recall=kbase.config.recall.with_overrides(
                delta_ct=best["delta_ct"], delta_cc=best["delta_cc"], max_c2t=best["max_c2t"], max_c2c2t=best["max_c2c2t"]
            ),
        )
        if eval_dir:
            config = replace(config, threshold=best_threshold["threshold"])
        kbase.update_config(config)
        click.echo(f"wrote the best recall settings{' and threshold' if eval_dir else ''} to {kbase.directory / 'config.json'}")


@main.command("train")
@click.option("--max-samples", type=int, default=2000, show_default=True, help="At most this many samples, chosen to cover tags evenly.")
@click.option("--epochs", type=int, default=None, help="Passes over the records (default 2; 1 with --since-last).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Learning rate.")
@click.option("--lora-r", type=int, default=16, show_default=True, help="LoRA rank.")
@click.option("--since-last", is_flag=True, help="Train on the samples added since the last run, going on from its adapter.")
@click.option("--prepare-only", is_flag=True, help="Only build the training sets; print the command that fine-tunes on another machine.")
@click.option(
    "--adapter",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Skip training: export and record an adapter trained elsewhere (finetune.py's adapter/ folder).",
)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda")
@click.option(
    "--work-dir", type=click.Path(file_okay=False), default=None, help="Where sets, checkpoints and the model go (default KB/training)."
)
@click.option("--name", default="llm4tag-tagger", show_default=True, help="Model name (GGUF file and Ollama model).")
@click.option("--mode", type=click.Choice(["multi", "single"]), default=None, help="Tagging mode the generation targets follow.")
@click.option(
    "--rounds",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="2: a second round trains the judge on the first round's wrong proposals.",
)
@click.option("--mistake-samples", type=int, default=200, show_default=True, help="Samples the second round generates for.")
@click.option(
    "--serve",
    type=click.Choice(["merged", "adapter"]),
    default="merged",
    show_default=True,
    help="merged: a Q8_0 GGUF with the fine-tune merged in (+ Ollama Modelfile), faster; adapter: a LoRA adapter GGUF of a few MB.",
)
@click.option(
    "--time-limit", type=float, default=None, help="Stop each round's training after this many minutes (most useful records first)."
)
@click.pass_context
def train_command(
    ctx,
    max_samples,
    epochs,
    batch_size,
    lr,
    lora_r,
    since_last,
    prepare_only,
    adapter,
    device,
    work_dir,
    name,
    mode,
    rounds,
    mistake_samples,
    serve,
    time_limit,
):
    """Fine-tune the embedded model on the knowledge base's samples (generator and Yes/No judge), export
    a GGUF and an Ollama Modelfile, and make it this knowledge base's model. Needs llm4tag[train]."""
    from agent.training import train_model

    bars: dict[str, _Bar] = {}

    def progress(what, done, total):
        bars.setdefault(what, _Bar(what))(done, total)

    try:
        epochs = epochs or (1 if since_last else 2)
        summary = train_model(
            _open_kb(ctx),
            work_dir,
            max_samples=max_samples,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lora_r=lora_r,
            since_last=since_last,
            prepare_only=prepare_only,
            adapter=adapter,
            device=device,
            context=Context.from_env(mode=mode),
            name=name,
            rounds=rounds,
            mistake_samples=mistake_samples,
            serve=serve,
            time_limit=time_limit,
            progress=progress,
        )
    except Llm4tagError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; run the same command again to resume from the last checkpoint")
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(json.dumps(summary, indent=2))


@main.command("train-demo")
@click.option("--samples", type=int, default=200, show_default=True, help="Samples of the demo's history to fine-tune on.")
@click.option(
    "--mistake-samples",
    type=int,
    default=80,
    show_default=True,
    help="Samples whose wrong generated tags become judge negatives in the second round.",
)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--lora-r", type=int, default=8, show_default=True, help="LoRA rank (8: a 5 MB adapter).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--calibration-items", type=int, default=None, help="Use only this many of calibration.jsonl's items (default all).")
@click.option("--work-dir", type=click.Path(file_okay=False), default=None, help="Scratch folder (default $LLM4TAG_HOME/demo-model-build).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the shipped files go (default knowledge_base/demo_data/model).",
)
@click.option("--foreign-items", type=int, default=None, help="Use only this many of foreign.jsonl's texts (a seeded sample; default all).")
@click.option("--refit-only", is_flag=True, help="Keep the shipped adapter; refit only the fusion and the threshold (no fine-tuning).")
def train_demo_command(samples, mistake_samples, epochs, lora_r, seed, calibration_items, foreign_items, work_dir, out_dir, refit_only):
    """Rebuild the demo's shipped model from knowledge_base/demo_data/: fine-tune on CPU (two rounds),
    write the LoRA adapter GGUF, fit the fusion (with foreign texts among its fitting data) and
    choose the threshold with the best micro-F1. Needs llm4tag[train] (not with --refit-only)."""
    from agent.demo_model import DEMO_MODEL
    from agent.training.demo import build_demo_model
    from knowledge_base.config import llm4tag_home

    bars: dict[str, _Bar] = {}

    def progress(what, done, total):
        bars.setdefault(what, _Bar(what))(done, total)

    try:
        described = build_demo_model(
            work_dir or llm4tag_home() / "demo-model-build",
            out_dir or DEMO_MODEL,
            samples=samples,
            mistake_samples=mistake_samples,
            epochs=epochs,
            lora_r=lora_r,
            seed=seed,
            calibration_items=calibration_items,
            foreign_items=foreign_items,
            refit_only=refit_only,
            progress=progress,
            log=lambda m: click.echo(m, err=True),
        )
    except Llm4tagError as exc:
        _fail(exc)
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(json.dumps({k: v for k, v in described.items() if k not in ("training", "fusion_report")}, indent=2, default=str))


@main.command("calibrate")
@click.argument("validation", type=click.Path(dir_okay=False))
@click.option("--items", "limit", type=int, default=300, show_default=True)
@click.option("--seed", type=int, default=13, show_default=True, help="Seed of the random sample of --items.")
@click.option(
    "--offset",
    type=int,
    default=0,
    show_default=True,
    help="Skip this many sampled items first: with eval's --seed and --items N, --offset N fits on items the eval does not use.",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "logistic", "isotonic"]),
    default="auto",
    show_default=True,
    help="auto: whichever has the lower out-of-fold Brier score; none is kept if neither beats the raw P(Yes).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Evaluation folder to use or fill (default KB/calibration-run).",
)
@context_options
@click.pass_context
def calibrate_command(ctx, validation, limit, seed, offset, kind, out_dir, **options):
    """Fit a learned calibration (judge P(Yes) + recall evidence → P(right)) on labelled VALIDATION items."""
    from agent.evaluation import choose_and_fit

    context = build_context(ctx, **options).with_overrides(use_learned_calibration=False)
    try:
        kbase = _open_kb(ctx)
        report = choose_and_fit(kbase, validation, context, out_dir or kbase.directory / "calibration-run", limit, seed, kind, offset)
    except Llm4tagError as exc:
        _fail(exc)
    click.echo(json.dumps(report, indent=2))


@main.command("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=7860, show_default=True, type=int)
@click.option("--share", is_flag=True, help="Ask Gradio for a public share link (needs network and --token).")
@click.option(
    "--token",
    envvar="LLM4TAG_API_TOKEN",
    default=None,
    help="Token every request then needs (env LLM4TAG_API_TOKEN); required beyond loopback and with --share.",
)
@click.pass_context
def app_command(ctx, host, port, share, token):
    """Start the Gradio app (tagging, review, batch, knowledge base) with its API and MCP server."""
    from .guard import require_token_beyond_loopback

    try:
        require_token_beyond_loopback(host, token, share)  # before the slow imports
        _require_kb(ctx)
        from .app import launch

        launch(kb_dir=ctx.obj["kb_dir"], host=host, port=port, share=share, token=token)
    except Llm4tagError as exc:
        _fail(exc)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on; beyond loopback a token is required.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--token", envvar="LLM4TAG_API_TOKEN", default=None, help="Bearer token that write endpoints (learn) require (env LLM4TAG_API_TOKEN)."
)
@click.option(
    "--max-body", "max_body", type=int, default=None, help="Largest request body in bytes (default 1000000, env LLM4TAG_API_MAX_BODY)."
)
@WORKERS_OPTION
@context_options
@click.pass_context
def serve_command(ctx, host, port, token, max_body, workers, **options):
    """Start the REST API: tag, tag-batch, learn, tags, health; OpenAPI spec at /openapi.json."""
    from .rest import serve

    context = build_context(ctx, workers=workers, **options)
    try:
        serve(ctx.obj["kb_dir"], host=host, port=port, token=token, max_body_bytes=max_body, context=context)
    except (Llm4tagError, ValueError) as exc:
        _fail(exc)


@main.command("mcp")
@context_options
@click.pass_context
def mcp_command(ctx, **options):
    """Serve the MCP tools tag, recall, learn and search_tags over stdio (for agents' MCP clients)."""
    from .mcp import run_stdio

    context = build_context(ctx, **options)
    try:
        run_stdio(context)
    except Llm4tagError as exc:
        _fail(exc)


@main.command("config")
@click.pass_context
def show_config(ctx):
    """Print the configuration in effect: the tagging run's (defaults plus LLM4TAG_* variables), with
    the knowledge base, threshold and model it resolves to when the knowledge base exists, and this
    process's settings."""
    from knowledge_base.demo import demo_kb_dir
    from knowledge_base.settings import settings

    try:
        context, process = Context.from_env(kb_dir=ctx.obj["kb_dir"]), settings()
        run = asdict(context)
        folder = Path(context.kb_dir).expanduser() if context.kb_dir else demo_kb_dir()
        if (folder / "config.json").is_file():  # never builds the demo knowledge base just to show it
            from agent.tagger import tagger_for

            rt = tagger_for(context.kb_dir)
            run.update(kb_dir=str(rt.kb.directory), threshold=rt.threshold(context), backend=rt.backend_spec(context))
        else:
            run["kb_dir"] = f"{folder} (not built yet)"
    except (ValueError, Llm4tagError) as exc:
        _fail(exc)
    click.echo(json.dumps({"run": run, "process": process.variables()}, indent=2))


if __name__ == "__main__":
    main()
