"""Summaries of an evaluation run: ``metrics.json``, ``report.md`` and the accuracy-vs-coverage plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..confidence import confidence_of
from ..context import Context
from .calibration import fusion_ablation, learned_confidence_metrics
from .labelled import Item
from .metrics import accuracy_vs_coverage, confidence_metrics, multi_tag_metrics, recall_hits, single_tag_metrics


def summarise(records: dict[str, list[dict]], items: list[Item], ctx: Context, systems: Sequence[str], out: Path,
              derived: dict[str, str] | None = None, out_of_domain: dict[str, list[dict]] | None = None) -> dict:
    truths = [i.tags for i in items]
    single = ctx.mode == "single"
    metrics: dict = {"items": len(items), "mode": ctx.mode, "systems": {}, "derived": derived or {}}
    score = single_tag_metrics if single else multi_tag_metrics
    headline = "f1_micro" if single else "Acc@1"
    for system in systems:
        recs = records[system]
        # full coverage: every item answered with its best tags, whatever their confidence
        m = score([r.get("ranked", r["predicted"]) for r in recs], truths)
        thresholded = score([r["predicted"] for r in recs], truths)
        m["at_threshold"] = {headline: thresholded[headline], "coverage": sum(1 for r in recs if r["predicted"]) / len(recs) if recs else 0.0,
                             **({} if single else {"Acc@2": thresholded["Acc@2"], "Acc@3": thresholded["Acc@3"]})}
        m["recall"] = recall_hits([r["candidates"] for r in recs], truths)
        pairs = [(confidence_of(j), j["tag"] in set(r["truth"])) for r in recs for j in r.get("judged", []) if confidence_of(j) is not None]
        if pairs:
            m["confidence"] = confidence_metrics(pairs)
            m["confidence_learned"] = learned_confidence_metrics(recs)
        seconds = [sum((r.get("timings") or {}).values()) for r in recs if r.get("timings")]
        if seconds:
            m["seconds_per_item"] = sum(seconds) / len(seconds)
        metrics["systems"][system] = m
    if out_of_domain:
        metrics["abstention"] = {system: abstention(out_of_domain[system], metrics["systems"][system]) for system in systems}
    if "full" in records and any(r.get("judged") for r in records["full"]):
        metrics["fusion_out_of_fold"] = fusion_ablation(records["full"], truths, single)
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


def abstention(ood: list[dict], in_domain: dict) -> dict:
    """Out-of-domain items (no tag fits them): the share a system leaves untagged at its
    threshold, beside the share of in-domain items it leaves untagged; the mean top confidence."""
    tops = [max(c for j in r.get("judged", []) if (c := confidence_of(j)) is not None) for r in ood
            if any(confidence_of(j) is not None for j in r.get("judged", []))]
    return {"items": len(ood), "untagged": sum(1 for r in ood if not r["predicted"]) / len(ood) if ood else 0.0,
            "in_domain_untagged": 1.0 - in_domain["at_threshold"]["coverage"],
            "mean_top_confidence": sum(tops) / len(tops) if tops else None}


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
    headline = metrics["headline"]
    rows = []
    for system, m in metrics["systems"].items():
        ri = m.get("RI_of_full")
        at = m.get("at_threshold") or {}
        sec = m.get("seconds_per_item")
        rows.append([system] + [f"{m[c]:.3f}" for c in cols]
                    + [f"{at[headline]:.3f} @ {at['coverage']:.0%}" if at else "", "" if sec is None else f"{sec:.2f}"]
                    + ["" if ri is None or system == "full" else f"{ri:+.1%}"])
    return ["system", *cols, f"{headline} at threshold @ coverage", "s/item", f"RI of full ({headline})"], rows


def markdown_report(metrics: dict) -> str:
    header, rows = comparison_rows(metrics)
    lines = [f"# Evaluation ({metrics['items']} items, {metrics['mode']}-tag)", "",
             "Columns at full coverage (every item answered with its best tags, whatever their confidence), then the headline "
             "at the confidence threshold with the share of items that keep a tag.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    rec = [(s, m["recall"]) for s, m in metrics["systems"].items() if "recall" in m]
    if rec:
        lines += ["", "## Candidate recall", "", "| system | #Right | HR#1 | HR#2 | HR#3 |", "|---|---|---|---|---|"]
        lines += [f"| {s} | {r['#Right']:.2f} | {r['HR#1']:.3f} | {r['HR#2']:.3f} | {r['HR#3']:.3f} |" for s, r in rec]
    if metrics.get("abstention"):
        lines += ["", "## Abstention (out-of-domain items mixed in: no tag fits them)", "",
                  "| system | out-of-domain items | left untagged | in-domain left untagged | mean top confidence (out of domain) |", "|---|---|---|---|---|"]
        for system, a in metrics["abstention"].items():
            top = "" if a["mean_top_confidence"] is None else f"{a['mean_top_confidence']:.3f}"
            lines.append(f"| {system} | {a['items']} | {a['untagged']:.1%} | {a['in_domain_untagged']:.1%} | {top} |")
    fusion = metrics.get("fusion_out_of_fold")
    if fusion:
        lines += ["", f"## What each kind of evidence adds (the full run's scored tags, fused out of fold, {metrics['headline']} at full coverage)", "",
                  "| evidence fused | " + metrics["headline"] + " | ECE | AUROC |", "|---|---|---|---|"]
        for name, f in fusion.items():
            auroc = "" if f.get("AUROC") is None else f"{f['AUROC']:.3f}"
            lines.append(f"| {name} | {f[metrics['headline']]:.3f} | {f['ECE']:.3f} | {auroc} |")
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
