"""Every likely candidate scored and all the evidence fused: the no-LLM mode, recall's own
P(right) as the default confidence, a fitted fusion that can promote what the generator skipped
— on the real small knowledge base with its real learned recall path and the embedded SmolLM2."""

from __future__ import annotations


import pytest

from agent import Context, tag
from agent.confidence import FEATURES, LearnedCalibration
from knowledge_base.demo import demo_examples

TEXT = demo_examples()[0]["text"]
SMALL = dict(budget=10, max_tags=3)


@pytest.fixture(scope="module")
def fused_kb_dir(trained_kb_copy):
    """This module's copy of the trained knowledge base: tests here add a calibration.json to it."""
    return trained_kb_copy


def test_no_llm_mode_ranks_by_recalls_own_probability(fused_kb_dir):
    result = tag(TEXT, context=Context(kb_dir=str(fused_kb_dir), use_generation=False, use_calibration=False, threshold=0.0, **SMALL))
    assert result["recall_scores"] == "probability"
    # each candidate's two scores under their own names: the ranker's P(right) ranks them, the path sum stays to read
    assert all(c["score"] == c["probability"] and 0.0 <= c["probability"] <= 1.0 for c in result["candidates"])
    assert all(
        c["evidence_score"] == round(sum(e["score"] for e in c["evidence"] if e["path"] != "memory"), 4) for c in result["candidates"]
    )
    assert result["selection"]["skipped"] and result["selection"]["prompt_tokens"] == 0
    assert result["examples"] == [] and result["knowledge"] == []  # prompt material is not fetched without the LLM
    assert all(j["p_yes"] is None and j["prompt_tokens"] == 0 for j in result["judgments"])
    top = result["candidates"][: SMALL["max_tags"]]
    assert [t["tag"] for t in result["tags"]] == [c["tag"] for c in top]
    assert [t["confidence"] for t in result["tags"]] == [c["score"] for c in top]
    assert all(0.0 <= t["confidence"] <= 1.0 and t["origin"] == "recall" for t in result["tags"])
    assert set(result["timings"]) >= {"recall", "generate", "calibrate"}


def test_the_llm_adds_evidence_but_cannot_throw_recall_away_without_a_fit(fused_kb_dir):
    """Without a fitted fusion the confidence is recall's P(right): the judge's P(Yes) is
    recorded as evidence, and the final tags are those of the no-LLM run."""
    ctx = Context(kb_dir=str(fused_kb_dir), llm="full", threshold=0.0, **SMALL)
    full = tag(TEXT, context=ctx)
    no_llm = tag(TEXT, context=ctx.with_overrides(use_generation=False, use_calibration=False))
    assert all(j["p_yes"] is not None for j in full["judgments"])
    assert [t["tag"] for t in full["tags"]] == [t["tag"] for t in no_llm["tags"]]
    by_tag = {c["tag"]: c["score"] for c in full["candidates"]}
    assert all(j["confidence"] == by_tag[j["tag"]] for j in full["judgments"])


def test_a_fitted_fusion_decides_and_can_promote_a_skipped_candidate(fused_kb_dir):
    """A fusion whose only weight is against the generator's choice puts recall's best
    non-generated candidate first: the fitted model, not the generator, has the last word."""
    names = list(FEATURES)
    coefficients = [0.0] * len(names)
    coefficients[names.index("generated")] = -3.0
    coefficients[names.index("recall_inverse_rank")] = 1.0
    LearnedCalibration(
        "logistic",
        coefficients=coefficients,
        intercept=0.0,
        scale_mean=[0.0] * len(names),
        scale_std=[1.0] * len(names),
        pairs=100,
        share_right=0.3,
        fitted_at="2026-12-01",
        features=names,
    ).save(fused_kb_dir)
    try:
        result = tag(TEXT, context=Context(kb_dir=str(fused_kb_dir), llm="full", threshold=0.0, **SMALL))
    finally:
        (fused_kb_dir / "calibration.json").unlink()
    generated = set(result["selection"]["tags"])
    assert generated
    first = result["tags"][0]
    assert first["tag"] not in generated and first["origin"] == "recall"
    skipped = [c["tag"] for c in result["candidates"][:5] if c["tag"] not in generated]
    assert first["tag"] == skipped[0]
    assert any("fitted logistic fusion" in n for n in result["notes"])


def test_the_ranker_sees_how_well_a_content_fits_the_knowledge_base(fused_kb_dir):
    """The recall ranker's item-level inputs: a text about cooking (this knowledge base holds
    Debian packages) is farther from every history item and every tag than the demo's texts."""
    from agent.runtime import runtime_for

    rt = runtime_for(fused_kb_dir)
    fitting = rt.recall(TEXT, rt.kb.config.recall).fit
    odd = rt.recall("Slow-roast the lamb shoulder with rosemary and garlic for four hours, then rest it.", rt.kb.config.recall).fit
    assert odd["top_content_similarity"] < fitting["top_content_similarity"] and odd["top_tag_similarity"] < fitting["top_tag_similarity"]
    assert "top_content_similarity" in rt.kb.classifier().ranker.features
