"""Fine-tuning: the training sets, LoRA training on CPU, the GGUF export and its use for tagging.

Real components throughout: the knowledge base's recall, the shipped SmolLM2 de-quantized by
transformers, peft, and llama.cpp loading the exported file.
"""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest

from agent import Context
from agent.llm.llamacpp import LlamaCppBackend, shipped_model_path
from agent.runtime import runtime_for
from agent.training import train_model, trained_model_path, training_record
from agent.training.datasets import build_training_sets, load_samples, select_diverse
from knowledge_base import InputError
from knowledge_base.loaders import Sample

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def renderer():
    return LlamaCppBackend(shipped_model_path())


@pytest.fixture(scope="module")
def sets(small_kb_dir, renderer, tmp_path_factory):
    from knowledge_base import KnowledgeBase

    path = tmp_path_factory.mktemp("sets") / "train.jsonl.gz"
    report = build_training_sets(KnowledgeBase(small_kb_dir), renderer.render_text, path, Context(max_tags=3), max_samples=60)
    return report, [json.loads(l) for l in gzip.open(path, "rt", encoding="utf-8")]


def test_diverse_selection_covers_rare_tags_first():
    samples = (
        [Sample(f"a{i}", "x", ("common",)) for i in range(100)]
        + [Sample(f"b{i}", "x", ("rare",)) for i in range(5)]
        + [Sample("c", "x", ("unique",))]
    )
    chosen = select_diverse(samples, 9)
    counts = {t: sum(s.tags[0] == t for s in chosen) for t in ("common", "rare", "unique")}
    assert counts == {"unique": 1, "rare": 4, "common": 4}
    assert len({s.id for s in chosen}) == 9
    assert select_diverse(samples[:3], 10) == samples[:3]


def test_sets_follow_the_inference_prompts_and_the_annotations(sets, small_kb):
    report, records = sets
    assert report.samples_selected == 60 and report.heldout_samples == 6
    gen = [r for r in records if r["task"] == "generate"]
    judge = [r for r in records if r["task"] == "judge"]
    assert len(gen) == report.generation_records > 40 and len(judge) == report.judge_records
    for r in records:
        assert r["prompt"].startswith("<|im_start|>system") and r["prompt"].endswith("<|im_start|>assistant\n")
    for r in gen:
        sample = small_kb.get_sample(r["id"])
        answer = json.loads(r["answer"])
        assert answer and set(answer) <= set(sample.tags) and len(answer) <= 3
        assert all(f"- {t}" in r["prompt"] for t in answer)  # targets are candidates shown in the prompt
        assert "Similar items tagged before" not in r["prompt"]  # Template_b, as the paper trains
    for r in judge:
        sample = small_kb.get_sample(r["id"])
        assert r["answer"] == ("Yes" if r["tag"] in sample.tags else "No")
        assert f"Tag: {r['tag']}\n" in r["prompt"]
    assert {r["answer"] for r in judge} == {"Yes", "No"}
    assert {r["split"] for r in records} == {"train", "heldout"}


def test_since_finds_only_samples_added_later(writable_kb):
    before = time.time()
    time.sleep(0.05)
    writable_kb.record_feedback("A brand new text editor for the terminal", correct=[next(iter(writable_kb.tag_names()))])
    new, _, _ = load_samples(writable_kb, since=before)
    assert len(new) == 1 and new[0].text.startswith("A brand new text editor")
    assert len(load_samples(writable_kb)[0]) > 200


def test_since_last_needs_an_earlier_run(writable_kb):
    with pytest.raises(InputError, match="no earlier training run"):
        train_model(writable_kb, since_last=True)


def test_fine_tune_export_and_tag_with_the_result(sets, writable_kb, tmp_path, renderer):
    """Two LoRA steps on CPU, merge, export; llama.cpp's logits on the export match the merged model."""
    import torch
    from peft import PeftModel

    from agent.training.export import export_model
    from agent.training.finetune import finetune_args, load_base, read_records, train

    _, records = sets
    data = tmp_path / "tiny.jsonl.gz"
    tiny = [r for r in records if r["split"] == "train"][:6] + [r for r in records if r["split"] == "heldout"][:2]
    with gzip.open(data, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in tiny)
    assert len(read_records(data)) == 8
    args = finetune_args(
        shipped_model_path(), data, tmp_path / "run", epochs=1, batch_size=3, lr=2e-3, lora_r=8, save_every=1, device="cpu"
    )
    log = train(args)
    assert log["resumed_from_step"] == 0 and log["steps"] == 2 and len(log["losses"]) == 2 and log["heldout_records"] == 2
    assert log["heldout_before"] and log["heldout_after"]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoint" / "trainer_state.pt").is_file()
    again = train(args)  # resumes from the last checkpoint: nothing left to do
    assert again["resumed_from_step"] == 2 and again["steps"] == 2 and again["losses"] == log["losses"]

    exported = export_model(shipped_model_path(), tmp_path / "run" / "adapter", tmp_path / "model", name="t", ftype="F16")
    assert exported["tensors_replaced"] == 30 * 7
    assert "FROM ./t.F16.gguf" in (tmp_path / "model" / "Modelfile").read_text()
    tuned = LlamaCppBackend(exported["gguf"])
    ids = renderer.render("You tag content.", "Tag: works-with::image. Content: a PNG viewer. Relevant? Answer Yes or No.")
    _, base_model = load_base(shipped_model_path())
    merged = PeftModel.from_pretrained(load_base(shipped_model_path())[1], str(tmp_path / "run" / "adapter")).merge_and_unload()
    with torch.no_grad():
        want = merged(torch.tensor([ids])).logits[0, -1].numpy()
        base = base_model(torch.tensor([ids])).logits[0, -1].numpy()
    tuned.llm.reset()
    tuned.llm.eval(ids)
    got = tuned._last_logits()
    assert np.corrcoef(got, want)[0, 1] > 0.999  # a wrong Q/K permutation gives ~0.9
    assert np.corrcoef(got, want)[0, 1] > np.corrcoef(got, base)[0, 1]

    # the same fine-tune as a LoRA adapter GGUF, applied by llama.cpp to the default (Q8_0) model at load time
    from agent.llm import load_backend
    from agent.llm.llamacpp import default_model_path
    from agent.training.export import export_lora_adapter

    lora = export_lora_adapter(shipped_model_path(), tmp_path / "run" / "adapter", tmp_path / "t.lora.gguf")
    assert lora["tensors"] == 30 * 7 * 2 and lora["rank"] == 8 and lora["bytes"] < 6 * 2**20
    applied = load_backend(f"llamacpp:{default_model_path()};lora={lora['adapter_gguf']}")
    applied.llm.reset()
    applied.llm.eval(ids)
    with_adapter = applied._last_logits()
    assert np.corrcoef(with_adapter, want)[0, 1] > 0.995  # Q8_0 + adapter vs the merged float model
    assert np.corrcoef(with_adapter, want)[0, 1] > np.corrcoef(with_adapter, base)[0, 1]
    # and back: training can go on from an adapter shipped only as GGUF (the demo's)
    from agent.training.export import adapter_from_lora_gguf

    back = adapter_from_lora_gguf(lora["adapter_gguf"], shipped_model_path(), tmp_path / "back")
    again_merged = PeftModel.from_pretrained(load_base(shipped_model_path())[1], str(back)).merge_and_unload()
    with torch.no_grad():
        assert np.abs(again_merged(torch.tensor([ids])).logits[0, -1].numpy() - want).max() < 0.05

    summary = train_model(writable_kb, tmp_path / "work", adapter=tmp_path / "run" / "adapter", name="kbmodel")
    record = training_record(writable_kb.directory)
    assert record["model"] == summary["export"]["gguf"] and record["model"].endswith("kbmodel.Q8_0.gguf")
    assert record["runs"][0]["at"] == record["trained_at"] and record["last_run_at"] > 0
    assert trained_model_path(writable_kb.directory) == record["model"]
    ctx = Context(kb_dir=str(writable_kb.directory))
    assert runtime_for(ctx.kb_dir).backend_spec(ctx) == f"llamacpp:{record['model']}"
    assert runtime_for(ctx.kb_dir).backend_spec(ctx.with_overrides(backend="ollama:qwen2.5:7b")) == "ollama:qwen2.5:7b"
    assert runtime_for(ctx.kb_dir).backend_spec(ctx.with_overrides(use_fine_tuning=False)) == "llamacpp"

    served = train_model(writable_kb, tmp_path / "work2", adapter=tmp_path / "run" / "adapter", name="kbadapter", serve="adapter")
    record = training_record(writable_kb.directory)
    assert "model" not in record and record["lora"] == served["export"]["adapter_gguf"]
    assert runtime_for(ctx.kb_dir).backend_spec(ctx) == f"llamacpp:{default_model_path()};lora={record['lora']}"


def test_cli_prepare_only_builds_sets_and_says_what_to_run(writable_kb):
    from click.testing import CliRunner

    from ui.cli import main

    result = CliRunner().invoke(main, ["--kb", str(writable_kb.directory), "train", "--prepare-only", "--max-samples", "12"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["sets"]["samples_selected"] == 12 and summary["sets"]["generation_records"] > 0
    assert "finetune.py --base" in summary["next"] and "train --adapter" in summary["next"]
    assert (writable_kb.directory / "training" / "train.jsonl.gz").is_file()
    assert not (writable_kb.directory / "training.json").exists()  # nothing recorded until a model exists


def test_packed_judge_records_give_the_logits_of_separate_sequences(sets):
    """A sample's judge records trained as one packed sequence (shared prefix once, each tail seeing
    only the prefix and itself) must give each answer position the logits it has on its own."""
    import torch

    from agent.training.finetune import answer_logits, batches, collate, encode, load_base, micro_batches, pack

    _, records = sets
    sample = next(r["id"] for r in records if r["task"] == "judge")
    chosen = [r for r in records if r["id"] == sample]  # its generation record and its judge records
    tokenizer, model = load_base(shipped_model_path())
    examples = [encode(tokenizer, r, 2048) for r in chosen]
    packed = pack(examples, 2048)
    judge = [e for e in examples if e["task"] == "judge"]
    assert len(judge) >= 2 and len(packed) == len(examples) - len(judge) + 1
    assert sum(len(s["input_ids"]) for s in packed) < sum(len(e["prompt"]) + len(e["answer"]) for e in examples) * 0.6
    with torch.no_grad():
        got = {}
        for group in batches(packed, 8, 0):
            for part in micro_batches(group, 1500):
                batch = collate(part, tokenizer.pad_token_id or 0, "cpu")
                logits = answer_logits(model, batch)
                for j, (row, col) in enumerate(zip(batch["rows"].tolist(), batch["cols"].tolist())):
                    got.setdefault(int(batch["tokens"][j]), []).append(logits[j])
        for e in examples:
            ids = torch.tensor([e["prompt"] + e["answer"]])
            want = model(ids).logits[0, len(e["prompt"]) - 1 : len(e["prompt"]) - 1 + len(e["answer"])]
            for tok, row in zip(e["answer"], want):
                assert min(float((row - g).abs().max()) for g in got[tok]) < 1e-3
    assert sum(s["records"] for s in packed) == len(examples)


def test_generator_mistakes_become_the_first_judge_negatives(small_kb, renderer, tmp_path):
    """A second round: the tags the (real, embedded) generator proposes wrongly for a sample are
    written as that sample's "No" judge records, and only judge records are written."""
    proposals: dict[str, list[str]] = {}

    def generator(system, user, names, k):
        tags = renderer.select_tags(system, user, names, k).tags
        proposals[user] = tags
        return tags

    path = tmp_path / "round2.jsonl.gz"
    report = build_training_sets(
        small_kb, renderer.render_text, path, Context(max_tags=3), max_samples=3, generator=generator, tasks=("judge",)
    )
    records = [json.loads(l) for l in gzip.open(path, "rt", encoding="utf-8")]
    assert report.generation_records == 0 and {r["task"] for r in records} == {"judge"}
    assert len(proposals) == 3
    wrong = 0
    for sample_id in {r["id"] for r in records}:
        sample = small_kb.get_sample(sample_id)
        said_no = {r["tag"] for r in records if r["id"] == sample_id and r["answer"] == "No"}
        mistakes = [t for user, tags in proposals.items() if sample.text[:200] in user for t in tags if t not in sample.tags]
        assert set(mistakes) <= said_no
        wrong += len(mistakes)
    assert report.generator_mistakes == wrong
