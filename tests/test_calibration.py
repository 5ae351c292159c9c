"""Learned calibration: fitting, out-of-fold scoring, storage, and its use by the real pipeline."""

from __future__ import annotations

import json
import random

import pytest

from agent import tag
from agent.confidence import FEATURES, FILE_NAME, LearnedCalibration, evidence_features
from agent.evaluation.calibration import cross_validated, fit_calibration
from agent.evaluation.metrics import confidence_metrics
from knowledge_base import InputError
from knowledge_base.demo import demo_examples
from knowledge_base.errors import KnowledgeBaseError


def synthetic_pairs(n=400, seed=1):
    """The judge's P(Yes) is noise; the C2C2T vote share carries the truth (as on real data)."""
    rng = random.Random(seed)
    features, labels, groups = [], [], []
    for i in range(n):
        right = rng.random() < 0.4
        share = min(1.0, max(0.0, rng.gauss(0.7 if right else 0.2, 0.15)))
        cand = {"evidence": [{"path": "C2C2T", "score": share}, {"path": "C2T", "score": rng.uniform(0.2, 0.5)}]}
        features.append(evidence_features(rng.uniform(0.3, 0.55), cand, generated_rank=rng.randint(1, 5), from_history=share >= 0.5))
        labels.append(right)
        groups.append(f"item-{i // 4}")
    return features, labels, groups


def test_evidence_features_read_every_path():
    cand = {"evidence": [{"path": "C2T", "score": 0.41}, {"path": "C2C2T", "score": 0.6}, {"path": "match", "score": 0.3}]}
    f = evidence_features(0.5, cand, generated_rank=2, from_history=True, recall_rank=4, recall_probability=0.5)
    assert set(f) == set(FEATURES)
    assert f["logit_p_yes"] == pytest.approx(0.0)
    assert (f["c2t"], f["c2c2t"], f["match"], f["inverse_rank"], f["from_history"]) == (0.41, 0.6, 0.3, 0.5, 1.0)
    assert evidence_features(0.9, None, generated_rank=1, from_history=False)["c2c2t"] == 0.0
    skipped = evidence_features(None, cand, generated_rank=None, from_history=False, recall_rank=1)
    assert (skipped["judged"], skipped["generated"], skipped["inverse_rank"], skipped["logit_p_yes"], skipped["recall_inverse_rank"]) == (
        0.0,
        0.0,
        0.0,
        0.0,
        1.0,
    )
    assert (f["judged"], f["generated"], f["recall_inverse_rank"], f["recall_logit"]) == (1.0, 1.0, 0.25, pytest.approx(0.0))


def test_logistic_calibration_beats_raw_p_yes_out_of_fold():
    features, labels, groups = synthetic_pairs()
    raw = confidence_metrics([(1 / (1 + pow(2.718281828, -f["logit_p_yes"])), y) for f, y in zip(features, labels)])
    learned = confidence_metrics(list(zip(cross_validated(features, labels, groups, "logistic"), labels)))
    assert learned["AUROC"] > 0.9 > raw["AUROC"] + 0.2
    assert learned["ECE"] < raw["ECE"]
    assert learned["Brier"] < raw["Brier"]


def test_isotonic_is_monotone_in_p_yes():
    features, labels, _ = synthetic_pairs()
    model = fit_calibration(features, labels, "isotonic")
    grid = [evidence_features(p / 100, None, 1, False) for p in range(1, 100)]
    values = [model.predict(g) for g in grid]
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))
    assert all(0.0 <= v <= 1.0 for v in values)


def test_saved_calibration_is_json_and_predicts_the_same(tmp_path):
    features, labels, _ = synthetic_pairs()
    model = fit_calibration(features, labels, "logistic", source="synthetic")
    path = model.save(tmp_path)
    assert path.name == FILE_NAME and json.loads(path.read_text())["kind"] == "logistic"
    again = LearnedCalibration.load(tmp_path)
    assert [again.predict(f) for f in features[:20]] == [model.predict(f) for f in features[:20]]
    assert LearnedCalibration.load(tmp_path / "nowhere") is None


def test_too_few_or_one_sided_pairs_are_refused():
    features, labels, _ = synthetic_pairs(n=10)
    with pytest.raises(InputError, match="at least 20"):
        fit_calibration(features, labels)
    features, _, _ = synthetic_pairs(n=50)
    with pytest.raises(InputError, match="both right and wrong"):
        fit_calibration(features, [True] * 50)
    with pytest.raises(InputError, match="unknown calibration kind"):
        fit_calibration(features, [i % 2 == 0 for i in range(50)], "forest")


def test_damaged_calibration_file_says_what_to_do(tmp_path):
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(KnowledgeBaseError, match="run llm4tag calibrate again"):
        LearnedCalibration.load(tmp_path)


def test_pipeline_uses_the_knowledge_base_calibration(writable_kb):
    """A fusion that is sure of everything lifts every scored tag; P(Yes) stays visible; at most max_tags are kept."""
    sure = LearnedCalibration(
        "logistic",
        coefficients=[0.0] * len(FEATURES),
        intercept=4.0,
        scale_mean=[0.0] * len(FEATURES),
        scale_std=[1.0] * len(FEATURES),
        pairs=100,
        fitted_at="2026-11-26",
    )
    sure.save(writable_kb.directory)
    text = demo_examples()[0]["text"]
    result = tag(text, kb_dir=str(writable_kb.directory), budget=10, max_tags=3, threshold=0.9)
    assert result["judgments"]
    assert all(j["confidence"] == pytest.approx(0.982, abs=1e-3) for j in result["judgments"])
    assert any(abs(j["p_yes"] - j["confidence"]) > 0.05 for j in result["judgments"])
    assert [t["tag"] for t in result["tags"]] == [j["tag"] for j in result["judgments"]][:3]
    assert any("fitted logistic fusion" in n for n in result["notes"])
    raw = tag(text, kb_dir=str(writable_kb.directory), budget=10, max_tags=3, threshold=0.0, use_learned_calibration=False)
    assert all(j["confidence"] == j["p_yes"] for j in raw["judgments"])


def test_a_calibration_written_before_the_learned_path_still_loads(tmp_path):
    """Older calibration.json files name no features: their six coefficients keep their meaning."""
    old = {"kind": "logistic", "coefficients": [2.0, 0, 0, 0, 0, 0], "intercept": 0.0, "scale_mean": [0.0] * 6, "scale_std": [1.0] * 6}
    (tmp_path / FILE_NAME).write_text(json.dumps(old))
    model = LearnedCalibration.load(tmp_path)
    assert model.features == list(FEATURES[:6])
    high, low = (model.predict(evidence_features(p, None, 1, False)) for p in (0.9, 0.1))
    assert high > 0.9 and low < 0.1  # the learned feature, absent from the old model, is ignored
