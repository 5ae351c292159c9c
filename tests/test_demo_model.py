"""The demo's shipped fine-tuned model: its files, their installation into a knowledge base, and
tagging with the adapter through llama.cpp (the real model, the real adapter file)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent import Context, tagging
from agent.llm import load_backend
from agent.llm.llamacpp import default_model_path
from agent.runtime import runtime_for
from agent.demo_model import ADAPTER, DEMO_MODEL, install_demo_model, shipped_demo_model
from knowledge_base import KnowledgeBase
from knowledge_base.demo import demo_examples

pytestmark = pytest.mark.skipif(shipped_demo_model() is None, reason="no demo model is shipped (run make demo-model)")


def test_the_shipped_model_says_how_it_was_made():
    described = shipped_demo_model()
    for key in ("command", "seed", "samples", "threshold", "training", "built_at"):
        assert described.get(key) is not None, key
    assert 0.0 < described["threshold"] < 1.0
    assert described["command"].startswith("llm4tag train-demo")
    size = (DEMO_MODEL / ADAPTER).stat().st_size
    assert size == described["adapter_bytes"] and size < 16 * 2**20  # a few MB, not a 138 MB merged model


def test_the_adapter_is_a_llama_cpp_lora_gguf():
    from gguf import GGUFReader

    reader = GGUFReader(str(DEMO_MODEL / ADAPTER))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    names = {t.name for t in reader.tensors}
    assert len(names) == 30 * 7 * 2  # every attention and MLP projection of the 30 layers, A and B
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.29.ffn_down.weight.lora_b" in names


def test_installed_demo_model_is_the_default_and_can_be_switched_off(small_kb_dir, tmp_path):
    from tests.conftest import copy_kb

    kb = KnowledgeBase(copy_kb(small_kb_dir, tmp_path / "kb"))
    assert install_demo_model(kb)
    record = json.loads((kb.directory / "training.json").read_text())
    assert record["lora"] == f"model/{ADAPTER}" and (kb.directory / "model" / ADAPTER).is_file()
    assert KnowledgeBase(kb.directory).config.threshold == shipped_demo_model()["threshold"]
    written = (kb.directory / "training.json").stat().st_mtime_ns
    assert install_demo_model(kb)  # once per shipped version: nothing is written the second time
    assert (kb.directory / "training.json").stat().st_mtime_ns == written
    rt = runtime_for(str(kb.directory))
    ctx = Context(kb_dir=str(kb.directory))
    spec = rt.backend_spec(ctx)
    assert spec == f"llamacpp:{default_model_path()};lora={kb.directory / 'model' / ADAPTER}"
    assert rt.backend_spec(ctx.with_overrides(use_fine_tuning=False)) == "llamacpp"
    assert rt.threshold(ctx) == shipped_demo_model()["threshold"]

    tuned, base = load_backend(spec), load_backend("llamacpp")
    assert "LoRA demo-lora.gguf" in tuned.describe()
    text = demo_examples()[0]["text"]
    prompts = [
        f"<content>\n{text}\n</content>\n\nTag: {t}\n\nIs this tag relevant to the content above? Answer Yes or No."
        for t in ("role::program", "game::strategy")
    ]
    p_tuned = [j.p_yes for j in tuned.judge("You tag content.", prompts)]
    p_base = [j.p_yes for j in base.judge("You tag content.", prompts)]
    assert not np.allclose(p_tuned, p_base, atol=1e-3)  # the adapter changes the model's judgments

    result = tagging.tag(text, context=ctx)
    assert result["selection"]["backend"] == tuned.describe()  # the graph's generator ran with the adapter
    judged = [j for j in result["judgments"] if j.get("p_yes") is not None]
    assert judged and all(j["confidence"] is not None for j in judged)  # the tuned judge scored them, the fusion fused them
    assert all(t["confidence"] >= rt.threshold(ctx) for t in result["tags"])


def test_a_missing_adapter_file_is_a_clear_error(tmp_path):
    from agent.llm import BackendError

    with pytest.raises(BackendError, match="LoRA adapter file not found"):
        load_backend(f"llamacpp:{default_model_path()};lora={tmp_path / 'gone.gguf'}")
