"""Summaries of an evaluation run: ``metrics.json``, ``report.md`` and the accuracy-vs-coverage plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..confidence import confidence_of
from ..context import Context
from .calibration import fusion_ablation, learned_confidence_metrics
from .labelled import Item, out_of_domain_source
from .metrics import (
    accuracy_vs_coverage,
    best_cut,
    confidence_metrics,
    multi_tag_metrics,
    per_tag_table,
    recall_hits,
    reliability_bins,
    single_tag_metrics,
)


def scored_answer(record: dict) -> list[tuple[str, float | None]]:
    """An item's answer as (tag, confidence), best first: every scored tag of a pipeline run, else
    the returned tags with their confidences."""
    if record.get("judged"):
        return sorted(((j["tag"], confidence_of(j)) for j in record["judged"]), key=lambda x: -(x[1] if x[1] is not None else -1))
    confidences = list(record.get("confidences") or [])
    return [(t, confidences[i] if i < len(confidences) else None) for i, t in enumerate(record.get("ranked", record["predicted"]))]


def summarise(
    records: dict[str, list[dict]],
    items: list[Item],
    ctx: Context,
    systems: Sequence[str],
    out: Path,
    derived: dict[str, str] | None = None,
    out_of_domain: dict[str, list[dict]] | None = None,
    groups: dict[str, set[str]] | None = None,
) -> dict:
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
        m["at_threshold"] = {
            headline: thresholded[headline],
            "coverage": sum(1 for r in recs if r["predicted"]) / len(recs) if recs else 0.0,
            "f1_micro": thresholded["f1_micro"],
            **({} if single else {"Acc@2": thresholded["Acc@2"], "Acc@3": thresholded["Acc@3"]}),
        }
        cut = best_cut([scored_answer(r) for r in recs], truths, ctx.tag_limit)
        if cut is not None:
            m["best_cut"] = cut
        m["recall"] = recall_hits([r["candidates"] for r in recs], truths)
        pairs = [(confidence_of(j), j["tag"] in set(r["truth"])) for r in recs for j in r.get("judged", []) if confidence_of(j) is not None]
        if pairs:
            m["confidence"] = confidence_metrics(pairs)
            m["confidence_learned"] = learned_confidence_metrics(recs)
            m["reliability"] = reliability_bins(pairs)
        table = per_tag_table([r["predicted"] for r in recs], truths, [scored_answer(r) for r in recs])
        write_per_tag_table(table, out / f"per-tag-{system}.csv")
        m["worst_tags"] = [row["tag"] for row in table[:10] if row["support"]]
        seconds = [sum((r.get("timings") or {}).values()) for r in recs if r.get("timings")]
        if seconds:
            m["seconds_per_item"] = sum(seconds) / len(seconds)
        routed = [bool(r["llm"]) for r in recs if "llm" in r]
        if routed:
            m["llm_share"] = sum(routed) / len(routed)  # items the LLM steps ran for (all of them under full, some under auto)
        metrics["systems"][system] = m
    if out_of_domain:
        metrics["abstention"] = {system: abstention(out_of_domain[system], metrics["systems"][system]) for system in systems}
        mixed = {system: records[system] + out_of_domain[system] for system in systems}
        for system in systems:
            pairs = [(c, tag in set(r["truth"])) for r in mixed[system] for tag, c in scored_answer(r) if c is not None]
            if pairs:  # the confidence over in-domain and foreign items together
                metrics["abstention"][system]["mixed_confidence"] = confidence_metrics(pairs)
    for group, ids in (groups or {}).items():
        chosen = [n for n, item in enumerate(items) if item.id in ids]
        if not chosen:
            continue
        metrics.setdefault("groups", {})[group] = {"items": len(chosen), "systems": {}}
        for system in systems:
            recs = [records[system][n] for n in chosen]
            sub = score([r.get("ranked", r["predicted"]) for r in recs], [truths[n] for n in chosen])
            at = score([r["predicted"] for r in recs], [truths[n] for n in chosen])
            metrics["groups"][group]["systems"][system] = {
                headline: sub[headline],
                **({"accuracy": sub["accuracy"]} if single else {"Acc@3": sub["Acc@3"]}),
                "at_threshold": {headline: at[headline], "coverage": sum(1 for r in recs if r["predicted"]) / len(recs)},
            }
    if "full" in records and any(r.get("judged") for r in records["full"]):
        kinds = {"in-domain": {i.id for i in items}, **{g: ids for g, ids in (groups or {}).items()}}
        foreign = (out_of_domain or {}).get("full") or []
        if foreign:
            kinds["foreign"] = {r["id"] for r in foreign}
        metrics["fusion_out_of_fold"] = fusion_ablation(
            records["full"] + foreign, truths + [[] for _ in foreign], single, kinds=kinds if len(kinds) > 1 else None
        )
    if "full" in metrics["systems"]:
        full = metrics["systems"]["full"][headline]
        for system, m in metrics["systems"].items():
            base = m[headline]
            m["RI_of_full"] = (full - base) / base if base else None
    metrics["headline"] = headline
    if "full" in records:
        metrics["accuracy_vs_coverage"] = accuracy_vs_coverage(records["full"])
        plot_accuracy_vs_coverage(metrics["accuracy_vs_coverage"], out / "accuracy_vs_coverage.png")
    reliable = {system: m["reliability"] for system, m in metrics["systems"].items() if m.get("reliability")}
    if reliable:
        plot_reliability(reliable, out / "reliability.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(markdown_report(metrics))
    return metrics


def abstention(ood: list[dict], in_domain: dict) -> dict:
    """Out-of-domain items (no tag fits them): the share a system leaves untagged at its
    threshold, beside the share of in-domain items it leaves untagged; the mean top confidence;
    with texts from several files, the share left untagged of each (``by_source``)."""
    tops = [
        max(c for j in r.get("judged", []) if (c := confidence_of(j)) is not None)
        for r in ood
        if any(confidence_of(j) is not None for j in r.get("judged", []))
    ]
    sources: dict[str, list[dict]] = {}
    for r in ood:
        sources.setdefault(out_of_domain_source(r["id"]) or "", []).append(r)
    return {
        "items": len(ood),
        "untagged": sum(1 for r in ood if not r["predicted"]) / len(ood) if ood else 0.0,
        "in_domain_untagged": 1.0 - in_domain["at_threshold"]["coverage"],
        "mean_top_confidence": sum(tops) / len(tops) if tops else None,
        **(
            {
                "by_source": {
                    name: {"items": len(rows), "untagged": sum(1 for r in rows if not r["predicted"]) / len(rows)}
                    for name, rows in sources.items()
                }
            }
            if len(sources) > 1
            else {}
        ),
    }


PER_TAG_COLUMNS = ("tag", "support", "returned", "true_positives", "precision", "recall", "f1", "ECE")


def write_per_tag_table(rows: list[dict], path: Path) -> None:
    """The per-tag table as CSV, the worst tags first (at the threshold the run used)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(PER_TAG_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row["tag"],
                    row["support"],
                    row["returned"],
                    row["true_positives"],
                    *(f"{row[k]:.4f}" for k in ("precision", "recall", "f1")),
                    "" if row["ECE"] is None else f"{row['ECE']:.4f}",
                ]
            )


def read_per_tag_table(path: Path, limit: int | None = None) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:limit] if limit else rows


def plot_reliability(bins_by_system: dict[str, list[dict]], path: Path) -> None:
    """The reliability diagram: per system, the share of tags that were right against their mean
    confidence in each bin (marker size: how many tags), beside the diagonal of a calibrated system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=110)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="calibrated")
    largest = max(b["count"] for bins in bins_by_system.values() for b in bins)
    for system, bins in bins_by_system.items():
        ax.plot([b["mean_confidence"] for b in bins], [b["share_right"] for b in bins], marker=None, linewidth=1.2, label=system)
        ax.scatter(
            [b["mean_confidence"] for b in bins],
            [b["share_right"] for b in bins],
            s=[12 + 120 * b["count"] / largest for b in bins],
            alpha=0.7,
        )
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.04)
    ax.set_xlabel("confidence (mean in each bin of 0.1)")
    ax.set_ylabel("share of those tags that were right")
    ax.set_title("Reliability: is a confidence of 0.8 right 80% of the time?", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
    cols = (
        ["accuracy", "f1_micro", "f1_macro", "Coverage@1"]
        if single
        else ["Acc@1", "Acc@2", "Acc@3", "Coverage@1", "Coverage@3", "f1_micro", "NDCG@5"]
    )
    headline = metrics["headline"]
    rows = []
    for system, m in metrics["systems"].items():
        ri = m.get("RI_of_full")
        at = m.get("at_threshold") or {}
        sec = m.get("seconds_per_item")
        share = m.get("llm_share")
        rows.append(
            [system]
            + [f"{m[c]:.3f}" for c in cols]
            + [f"{at[headline]:.3f} @ {at['coverage']:.0%}" if at else "", "" if sec is None else f"{sec:.2f}"]
            + ["" if share is None else f"{share:.0%}"]
            + ["" if ri is None or system == "full" else f"{ri:+.1%}"]
        )
    return ["system", *cols, f"{headline} at threshold @ coverage", "s/item", "LLM ran", f"RI of full ({headline})"], rows


def markdown_report(metrics: dict) -> str:
    header, rows = comparison_rows(metrics)
    headline = metrics["headline"]
    lines = [
        f"# Evaluation ({metrics['items']} items, {metrics['mode']}-tag)",
        "",
        "Columns at full coverage (every item answered with its best tags, whatever their confidence), then the headline "
        "at the confidence threshold with the share of items that keep a tag.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    rec = [(s, m["recall"]) for s, m in metrics["systems"].items() if "recall" in m]
    if rec:
        lines += ["", "## Candidate recall", "", "| system | #Right | HR#1 | HR#2 | HR#3 |", "|---|---|---|---|---|"]
        lines += [f"| {s} | {r['#Right']:.2f} | {r['HR#1']:.3f} | {r['HR#2']:.3f} | {r['HR#3']:.3f} |" for s, r in rec]
    if metrics.get("abstention"):
        lines += [
            "",
            "## Abstention (out-of-domain items mixed in: no tag fits them)",
            "",
            "| system | out-of-domain items | left untagged | in-domain left untagged | mean top confidence (out of domain) | ECE (mixed set) |",
            "|---|---|---|---|---|---|",
        ]
        for system, a in metrics["abstention"].items():
            top = "" if a["mean_top_confidence"] is None else f"{a['mean_top_confidence']:.3f}"
            mixed = a.get("mixed_confidence")
            by_source = "".join(f"<br>{name}: {b['untagged']:.1%} of {b['items']}" for name, b in (a.get("by_source") or {}).items())
            lines.append(
                f"| {system} | {a['items']} | {a['untagged']:.1%}{by_source} | {a['in_domain_untagged']:.1%} | {top} | "
                + ("" if mixed is None else f"{mixed['ECE']:.3f}")
                + " |"
            )
    if any("best_cut" in m for m in metrics["systems"].values()):
        lines += [
            "",
            "## Each system at its best cut (micro-F1 over the confidence thresholds, chosen on these items)",
            "",
            "| system | micro-F1 at the default threshold | best micro-F1 | at threshold | precision | recall |",
            "|---|---|---|---|---|---|",
        ]
        for system, m in metrics["systems"].items():
            if "best_cut" in m:
                b = m["best_cut"]
                lines.append(
                    f"| {system} | {m['at_threshold']['f1_micro']:.3f} | {b['f1_micro']:.3f} | {b['threshold']:.3f} | "
                    f"{b['precision_micro']:.3f} | {b['recall_micro']:.3f} |"
                )
    for group, g in (metrics.get("groups") or {}).items():
        lines += [
            "",
            f"## {group} items ({g['items']})" + (": they carry a tag whose history was hidden (--cold-start)" if group == "cold" else ""),
            "",
            f"| system | {headline} (full coverage) | {headline} at threshold @ coverage |",
            "|---|---|---|",
        ]
        for system, m in g["systems"].items():
            lines.append(f"| {system} | {m[headline]:.3f} | {m['at_threshold'][headline]:.3f} @ {m['at_threshold']['coverage']:.0%} |")
    fusion = metrics.get("fusion_out_of_fold")
    if fusion:
        lines += [
            "",
            f"## What each kind of evidence adds (the full run's scored tags, fused out of fold, {metrics['headline']} at full coverage)",
            "",
            "| evidence fused | " + metrics["headline"] + " | ECE | AUROC |",
            "|---|---|---|---|",
        ]
        for name, f in fusion.items():
            auroc = "" if f.get("AUROC") is None else f"{f['AUROC']:.3f}"
            lines.append(f"| {name} | {f[metrics['headline']]:.3f} | {f['ECE']:.3f} | {auroc} |")
        kinds = sorted({k for f in fusion.values() for k in f.get("by_kind", {})})
        if kinds:
            lines += [
                "",
                "The same by kind of item (foreign items: the share whose best fused confidence stays under 0.5):",
                "",
                "| evidence fused | " + " | ".join(kinds) + " |",
                "|---|" + "---|" * len(kinds),
            ]
            for name, f in fusion.items():
                cells = []
                for k in kinds:
                    b = f.get("by_kind", {}).get(k)
                    cells.append(
                        ""
                        if b is None
                        else (
                            f"{b[metrics['headline']]:.3f} (ECE {b['ECE']:.3f})"
                            if metrics["headline"] in b
                            else f"{b['left_untagged_at_0.5']:.0%} untagged (ECE {b['ECE']:.3f})"
                        )
                    )
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    conf = [(s, m["confidence"]) for s, m in metrics["systems"].items() if "confidence" in m]
    if conf:
        lines += ["", "## Confidence", "", "| system | ECE | Brier | AUROC | judged tags | share right |", "|---|---|---|---|---|---|"]
        for s, c in conf:
            auroc = "" if c["AUROC"] is None else f"{c['AUROC']:.3f}"
            lines.append(f"| {s} | {c['ECE']:.3f} | {c['Brier']:.3f} | {auroc} | {c['pairs']} | {c['share_correct']:.3f} |")
            for kind, lc in metrics["systems"][s].get("confidence_learned", {}).items():
                auroc = "" if lc["AUROC"] is None else f"{lc['AUROC']:.3f}"
                lines.append(
                    f"| {s} + learned {kind} (out of fold) | {lc['ECE']:.3f} | {lc['Brier']:.3f} | {auroc} | {lc['pairs']} | {lc['share_correct']:.3f} |"
                )
    if metrics.get("derived"):
        lines += [
            "",
            "Derived without a run of their own: "
            + "; ".join(
                f"{d} = {src}'s results"
                + (" before the judge" if d == "no-calibration" else " (the knowledge base has no documents, so the prompts are identical)")
                for d, src in metrics["derived"].items()
            ),
        ]
    if any(m.get("reliability") for m in metrics["systems"].values()):
        lines += ["", "![reliability diagram](reliability.png)"]
    if "accuracy_vs_coverage" in metrics:
        lines += ["", "![accuracy vs coverage](accuracy_vs_coverage.png)"]
    worst = [(s, m["worst_tags"]) for s, m in metrics["systems"].items() if m.get("worst_tags")]
    if worst:
        lines += [
            "",
            "## Per tag",
            "",
            "Each system's table (support, returned, precision, recall, F1, ECE; the worst tags first) is in "
            "`per-tag-<system>.csv`. The ten worst tags with support:",
            "",
            "| system | worst tags |",
            "|---|---|",
        ]
        lines += [f"| {s} | {', '.join(tags)} |" for s, tags in worst]
    return "\n".join(lines) + "\n"
