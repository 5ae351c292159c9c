"""Evaluation: the paper's metrics, baselines and ablations side by side, and threshold tuning.

``evaluate()`` runs a chosen set of systems over the same labelled items and writes, into one
output folder: ``items-<system>.jsonl`` (per-item results, appended as they come, so an
interrupted run resumes where it stopped), ``metrics.json`` (every figure), ``report.md`` (tables
and plots) and ``accuracy_vs_coverage.png`` (the paper's Figure 8).

Systems
- ``full``: the whole pipeline as configured.
- ``no-calibration``: the same run's generator output, in its order, before the judge — the
  generate step is deterministic (temperature 0), so it equals a run with calibration off.
- ``match-recall``, ``no-examples``, ``no-knowledge``: ablations (one module switched off).
- ``no-fine-tuning``: the full pipeline on the shipped base model, ignoring the knowledge base's
  fine-tuned model and learned calibration; ``no-learned-calibration``: the raw P(Yes) as confidence.
- ``taggpt``: TagGPT-style — match recall, zero-shot selection, no examples/knowledge/calibration.
- ``embedding-match``: the top tags by cosine (the paper's BGE/GTE row, with our encoder); no LLM.
- ``knn``: tags of the most similar history items by similarity-weighted votes; no LLM.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Callable, Iterable, Sequence

from knowledge_base.errors import InputError, LoadError
from knowledge_base.loaders import read_samples
from knowledge_base.recall import c2c2t_votes, recall_candidates

from .batch import read_finished
from .calibration import compare_out_of_fold, confidence_of, evidence_features, judged_pairs
from .context import Context
from .metrics import acc_at_k, coverage_at_k, recall_hits
from .resources import embed, get_knowledge_base

LLM_SYSTEMS: dict[str, dict] = {
    "full": {},
    "match-recall": {"use_graph_recall": False},
    "no-examples": {"use_examples": False},
    "no-knowledge": {"use_knowledge": False},
    "taggpt": {"use_graph_recall": False, "use_examples": False, "use_knowledge": False, "use_calibration": False, "history_keep": None},
    "no-fine-tuning": {"backend": "<base model>", "use_learned_calibration": False},
    "no-learned-calibration": {"use_learned_calibration": False},
}
DERIVED_SYSTEMS = {"no-calibration": "full"}
RETRIEVAL_SYSTEMS = ("embedding-match", "knn")
ALL_SYSTEMS = (*LLM_SYSTEMS, *DERIVED_SYSTEMS, *RETRIEVAL_SYSTEMS)
DEFAULT_SYSTEMS = ("full", "no-calibration", "embedding-match", "knn")


@dataclass
class Item:
    id: str
    text: str
    tags: list[str]


def load_labelled(path: str | Path, limit: int | None = None, seed: int | None = None, offset: int = 0) -> list[Item]:
    """Labelled items from a JSONL/CSV/TSV file; with ``seed``, a seeded random sample of ``limit``
    (files sorted by label, like banking77's test split, need one), else the first ``limit``.
    ``offset`` skips that many first: the same seed with ``offset`` N gives items disjoint from
    the first N (e.g. fit a calibration on other items than an evaluation's)."""
    parsed = read_samples(path, on_error="skip")
    items = [Item(s.id, s.text, list(s.tags)) for s in parsed.records if s.tags]
    if not items:
        raise LoadError("no labelled items (lines with text and tags) found", str(path))
    if seed is not None:
        random.Random(seed).shuffle(items)
    items = items[offset:]
    return items[:limit] if limit else items


# ---- metrics ---------------------------------------------------------------------------------
def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _column_means(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(mean(x[i] for x in rows) if rows else 0.0 for i in range(3))  # type: ignore[return-value]


def precision_recall_f1(predictions: Sequence[Sequence[str]], truths: Sequence[Iterable[str]]) -> dict:
    tp = fp = fn = 0
    per_doc = []
    for pred, truth in zip(predictions, truths):
        pred, truth = set(pred), set(truth)
        hit = len(pred & truth)
        tp, fp, fn = tp + hit, fp + len(pred) - hit, fn + len(truth) - hit
        p = hit / len(pred) if pred else 0.0
        r = hit / len(truth) if truth else 0.0
        per_doc.append((p, r, _f1(p, r)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    doc_p, doc_r, doc_f1 = _column_means(per_doc)
    return {"precision_micro": p, "recall_micro": r, "f1_micro": _f1(p, r),
            "precision_doc": doc_p, "recall_doc": doc_r, "f1_doc": doc_f1}


def precision_at_k(predictions, truths, k: int) -> float:
    return mean(sum(t in set(truth) for t in list(pred)[:k]) / k for pred, truth in zip(predictions, truths)) if predictions else 0.0


def ndcg_at_k(predictions, truths, k: int) -> float:
    scores = []
    for pred, truth in zip(predictions, truths):
        truth = set(truth)
        dcg = sum(1 / math.log2(i + 2) for i, t in enumerate(list(pred)[:k]) if t in truth)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(truth))))
        scores.append(dcg / ideal if ideal else 0.0)
    return mean(scores) if scores else 0.0


def f1_at_k(predictions, truths, k: int) -> float:
    return precision_recall_f1([list(p)[:k] for p in predictions], truths)["f1_doc"]


def multi_tag_metrics(predictions, truths) -> dict:
    out = {f"Acc@{k}": acc_at_k(predictions, truths, k) for k in (1, 2, 3)}
    out |= {f"Coverage@{k}": coverage_at_k(predictions, k) for k in (1, 2, 3)}
    out |= precision_recall_f1(predictions, truths)
    out |= {f"P@{k}": precision_at_k(predictions, truths, k) for k in (1, 3, 5)}
    out |= {f"NDCG@{k}": ndcg_at_k(predictions, truths, k) for k in (3, 5)}
    out["F1@5"] = f1_at_k(predictions, truths, 5)
    return out


def single_tag_metrics(predictions, truths) -> dict:
    """Top-1 prediction vs the first true tag: accuracy, micro and macro P/R/F1, coverage."""
    pairs = [(p[0] if p else None, list(t)[0]) for p, t in zip(predictions, truths)]
    answered = [(p, t) for p, t in pairs if p is not None]
    correct = sum(p == t for p, t in answered)
    precision = correct / len(answered) if answered else 0.0
    recall = correct / len(pairs) if pairs else 0.0
    labels = {t for _, t in pairs} | {p for p, _ in answered}
    per_label = []
    for label in labels:
        tp = sum(p == label and t == label for p, t in answered)
        pp = sum(p == label for p, _ in answered)
        ap = sum(t == label for _, t in pairs)
        lp, lr = (tp / pp if pp else 0.0), (tp / ap if ap else 0.0)
        per_label.append((lp, lr, _f1(lp, lr)))
    macro_p, macro_r, macro_f1 = _column_means(per_label)
    return {
        "accuracy": recall,
        "precision_micro": precision,
        "recall_micro": recall,
        "f1_micro": _f1(precision, recall),
        "precision_macro": macro_p,
        "recall_macro": macro_r,
        "f1_macro": macro_f1,
        "Coverage@1": len(answered) / len(pairs) if pairs else 0.0,
    }


def confidence_metrics(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> dict:
    """Expected calibration error, Brier score and AUROC of confidence for right vs wrong tags."""
    if not pairs:
        return {}
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(c, y) for c, y in pairs if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if members:
            ece += len(members) / len(pairs) * abs(mean(c for c, _ in members) - mean(y for _, y in members))
    brier = mean((c - y) ** 2 for c, y in pairs)
    pos = sorted(c for c, y in pairs if y)
    neg = sorted(c for c, y in pairs if not y)
    auroc = None
    if pos and neg:
        wins = sum(sum(1.0 if p > n else 0.5 if p == n else 0.0 for n in neg) for p in pos)
        auroc = wins / (len(pos) * len(neg))
    return {"ECE": ece, "Brier": brier, "AUROC": auroc, "pairs": len(pairs), "share_correct": mean(y for _, y in pairs)}


def learned_confidence_metrics(records: list[dict], folds: int = 5) -> dict:
    """Calibration error of each learned calibration, out of fold (fitted without the item scored)."""
    features, labels, groups, _ = judged_pairs(records)
    if len(labels) < 5 * folds or len(set(labels)) < 2:
        return {}
    return compare_out_of_fold(features, labels, groups, folds=folds)


def accuracy_vs_coverage(records: list[dict], steps: int = 20) -> list[dict]:
    """For each confidence threshold: share of items keeping a tag, and Acc@1 on those items."""
    curve = []
    for i in range(steps + 1):
        th = i / steps
        kept = []
        for r in records:
            tags = sorted(((confidence_of(j), j["tag"]) for j in r.get("judged", []) if confidence_of(j) >= th), reverse=True)
            if tags:
                kept.append(tags[0][1] in set(r["truth"]))
        curve.append({"threshold": th, "coverage": len(kept) / len(records) if records else 0.0, "accuracy": mean(kept) if kept else None})
    return curve


# ---- running ---------------------------------------------------------------------------------
def _run_llm_item(item: Item, ctx: Context) -> dict:
    from .tagging import tag

    result = tag(item.text, content_id=item.id, context=ctx)
    by_tag = {c["tag"]: c for c in result["candidates"]}
    generated = result["selection"].get("tags", [])
    history = set(result["selection"].get("from_history", []))
    return {
        "predicted": [t["tag"] for t in result["tags"]],
        "confidences": [t["confidence"] for t in result["tags"]],
        "generated": result["selection"].get("tags", []),
        "judged": [{"tag": j["tag"], "p_yes": j["p_yes"], "confidence": j["confidence"],
                    "features": evidence_features(j["p_yes"], by_tag.get(j["tag"]), generated.index(j["tag"]) + 1 if j["tag"] in generated else 99,
                                                  j["tag"] in history)}
                   for j in result["judgments"]],
        "candidates": [c["tag"] for c in result["candidates"]],
        "from_history": result["selection"].get("from_history", []),
        "timings": result["timings"],
        "tokens": {
            "generate_prompt": result["selection"].get("prompt_tokens", 0),
            "generate_completion": result["selection"].get("completion_tokens", 0),
            "judge_prompt": sum(j["prompt_tokens"] for j in result["judgments"]),
            "judge_reused": sum(j["reused_tokens"] for j in result["judgments"]),
        },
    }


def _run_retrieval_item(item: Item, system: str, ctx: Context) -> dict:
    kb = get_knowledge_base(ctx.kb_dir)
    vector, _ = embed(kb, item.text)
    k = ctx.tag_limit
    if system == "embedding-match":
        cfg = kb.config.recall.with_overrides(strategy="match", budget=max(k, ctx.budget or kb.config.recall.budget))
        result = recall_candidates(kb, item.text, cfg, exclude_ids=[item.id], vector=vector)
        ranked = [(c.tag, c.score) for c in result.candidates]
    else:
        similar = kb.similar_contents(vector, kb.config.recall.similar_contents, exclude=[item.id])
        votes = c2c2t_votes(kb, similar)
        ranked = sorted(((t, share) for t, (share, _) in votes.items()), key=lambda x: -x[1])
    return {"predicted": [t for t, _ in ranked[:k]], "confidences": [round(s, 4) for _, s in ranked[:k]],
            "candidates": [t for t, _ in ranked], "judged": []}


def system_context(ctx: Context, system: str) -> Context:
    """The run configuration of one LLM system; ``no-fine-tuning`` pins the shipped base model."""
    overrides = dict(LLM_SYSTEMS[system])
    if overrides.get("backend") == "<base model>":
        from .llm.llamacpp import default_model_path

        overrides["backend"] = f"llamacpp:{default_model_path()}"
    return ctx.with_overrides(**overrides) if overrides else ctx


def _derived_systems(systems: Sequence[str], ctx: Context) -> dict[str, str]:
    """Systems whose results equal another run's: no-calibration always; no-knowledge when the
    knowledge base holds no documents and web search is off (its prompts are then identical)."""
    derived = {s: src for s, src in DERIVED_SYSTEMS.items() if s in systems}
    if "no-knowledge" in systems and not ctx.use_web_search and get_knowledge_base(ctx.kb_dir).collection("documents").count() == 0:
        derived["no-knowledge"] = "full"
    return derived


def evaluate(items: list[Item], context: Context, out_dir: str | Path, systems: Sequence[str] = DEFAULT_SYSTEMS,
             progress: Callable[[str, int, int], None] | None = None, report_only: bool = False) -> dict:
    """Run ``systems`` over ``items``, item by item (every system sees item i before item i+1, so an
    interrupted run leaves comparable results), append per-item results, and summarise.
    ``report_only`` runs nothing: it summarises the items every system has finished."""
    unknown = [s for s in systems if s not in ALL_SYSTEMS]
    if unknown:
        raise InputError(f"unknown systems {unknown}; choose from {', '.join(ALL_SYSTEMS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = context.with_overrides(write_back=False)  # evaluation never changes the knowledge base
    derived = _derived_systems(systems, ctx)
    runs = list(dict.fromkeys([s for s in systems if s not in derived] + list(derived.values())))
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
    return summarise(records, items, ctx, list(systems), out, derived)


def summarise(records: dict[str, list[dict]], items: list[Item], ctx: Context, systems: Sequence[str], out: Path,
              derived: dict[str, str] | None = None) -> dict:
    truths = [i.tags for i in items]
    single = ctx.mode == "single"
    metrics: dict = {"items": len(items), "mode": ctx.mode, "systems": {}, "derived": derived or {}}
    for system in systems:
        recs = records[system]
        preds = [r["predicted"] for r in recs]
        m = single_tag_metrics(preds, truths) if single else multi_tag_metrics(preds, truths)
        m["recall"] = recall_hits([r["candidates"] for r in recs], truths)
        pairs = [(confidence_of(j), j["tag"] in set(r["truth"])) for r in recs for j in r.get("judged", [])]
        if pairs:
            m["confidence"] = confidence_metrics(pairs)
            m["confidence_learned"] = learned_confidence_metrics(recs)
        metrics["systems"][system] = m
    headline = "f1_micro" if single else "Acc@1"
    if "full" in metrics["systems"]:
        full = metrics["systems"]["full"][headline]
        for system, m in metrics["systems"].items():
            base = m[headline]
            m["RI_of_full"] = (full - base) / base if base else None
    metrics["headline"] = headline
    if "full" in records:
        metrics["accuracy_vs_coverage"] = accuracy_vs_coverage(records["full"])
        plot_accuracy_vs_coverage(metrics["accuracy_vs_coverage"], out / "accuracy_vs_coverage.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(markdown_report(metrics))
    return metrics


def plot_accuracy_vs_coverage(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(c["coverage"], c["accuracy"], c["threshold"]) for c in curve if c["accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
    for cov, acc, th in pts[:: max(1, len(pts) // 6)]:
        ax.annotate(f"{th:.2f}", (cov, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("coverage (share of items with a tag)")
    ax.set_ylabel("Acc@1 on covered items")
    ax.set_title("Accuracy vs coverage over confidence thresholds")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def comparison_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    single = metrics["mode"] == "single"
    cols = ["accuracy", "f1_micro", "f1_macro", "Coverage@1"] if single else ["Acc@1", "Acc@2", "Acc@3", "Coverage@1", "Coverage@3", "f1_micro", "NDCG@5"]
    rows = []
    for system, m in metrics["systems"].items():
        ri = m.get("RI_of_full")
        rows.append([system] + [f"{m[c]:.3f}" for c in cols] + ["" if ri is None or system == "full" else f"{ri:+.1%}"])
    return ["system", *cols, f"RI of full ({metrics['headline']})"], rows


def markdown_report(metrics: dict) -> str:
    header, rows = comparison_rows(metrics)
    lines = [f"# Evaluation ({metrics['items']} items, {metrics['mode']}-tag)", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    rec = [(s, m["recall"]) for s, m in metrics["systems"].items() if "recall" in m]
    if rec:
        lines += ["", "## Candidate recall", "", "| system | #Right | HR#1 | HR#2 | HR#3 |", "|---|---|---|---|---|"]
        lines += [f"| {s} | {r['#Right']:.2f} | {r['HR#1']:.3f} | {r['HR#2']:.3f} | {r['HR#3']:.3f} |" for s, r in rec]
    conf = [(s, m["confidence"]) for s, m in metrics["systems"].items() if "confidence" in m]
    if conf:
        lines += ["", "## Confidence", "", "| system | ECE | Brier | AUROC | judged tags | share right |", "|---|---|---|---|---|---|"]
        for s, c in conf:
            auroc = "" if c["AUROC"] is None else f"{c['AUROC']:.3f}"
            lines.append(f"| {s} | {c['ECE']:.3f} | {c['Brier']:.3f} | {auroc} | {c['pairs']} | {c['share_correct']:.3f} |")
            for kind, lc in metrics["systems"][s].get("confidence_learned", {}).items():
                auroc = "" if lc["AUROC"] is None else f"{lc['AUROC']:.3f}"
                lines.append(f"| {s} + learned {kind} (out of fold) | {lc['ECE']:.3f} | {lc['Brier']:.3f} | {auroc} | {lc['pairs']} | {lc['share_correct']:.3f} |")
    if metrics.get("derived"):
        lines += ["", "Derived without a run of their own: " + "; ".join(
            f"{d} = {src}'s results" + (" before the judge" if d == "no-calibration" else " (the knowledge base has no documents, so the prompts are identical)")
            for d, src in metrics["derived"].items())]
    if "accuracy_vs_coverage" in metrics:
        lines += ["", "![accuracy vs coverage](accuracy_vs_coverage.png)"]
    return "\n".join(lines) + "\n"


# ---- optimize --------------------------------------------------------------------------------
def optimize_recall(items: list[Item], kb_dir: str | None, metric: str = "HR#3", grid: dict | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Sweep recall settings on labelled items; returns every setting's figures, best first."""
    kb = get_knowledge_base(kb_dir)
    grid = grid or {"delta_ct": [0.2, 0.25, 0.3, 0.35, 0.5], "delta_cc": [0.45, 0.5, 0.55, 0.6, 0.7, 0.8], "max_c2t": [15], "max_c2c2t": [5, 10]}
    vectors = [embed(kb, i.text)[0] for i in items]
    truths = [i.tags for i in items]
    combos = [dict(delta_ct=a, delta_cc=b, max_c2t=c, max_c2c2t=d) for a in grid["delta_ct"] for b in grid["delta_cc"] for c in grid["max_c2t"] for d in grid["max_c2c2t"]]
    results = []
    for n, combo in enumerate(combos, 1):
        cfg = kb.config.recall.with_overrides(strategy="graph", **combo)
        cands, empty = [], 0
        for item, vector in zip(items, vectors):
            r = recall_candidates(kb, item.text, cfg, exclude_ids=[item.id], vector=vector)
            cands.append(r.tags)
            empty += all(p == "match" for c in r.candidates for p in c.paths)
        results.append({**combo, **recall_hits(cands, truths), "no_graph_candidate": empty / len(items)})
        if progress:
            progress(n, len(combos))
    return sorted(results, key=lambda r: -r[metric])


def optimize_threshold(records: list[dict], mode: str = "multi", metric: str | None = None) -> list[dict]:
    """Sweep the confidence threshold over a finished ``full`` evaluation's judgments."""
    from .nodes.calibrate import rank_tags

    metric = metric or "f1_micro"
    truths = [r["truth"] for r in records]
    rows = []
    for i in range(0, 21):
        th = i / 20
        preds = [[t["tag"] for t in rank_tags([{"tag": j["tag"], "confidence": confidence_of(j)} for j in r["judged"]], th)] for r in records]
        m = single_tag_metrics(preds, truths) if mode == "single" else multi_tag_metrics(preds, truths)
        rows.append({"threshold": th, **{k: v for k, v in m.items() if isinstance(v, float)}})
    return sorted(rows, key=lambda r: -r[metric])
