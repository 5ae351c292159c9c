"""``llm4tag calibrate``: run the pipeline on labelled items, compare the unfitted confidence
(recall's P(right) when the knowledge base has a ranker, else the judge's P(Yes)) with each fitted
fusion out of fold, and save the chosen one into the knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from knowledge_base.errors import InputError

from ..batch import read_finished
from ..confidence import FILE_NAME
from .calibration import compare_out_of_fold, fit_calibration, judged_pairs
from .labelled import Item, load_labelled
from .metrics import confidence_metrics
from .runner import evaluate


def choose_and_fit(
    kb,
    validation: str | Path,
    context,
    out_dir: str | Path,
    limit: int | None = 300,
    seed: int | None = 13,
    kind: str = "auto",
    offset: int = 0,
    out_of_domain: Sequence[Item] = (),
) -> dict:
    """Run the pipeline on labelled items (resumable), compare the unfitted confidence with each
    fitted fusion out of fold, and save the chosen one into the knowledge base.

    ``out_of_domain`` texts (no tag fits them: every tag scored for them is wrong) join the
    fitting data, so that the fusion learns what a foreign text's evidence looks like.

    The items must be outside the history (a labelled validation file), so that no path saw
    their annotations. ``auto`` keeps whichever has the lowest Brier score (a proper scoring
    rule: calibration and separation together; ECE alone rewards a model that says the base rate
    for everything), and none at all when the unfitted confidence scores better (an earlier
    calibration.json is then removed)."""
    items = load_labelled(validation, limit, seed, offset)
    evaluate(items, context.with_overrides(kb_dir=str(kb.directory)), out_dir, ["full"], out_of_domain=out_of_domain)
    wanted = {i.id for i in items} | {i.id for i in out_of_domain}
    records = [r for r in read_finished(Path(out_dir) / "items-full.jsonl").values() if r["id"] in wanted]
    features, labels, groups, unfitted = judged_pairs(records)
    kinds = ["isotonic", "logistic"] if kind == "auto" else [kind]
    raw = [(c, y) for c, y in zip(unfitted, labels) if c is not None]
    report: dict = {
        "items": len(records),
        "out_of_domain_items": len(out_of_domain),
        "pairs": len(labels),
        "raw": confidence_metrics(raw) if len(raw) == len(labels) else {},
        **compare_out_of_fold(features, labels, groups, kinds),
    }
    fitted = [k for k in kinds if k in report]
    if not fitted:
        raise InputError(f"no calibration could be fitted on {len(labels)} judged tags ({sum(labels)} right); evaluate more labelled items")
    best = min(fitted, key=lambda k: (report[k]["Brier"], report[k]["ECE"]))
    if kind == "auto" and report["raw"] and report["raw"]["Brier"] <= report[best]["Brier"]:
        (Path(kb.directory) / FILE_NAME).unlink(missing_ok=True)
        report["chosen"] = "the unfitted confidence (recall's P(right), else P(Yes)): no fitted fusion beats it out of fold"
        return report
    model = fit_calibration(features, labels, best, source=f"{validation} ({len(records)} items)")
    report["chosen"] = best
    report["saved"] = str(model.save(kb.directory))
    return report
