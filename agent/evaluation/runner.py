"""Running an evaluation: the paper's baselines and ablations side by side on the same items.

``evaluate()`` runs a chosen set of systems over the same labelled items and writes, into one
output folder: ``items-<system>.jsonl`` (per-item results, appended as they come, so an
interrupted run resumes where it stopped), ``metrics.json`` (every figure), ``report.md`` (tables
and plots) and ``accuracy_vs_coverage.png`` (the paper's Figure 8).

Systems
- ``full``: the whole pipeline as configured, the LLM steps on every item (``llm="full"``; every
  likely candidate scored, all evidence fused).
- ``auto``: the default: the LLM steps only for the items where they can change the answer
  (``agent.routing``); the share routed is in the report.
- ``paper``: the paper's pipeline: graph recall without the learned path, the generator's tags
  judged alone, P(Yes) as confidence.
- ``no-llm``: fused recall only — recall's top candidates with recall's own P(right), no model call.
- ``no-generation``, ``no-judge``: the full pipeline with the generator, or the judge, switched off.
- ``no-calibration``: the same run's generator output, in its order, before the judge — the
  generate step is deterministic (temperature 0), so it equals the generator alone.
- ``match-recall``, ``no-examples``, ``no-knowledge``: ablations (one module switched off).
- ``no-fine-tuning``: the full pipeline on the shipped base model, ignoring the knowledge base's
  fine-tuned model and learned calibration; ``no-learned-calibration``: the raw P(Yes) as confidence.
- ``taggpt``: TagGPT-style — match recall, zero-shot selection, no examples/knowledge/calibration.
- ``embedding-match``: the top tags by cosine (the paper's BGE/GTE row, with our encoder); no LLM.
- ``knn``: tags of the most similar history items by similarity-weighted votes; no LLM.
- ``learned-recall``: the knowledge base's trained classifier alone (``kb train-classifier``); no LLM.
- ``recall-order``: the candidate set in recall's own order (all paths, scores summed); no LLM.
- ``no-learned-recall``: the full pipeline without the learned recall path.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

from knowledge_base.errors import InputError
from knowledge_base.recall import c2c2t_votes, recall_candidates

from ..batch import read_finished
from ..confidence import rank_tags, scored_tags
from ..context import Context
from ..runtime import runtime_for
from ..tagging import tag
from .labelled import OUT_OF_DOMAIN, Item
from .report import summarise

LLM_SYSTEMS: dict[str, dict] = {  # every one but auto and no-llm is full's pipeline with one change (llm="full")
    "full": {},
    "auto": {"llm": "auto"},
    "paper": {"judge_top": 0, "use_learned_recall": False, "use_learned_calibration": False, "history_keep": None},
    "no-llm": {"llm": "fast"},
    "no-generation": {"use_generation": False},
    "no-judge": {"use_calibration": False},
    "match-recall": {"use_graph_recall": False},
    "no-examples": {"use_examples": False},
    "no-knowledge": {"use_knowledge": False},
    "taggpt": {"use_graph_recall": False, "use_examples": False, "use_knowledge": False, "use_calibration": False, "history_keep": None},
    "no-fine-tuning": {"use_fine_tuning": False, "use_learned_calibration": False},
    "no-learned-calibration": {"use_learned_calibration": False},
    "no-learned-recall": {"use_learned_recall": False},
}
DERIVED_SYSTEMS = {"no-calibration": "full"}
RETRIEVAL_SYSTEMS = ("embedding-match", "knn", "learned-recall", "recall-order")
ALL_SYSTEMS = (*LLM_SYSTEMS, *DERIVED_SYSTEMS, *RETRIEVAL_SYSTEMS)
DEFAULT_SYSTEMS = ("full", "no-calibration", "embedding-match", "knn")


def _run_llm_item(item: Item, ctx: Context) -> dict:
    result = tag(item.text, content_id=item.id, context=ctx)
    scored = scored_tags(result)
    # the full-coverage answer: every scored tag by confidence, no threshold (without any confidence, the final tags)
    ranked = result["tags"] if any(t["confidence"] is None for t in scored) else rank_tags(scored, None, ctx.tag_limit)
    return {
        "predicted": [t["tag"] for t in result["tags"]],
        "confidences": [t["confidence"] for t in result["tags"]],
        "ranked": [t["tag"] for t in ranked],
        "generated": result["selection"].get("tags", []),
        "judged": [
            {
                "tag": j["tag"],
                "origin": j.get("origin"),
                "p_yes": j["p_yes"],
                "confidence": j["confidence"],
                "recall_probability": j.get("recall_probability"),
                "features": j["features"],
            }
            for j in result["judgments"]
        ],
        "candidates": [c["tag"] for c in result["candidates"]],
        "from_history": result["selection"].get("from_history", []),
        "llm": bool((result.get("route") or {}).get("llm")),
        "timings": result["timings"],
        "tokens": {
            "generate_prompt": result["selection"].get("prompt_tokens", 0),
            "generate_reused": result["selection"].get("reused_tokens", 0),
            "generate_completion": result["selection"].get("completion_tokens", 0),
            "judge_prompt": sum(j["prompt_tokens"] for j in result["judgments"]),
            "judge_reused": sum(j["reused_tokens"] for j in result["judgments"]),
        },
    }


def _run_retrieval_item(item: Item, system: str, ctx: Context) -> dict:
    rt = runtime_for(ctx.kb_dir)
    kb = rt.kb
    vector, _ = rt.embed(item.text)
    k = ctx.tag_limit
    if system == "embedding-match":  # the plain baseline: no memory of verdicts either
        cfg = replace(
            kb.config.recall.with_overrides(strategy="match", budget=max(k, ctx.budget or kb.config.recall.budget)), memory_similarity=None
        )
        result = recall_candidates(kb, item.text, cfg, exclude_ids=[item.id], vector=vector)
        ranked = [(c.tag, c.score) for c in result.candidates]
    elif system == "recall-order":
        result = recall_candidates(kb, item.text, ctx.recall_config(kb.config.recall), exclude_ids=[item.id], vector=vector)
        ranked = [(c.tag, c.score) for c in result.candidates]
    elif system == "learned-recall":
        classifier = kb.classifier()
        if classifier is None:
            raise InputError(
                f"{kb.directory} has no trained classifier for the learned-recall system; run llm4tag kb train-classifier first"
            )
        ranked = classifier.predict(vector, max(k, kb.config.recall.budget), item.text)
    else:
        similar = kb.similar_contents(vector, kb.config.recall.similar_contents, exclude=[item.id])
        votes = c2c2t_votes(kb, similar)
        ranked = sorted(((t, share) for t, (share, _) in votes.items()), key=lambda x: -x[1])
    return {
        "predicted": [t for t, _ in ranked[:k]],
        "confidences": [round(s, 4) for _, s in ranked[:k]],
        "candidates": [t for t, _ in ranked],
        "judged": [],
    }


def external_records(name: str, path: str | Path, items: Sequence[Item]) -> list[dict]:
    """Another tool's answers for ``items``, as evaluation records (see ``evaluate``'s ``external``).
    An out-of-domain item (``ood:`` id) the other tool was never given counts as left untagged by it."""
    answers = read_finished(Path(path))
    missing = [i.id for i in items if i.id not in answers and not i.id.startswith(OUT_OF_DOMAIN)]
    if missing:
        raise InputError(
            f"{path} has no answer for {len(missing)} of the {len(items)} items (first: {missing[0]!r}); "
            f"score the same items (same file, --items, --seed) with the other tool first"
        )
    out = []
    for item in items:
        a = answers.get(item.id) or {}
        predicted = a.get("predicted") or [t["tag"] for t in a.get("tags") or []]
        confidences = a.get("confidences") or [t.get("confidence") for t in a.get("tags") or []]
        out.append(
            {
                "id": item.id,
                "truth": item.tags,
                "predicted": list(predicted),
                "candidates": list(predicted),
                "judged": [],
                "confidences": list(confidences)[: len(predicted)],
                "system": name,
            }
        )
    return out


def system_context(ctx: Context, system: str) -> Context:
    """The run configuration of one LLM system."""
    return ctx.with_overrides(**{"llm": "full", **LLM_SYSTEMS[system]})


def _derived_systems(systems: Sequence[str], ctx: Context) -> dict[str, str]:
    """Systems whose results equal another run's: no-calibration always; no-knowledge when the
    knowledge base holds no documents and web search is off (its prompts are then identical)."""
    derived = {s: src for s, src in DERIVED_SYSTEMS.items() if s in systems}
    if "no-knowledge" in systems and not ctx.use_web_search and runtime_for(ctx.kb_dir).kb.collection("documents").count() == 0:
        derived["no-knowledge"] = "full"
    return derived


RUN_FILE = "run.json"


def _run_fingerprint(ctx: Context) -> dict:
    """What the per-item results in an output folder were computed from: the knowledge base (its
    folder and revision, which every write and every retraining changes) and the settings."""
    kb = runtime_for(ctx.kb_dir).kb
    settings = json.dumps(asdict(ctx), sort_keys=True, default=str)
    return {"kb": str(kb.directory), "revision": kb.revision(), "settings": hashlib.sha1(settings.encode()).hexdigest()[:16]}


def _set_aside_stale_results(out: Path, ctx: Context) -> Path | None:
    """A run resumes the per-item results already in ``out`` — but only those computed from the
    same knowledge base state and settings: results of an earlier state (the classifier retrained,
    samples added, a setting changed) are moved into ``out/stale-<revision>/`` and every item runs
    again, so a re-run never reports what the knowledge base answered before."""
    now = _run_fingerprint(ctx)
    path = out / RUN_FILE
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        before = None
    finished = [out / f"items-{system}.jsonl" for system in ALL_SYSTEMS if (out / f"items-{system}.jsonl").is_file()]
    if finished and before != now:
        aside = out / f"stale-{(before or {}).get('revision', 'unknown')}-{int(time.time())}"
        aside.mkdir(parents=True, exist_ok=True)
        for f in finished:
            f.rename(aside / f.name)
        if before is not None:
            (out / RUN_FILE).rename(aside / RUN_FILE)
    else:
        aside = None
    path.write_text(json.dumps(now, indent=1), encoding="utf-8")
    return aside


def evaluate(
    items: list[Item],
    context: Context,
    out_dir: str | Path,
    systems: Sequence[str] = DEFAULT_SYSTEMS,
    progress: Callable[[str, int, int], None] | None = None,
    report_only: bool = False,
    out_of_domain: Sequence[Item] = (),
    external: dict[str, str | Path] | None = None,
    groups: dict[str, set[str]] | None = None,
) -> dict:
    """Run ``systems`` over ``items``, item by item (every system sees item i before item i+1, so an
    interrupted run leaves comparable results), append per-item results, and summarise.
    ``out_of_domain`` items (``load_out_of_domain``: no tag fits them) run after the others; the
    summary reports how many each system leaves untagged.
    ``external`` scores another tool's answers side by side: name → a JSONL file of
    ``{"id", "predicted": [tags, best first]}`` (or ``"tags": [{"tag", "confidence"}]``) for
    the same items, e.g. ``bench/annif_baseline.py``'s ``items-annif-<backend>.jsonl``.
    ``report_only`` runs nothing: it summarises the items every system has finished.
    ``groups`` names subsets of the items (e.g. ``cold``: items carrying a tag without history)
    whose figures are reported apart as well."""
    ood = list(out_of_domain)
    items = list(items) + ood
    unknown = [s for s in systems if s not in ALL_SYSTEMS]
    if unknown:
        raise InputError(f"unknown systems {unknown}; choose from {', '.join(ALL_SYSTEMS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = context.with_overrides(write_back=False)  # evaluation never changes the knowledge base
    derived = _derived_systems(systems, ctx)
    runs = list(dict.fromkeys([s for s in systems if s not in derived] + list(derived.values())))
    set_aside = None if report_only else _set_aside_stale_results(out, ctx)
    done = {system: read_finished(out / f"items-{system}.jsonl") for system in runs}
    if report_only:
        items = [i for i in items if all(i.id in done[s] for s in runs)]
        if not items:
            raise InputError(f"no item in {out} is finished for every system of {', '.join(runs)}; run the evaluation first")
        runs_to_do: list[str] = []
    else:
        runs_to_do = runs
    handles = {system: open(out / f"items-{system}.jsonl", "a", encoding="utf-8") for system in runs_to_do}
    try:
        for i, item in enumerate(items if runs_to_do else [], 1):
            for system in runs_to_do:
                if item.id not in done[system]:
                    if system in LLM_SYSTEMS:
                        body = _run_llm_item(item, system_context(ctx, system))
                    else:
                        body = _run_retrieval_item(item, system, ctx)
                    rec = {"id": item.id, "truth": item.tags, **body}
                    handles[system].write(json.dumps(rec, ensure_ascii=False) + "\n")
                    handles[system].flush()
                    done[system][item.id] = rec
                if progress:
                    progress(system, i, len(items))
    finally:
        for fh in handles.values():
            fh.close()
    records = {system: [done[system][item.id] for item in items] for system in runs}
    for name, source in derived.items():
        rows = records[source]
        if name == "no-calibration":
            rows = [{**r, "predicted": r["generated"], "confidences": [None] * len(r["generated"]), "judged": []} for r in rows]
        records[name] = rows
    for name, path in (external or {}).items():
        records[name] = external_records(name, path, items)
    systems = list(systems) + [n for n in (external or {}) if n not in systems]
    ood_ids = {i.id for i in ood}
    in_domain = [i for i in items if i.id not in ood_ids]
    by_system = {s: [r for r in rows if r["id"] not in ood_ids] for s, rows in records.items()}
    ood_records = {s: [r for r in rows if r["id"] in ood_ids] for s, rows in records.items()}
    metrics = summarise(by_system, in_domain, ctx, list(systems), out, derived, ood_records if ood_ids else None, groups)
    if set_aside is not None:
        metrics["stale_results_set_aside"] = str(set_aside)
    _remember_evaluation(ctx, out, metrics)
    return metrics


LAST_EVAL_FILE = "last-eval.json"


def _remember_evaluation(ctx: Context, out: Path, metrics: dict) -> None:
    """Where the knowledge base's latest evaluation is (the page's knowledge-base tab shows it);
    a read-only knowledge base simply keeps no pointer."""
    try:
        directory = runtime_for(ctx.kb_dir).kb.directory
        record = {
            "out": str(out.resolve()),
            "at": time.time(),
            "items": metrics["items"],
            "systems": list(metrics["systems"]),
            "headline": metrics["headline"],
            "figures": {s: m[metrics["headline"]] for s, m in metrics["systems"].items()},
        }
        (directory / LAST_EVAL_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    except OSError:
        pass


def last_evaluation(kb_dir: str | None) -> dict | None:
    """The pointer ``evaluate`` left in the knowledge base, when its folder still exists."""
    try:
        record = json.loads((runtime_for(kb_dir).kb.directory / LAST_EVAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if Path(record.get("out", "")).is_dir() else None
