"""Evaluation metrics on hand-checked cases, and a real (small) evaluation run that resumes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent import Context
from ui.cli import main
from knowledge_base import InputError
from agent.evaluation import Item, evaluate, optimize_threshold
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
    recs = [{"truth": ["a"], "judged": [{"tag": "a", "p_yes": 0.9}, {"tag": "b", "p_yes": 0.3}]},
            {"truth": ["c"], "judged": [{"tag": "d", "p_yes": 0.6}]}]
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
    assert all(set(r["predicted"]) <= set(r["generated"]) for r in full)
    expected_acc1 = multi_tag_metrics([r["predicted"] for r in full], [i.tags for i in items])["Acc@1"]
    assert metrics["systems"]["full"]["Acc@1"] == pytest.approx(expected_acc1)
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
    r = runner.invoke(main, ["--kb", str(small_kb_dir), "eval", str(labelled), "--out", str(tmp_path / "ev"), "--systems", "embedding-match,knn"])
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
