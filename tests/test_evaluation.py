"""Evaluation metrics on hand-checked cases, and a real (small) evaluation run that resumes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent import Context
from ui.cli import main
from knowledge_base import InputError
from agent.evaluation import Item, evaluate, optimize_threshold, threshold_for_coverage
from agent.evaluation.calibration import fusion_ablation
from agent.evaluation.metrics import (
    accuracy_vs_coverage,
    confidence_metrics,
    multi_tag_metrics,
    ndcg_at_k,
    precision_recall_f1,
    single_tag_metrics,
)
from knowledge_base.demo import demo_examples


def test_precision_recall_f1_micro_and_per_document():
    m = precision_recall_f1([["a", "b"], ["c"]], [["a"], ["d", "e"]])
    assert m["precision_micro"] == pytest.approx(1 / 3) and m["recall_micro"] == pytest.approx(1 / 3)
    assert m["precision_doc"] == pytest.approx(0.25) and m["recall_doc"] == pytest.approx(0.5)
    assert m["f1_doc"] == pytest.approx((2 * 0.5 * 1 / 1.5 + 0) / 2)


def test_ndcg_and_single_tag_metrics():
    assert ndcg_at_k([["x", "a"]], [["a"]], 3) == pytest.approx((1 / 1.5849625) / 1.0)
    m = single_tag_metrics([["a"], ["b"], []], [["a"], ["a"], ["c"]])
    assert m["accuracy"] == pytest.approx(1 / 3) and m["precision_micro"] == pytest.approx(0.5)
    assert m["Coverage@1"] == pytest.approx(2 / 3)
    # labels a, b, c: a has P=1 R=0.5; b has P=0 R=0; c has P=0 R=0
    assert m["precision_macro"] == pytest.approx(1 / 3) and m["recall_macro"] == pytest.approx(0.5 / 3)


def test_confidence_metrics_on_known_pairs():
    perfect = confidence_metrics([(0.9, True), (0.8, True), (0.2, False), (0.1, False)])
    assert perfect["AUROC"] == 1.0 and perfect["Brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert perfect["ECE"] == pytest.approx(0.15)
    inverted = confidence_metrics([(0.1, True), (0.9, False)])
    assert inverted["AUROC"] == 0.0


def test_accuracy_vs_coverage_curve():
    recs = [
        {"truth": ["a"], "judged": [{"tag": "a", "p_yes": 0.9}, {"tag": "b", "p_yes": 0.3}]},
        {"truth": ["c"], "judged": [{"tag": "d", "p_yes": 0.6}]},
    ]
    curve = {round(c["threshold"], 2): c for c in accuracy_vs_coverage(recs)}
    assert curve[0.0] == {"threshold": 0.0, "coverage": 1.0, "accuracy": 0.5}
    assert curve[0.7]["coverage"] == 0.5 and curve[0.7]["accuracy"] == 1.0
    assert curve[0.95]["coverage"] == 0.0 and curve[0.95]["accuracy"] is None
    best = optimize_threshold(recs)[0]
    assert 0.6 < best["threshold"] <= 0.9


def test_evaluate_runs_systems_side_by_side_and_resumes(small_kb_dir, tmp_path):
    items = [Item(e["id"], e["text"], e["tags"]) for e in demo_examples()[:3]]
    ctx = Context(kb_dir=str(small_kb_dir), budget=8, max_tags=3)
    seen = []
    metrics = evaluate(items, ctx, tmp_path, ["full", "no-calibration", "embedding-match", "knn"], progress=lambda s, i, n: seen.append(s))
    assert set(metrics["systems"]) == {"full", "no-calibration", "embedding-match", "knn"}
    full = [json.loads(l) for l in (tmp_path / "items-full.jsonl").read_text().splitlines()]
    assert [r["id"] for r in full] == [i.id for i in items]
    assert all(set(r["predicted"]) <= {j["tag"] for j in r["judged"]} and set(r["predicted"]) <= set(r["ranked"]) for r in full)
    # the headline figures are at full coverage (every scored tag by confidence); at the threshold beside them
    expected_acc1 = multi_tag_metrics([r["ranked"] for r in full], [i.tags for i in items])["Acc@1"]
    assert metrics["systems"]["full"]["Acc@1"] == pytest.approx(expected_acc1)
    at = metrics["systems"]["full"]["at_threshold"]
    assert at["coverage"] == pytest.approx(sum(1 for r in full if r["predicted"]) / len(full))
    assert metrics["systems"]["full"]["seconds_per_item"] > 0
    assert metrics["systems"]["no-calibration"]["Coverage@1"] == 1.0
    assert "confidence" in metrics["systems"]["full"] and "recall" in metrics["systems"]["knn"]
    for name in ("metrics.json", "report.md", "accuracy_vs_coverage.png"):
        assert (tmp_path / name).stat().st_size > 0
    # interrupted after the first item of the full run: the next run only redoes the rest
    lines = (tmp_path / "items-full.jsonl").read_text().splitlines()
    (tmp_path / "items-full.jsonl").write_text(lines[0] + "\n" + lines[1][:20])
    again = evaluate(items, ctx, tmp_path, ["full"])
    assert [json.loads(l)["id"] for l in (tmp_path / "items-full.jsonl").read_text().splitlines()] == [i.id for i in items]
    assert again["systems"]["full"]["Acc@1"] == pytest.approx(expected_acc1)


def test_eval_and_optimize_commands(small_kb_dir, tmp_path):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(e) + "\n" for e in demo_examples()[:4]))
    runner = CliRunner()
    r = runner.invoke(
        main, ["--kb", str(small_kb_dir), "eval", str(labelled), "--out", str(tmp_path / "ev"), "--systems", "embedding-match,knn"]
    )
    assert r.exit_code == 0, r.output
    assert "embedding-match" in r.output and "knn" in r.output
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "eval", str(labelled), "--systems", "nonsense"])
    assert r.exit_code == 1 and "unknown systems" in r.output
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "optimize", str(labelled), "--items", "4"])
    assert r.exit_code == 0, r.output
    assert r.output.count("δ_ct") == 10


def test_report_only_summarises_finished_items_without_running(tmp_path, small_kb_dir):
    from agent import Context
    from agent.evaluation import Item, evaluate

    items = [Item(f"x{i}", t, ["works-with::text"]) for i, t in enumerate(["a text editor", "an image viewer", "a mail client"])]
    ctx = Context(kb_dir=str(small_kb_dir))
    with pytest.raises(InputError, match="run the evaluation first"):
        evaluate(items, ctx, tmp_path, ["knn"], report_only=True)
    evaluate(items[:2], ctx, tmp_path, ["knn", "embedding-match"])
    metrics = evaluate(items, ctx, tmp_path, ["knn", "embedding-match"], report_only=True)
    assert metrics["items"] == 2
    assert sum(1 for _ in open(tmp_path / "items-knn.jsonl")) == 2


def test_learned_recall_and_recall_order_systems(writable_kb, tmp_path):
    from knowledge_base.learned_recall import train_learned_recall

    items = [Item(e["id"], e["text"], e["tags"]) for e in demo_examples()]
    ctx = Context(kb_dir=str(writable_kb.directory))
    with pytest.raises(InputError, match="train-classifier"):
        evaluate(items[:2], ctx, tmp_path / "none", ["learned-recall"])
    train_learned_recall(writable_kb)
    metrics = evaluate(items, ctx, tmp_path / "out", ["knn", "learned-recall", "recall-order"])
    systems = metrics["systems"]
    assert set(systems) == {"knn", "learned-recall", "recall-order"}
    assert systems["learned-recall"]["Acc@1"] >= 0.7 and systems["recall-order"]["Acc@1"] >= 0.7
    assert systems["recall-order"]["recall"]["HR#1"] >= 0.9  # a right tag among the (budget-capped) candidates


def test_no_llm_system_abstains_on_out_of_domain_items_and_a_threshold_meets_a_coverage(trained_kb_dir, tmp_path):
    from agent.evaluation import load_out_of_domain

    items = [Item(e["id"], e["text"], e["tags"]) for e in demo_examples()]
    cooking = tmp_path / "cooking.jsonl"
    cooking.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "text": t}) + "\n"
            for i, t in enumerate(
                [
                    "Slow-roast the lamb shoulder with rosemary and garlic for four hours.",
                    "How long should I rest bread dough before baking?",
                    "Can I replace butter with olive oil in a sponge cake?",
                    "Why does my custard split when it boils?",
                ]
            )
        )
    )
    ood = load_out_of_domain(cooking)
    assert len(ood) == 4 and all(i.id.startswith("ood:") and i.tags == [] for i in ood)
    ctx = Context(kb_dir=str(trained_kb_dir), threshold=0.5)
    metrics = evaluate(items, ctx, tmp_path / "out", ["no-llm", "knn"], out_of_domain=ood)
    assert metrics["items"] == len(items)  # accuracy is measured on the in-domain items only
    knn, no_llm = metrics["abstention"]["knn"], metrics["abstention"]["no-llm"]
    assert knn["items"] == 4 and knn["untagged"] == 0.0  # kNN has no confidence threshold: it always answers
    ood_rows = [json.loads(l) for l in (tmp_path / "out" / "items-no-llm.jsonl").read_text().splitlines() if l.startswith('{"id": "ood:')]
    assert len(ood_rows) == 4 and no_llm["untagged"] == sum(1 for r in ood_rows if not r["predicted"]) / 4
    tops = [max(j["confidence"] for j in r["judged"]) for r in ood_rows]
    assert no_llm["mean_top_confidence"] == pytest.approx(sum(tops) / 4)
    assert all(all(j["confidence"] < 0.5 for j in r["judged"]) == (not r["predicted"]) for r in ood_rows)  # untagged ⇔ nothing reaches 0.5
    assert "Abstention" in (tmp_path / "out" / "report.md").read_text()
    records = [
        json.loads(l) for l in (tmp_path / "out" / "items-no-llm.jsonl").read_text().splitlines() if not l.startswith('{"id": "ood:')
    ]
    chosen = threshold_for_coverage(records, 0.8)
    assert chosen["coverage"] >= 0.8
    stricter = threshold_for_coverage(records, 1.0)
    assert stricter["threshold"] <= chosen["threshold"] and stricter["coverage"] == 1.0
    with pytest.raises(InputError, match="coverage"):
        threshold_for_coverage(records, 1.5)


def test_fusion_ablation_credits_the_evidence_that_separates():
    """Hand-made scored tags where only the judge knows the right tag (recall's rank is noise):
    the out-of-fold fusion with the judge beats recall alone, and recall alone stays near chance."""
    import random

    rng = random.Random(3)
    records, truths = [], []
    for i in range(60):
        judged = []
        right = rng.randrange(4)
        for k in range(4):
            features = {
                "recall_inverse_rank": 1.0 / (k + 1),
                "recall_score": rng.random(),
                "logit_p_yes": (2.0 if k == right else -2.0) + rng.gauss(0, 0.5),
                "judged": 1.0,
            }
            judged.append({"tag": f"t{k}", "features": features, "p_yes": 0.5, "confidence": 0.5})
        records.append({"id": f"i{i}", "truth": [f"t{right}"], "judged": judged})
        truths.append([f"t{right}"])
    out = fusion_ablation(records, truths, single=True)
    assert out["recall + judge"]["f1_micro"] > 0.9 and out["judge alone"]["f1_micro"] > 0.9
    assert out["recall only"]["f1_micro"] < 0.5


def test_another_tools_answers_are_scored_side_by_side(small_kb_dir, tmp_path):
    items = [Item(e["id"], e["text"], e["tags"]) for e in demo_examples()[:4]]
    answers = tmp_path / "items-other.jsonl"
    # the "other tool" answers the first true tag for two items and a wrong tag for the others
    answers.write_text(
        "".join(
            json.dumps({"id": i.id, "tags": [{"tag": i.tags[0] if n < 2 else "not::a-tag", "confidence": 0.9}]}) + "\n"
            for n, i in enumerate(items)
        )
    )
    metrics = evaluate(items, Context(kb_dir=str(small_kb_dir)), tmp_path / "out", ["knn"], external={"other": answers})
    assert metrics["systems"]["other"]["Acc@1"] == pytest.approx(0.5)
    assert "| other |" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(InputError, match="no answer for 1 of the 5 items"):
        evaluate(
            items + [Item("extra", "a text editor", ["role::program"])],
            Context(kb_dir=str(small_kb_dir)),
            tmp_path / "out2",
            ["knn"],
            external={"other": answers},
        )


def test_eval_writes_a_reliability_diagram_and_a_per_tag_table_the_page_shows(trained_kb_copy, tmp_path):
    """Annif's --results-file and a reliability diagram: per tag support, returned, P, R, F1 and
    ECE, the worst first, checked against the per-item records; the page's knowledge-base tab
    shows the latest evaluation of its knowledge base."""
    import csv

    from ui.app import TaggingApp

    items = [Item(e["id"], e["text"], e["tags"]) for e in demo_examples()[:8]]
    out = tmp_path / "eval"
    metrics = evaluate(items, Context(kb_dir=str(trained_kb_copy)), out, ["no-llm", "knn"])
    assert (out / "reliability.png").stat().st_size > 0 and "reliability.png" in (out / "report.md").read_text()
    bins = metrics["systems"]["no-llm"]["reliability"]
    assert sum(b["count"] for b in bins) == metrics["systems"]["no-llm"]["confidence"]["pairs"]
    rows = list(csv.DictReader(open(out / "per-tag-no-llm.csv", encoding="utf-8")))
    records = [json.loads(line) for line in (out / "items-no-llm.jsonl").read_text().splitlines()]
    for row in rows:
        support = sum(row["tag"] in r["truth"] for r in records)
        returned = sum(row["tag"] in r["predicted"] for r in records)
        hits = sum(row["tag"] in r["predicted"] and row["tag"] in r["truth"] for r in records)
        assert (int(row["support"]), int(row["returned"]), int(row["true_positives"])) == (support, returned, hits), row
    assert [float(r["f1"]) for r in rows] == sorted(float(r["f1"]) for r in rows)  # the worst first
    summary, picture = TaggingApp(str(trained_kb_copy)).last_evaluation()
    assert "8 items" in summary and "worst tags for **no-llm**" in summary and picture.value is not None and picture.visible
