"""Serve a fine-tune: as a LoRA adapter GGUF that llama.cpp applies to the base model at load time
(``export_lora_adapter``, a few MB), or merged into the base weights as a GGUF plus an Ollama
Modelfile (``export_model``).

The adapter file follows llama.cpp's ``convert_lora_to_gguf.py``: ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, and for each adapted matrix ``W`` the tensors
``W.lora_a`` (rank × inputs) and ``W.lora_b`` (outputs × rank); llama.cpp scales their product by
alpha / rank, as peft does.

The GGUF is the base file with the fine-tuned matrices replaced (metadata, tokenizer and every
other tensor copied as they are), then re-quantized to Q8_0 by llama.cpp. Q8_0 keeps the
fine-tune; Q4_1 would erase most of it. llama.cpp stores Llama-family Q/K projections permuted
for its rotary layout (transformers' GGUF loader un-permutes them), so merged Q/K weights are
permuted back before writing. ``tests/test_training.py`` checks the exported file against the
merged model's own logits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..llm.base import BackendError

HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}

MODELFILE = '''# Ollama model for llm4tag, fine-tuned from {base}
# ollama create {name} -f Modelfile   then   llm4tag tag --backend ollama:{name} "..."
FROM ./{gguf}
TEMPLATE """{{{{- range .Messages }}}}<|im_start|>{{{{ .Role }}}}
{{{{ .Content }}}}<|im_end|>
{{{{ end }}}}<|im_start|>assistant
"""
PARAMETER stop "<|im_end|>"
PARAMETER temperature 0
'''


def llama_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order (convert_hf_to_gguf's ``permute``) from transformers' order."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def lora_tensors(base_gguf: str | Path, adapter_dir: str | Path) -> tuple[dict[str, np.ndarray], float, int]:
    """The adapter's A and B matrices keyed by GGUF tensor name (``blk.N.attn_q.weight.lora_a``),
    in llama.cpp's layout, with peft's alpha and rank."""
    from gguf import GGUFReader
    from safetensors.numpy import load_file

    adapter = Path(adapter_dir)
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    fields = GGUFReader(str(base_gguf)).fields
    arch = fields["general.architecture"].contents()
    heads = int(fields[f"{arch}.attention.head_count"].contents())
    kv_heads = int(fields[f"{arch}.attention.head_count_kv"].contents()) if f"{arch}.attention.head_count_kv" in fields else heads
    out: dict[str, np.ndarray] = {}
    pattern = re.compile(r"layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")
    for key, value in weights.items():
        match = pattern.search(key)
        if not match:
            raise BackendError(f"the adapter has a tensor llm4tag cannot map to llama.cpp: {key}")
        layer, module, part = match.groups()
        gguf_name = HF_TO_GGUF[module]
        w = value.astype(np.float32)
        if part == "B" and gguf_name in ("attn_q", "attn_k"):  # the rows of B are the outputs llama.cpp permutes
            w = llama_permute(w, heads if gguf_name == "attn_q" else kv_heads)
        out[f"blk.{layer}.{gguf_name}.weight.lora_{part.lower()}"] = w.astype(np.float16)
    return out, float(config["lora_alpha"]), int(config["r"])


def export_lora_adapter(base_gguf: str | Path, adapter_dir: str | Path, target: str | Path, name: str = "llm4tag-adapter") -> dict:
    """Write the peft adapter in ``adapter_dir`` as a llama.cpp LoRA adapter GGUF (F16), atomically."""
    from gguf import GGUFReader, GGUFWriter

    tensors, alpha, rank = lora_tensors(base_gguf, adapter_dir)
    names = {t.name for t in GGUFReader(str(base_gguf)).tensors}
    missing = sorted({n.rsplit(".lora_", 1)[0] for n in tensors} - names)
    if missing:
        raise BackendError(f"the base GGUF has no tensors {missing[:3]}…; was the adapter trained on another model?")
    arch = GGUFReader(str(base_gguf)).fields["general.architecture"].contents()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    writer = GGUFWriter(str(partial), arch=arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("general.name", name)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for key in sorted(tensors):
        writer.add_tensor(key, tensors[key])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(target)
    return {"adapter_gguf": str(target), "bytes": target.stat().st_size, "tensors": len(tensors), "rank": rank, "alpha": alpha}


def llama_unpermute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' row order from llama.cpp's (the inverse of ``llama_permute``)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def adapter_from_lora_gguf(adapter_gguf: str | Path, base_gguf: str | Path, out_dir: str | Path) -> Path:
    """A peft adapter folder from a LoRA adapter GGUF (``export_lora_adapter``'s inverse), so that
    training can go on from an adapter that was shipped only as GGUF (the demo's)."""
    from gguf import GGUFReader
    from safetensors.numpy import save_file

    reader = GGUFReader(str(adapter_gguf))
    if reader.fields.get("general.type") is None or reader.fields["general.type"].contents() != "adapter":
        raise BackendError(f"{adapter_gguf} is not a LoRA adapter GGUF")
    fields = GGUFReader(str(base_gguf)).fields
    arch = fields["general.architecture"].contents()
    heads = int(fields[f"{arch}.attention.head_count"].contents())
    kv_heads = int(fields[f"{arch}.attention.head_count_kv"].contents()) if f"{arch}.attention.head_count_kv" in fields else heads
    to_hf = {v: k for k, v in HF_TO_GGUF.items()}
    weights: dict[str, np.ndarray] = {}
    rank = 0
    for t in reader.tensors:
        match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight\.lora_([ab])", t.name)
        if not match:
            raise BackendError(f"{adapter_gguf} has a tensor llm4tag cannot map back: {t.name}")
        layer, gguf_name, part = match.groups()
        w = np.asarray(t.data, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])
        if part == "b" and gguf_name in ("attn_q", "attn_k"):
            w = llama_unpermute(w, heads if gguf_name == "attn_q" else kv_heads)
        rank = w.shape[0] if part == "a" else rank
        weights[f"base_model.model.model.layers.{layer}.{to_hf[gguf_name]}.lora_{part.upper()}.weight"] = np.ascontiguousarray(w)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": float(reader.fields["adapter.lora.alpha"].contents()),
        "lora_dropout": 0.0,
        "target_modules": sorted({k.split(".")[-1] for k in HF_TO_GGUF}),
        "bias": "none",
        "base_model_name_or_path": str(base_gguf),
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


def merged_matrices(base_gguf: str | Path, adapter_dir: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """The LoRA-targeted weights after merging, keyed by GGUF tensor name, in llama.cpp's layout."""
    import torch
    from peft import PeftModel

    from .finetune import load_base

    _, model = load_base(base_gguf)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    cfg = merged.config
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i, layer in enumerate(merged.model.layers):
            for hf_name, gguf_name in HF_TO_GGUF.items():
                module = layer.get_submodule(hf_name)
                w = module.weight.detach().float().cpu().numpy()
                if gguf_name == "attn_q":
                    w = llama_permute(w, cfg.num_attention_heads)
                elif gguf_name == "attn_k":
                    w = llama_permute(w, cfg.num_key_value_heads)
                out[f"blk.{i}.{gguf_name}.weight"] = w.astype(np.float16)
    return out, {"heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads}


def write_gguf(base_gguf: str | Path, replacements: dict[str, np.ndarray], target: str | Path, name: str) -> None:
    """Copy ``base_gguf`` to ``target`` with some tensors replaced (as F16)."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(str(base_gguf))
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(str(target), arch=arch)
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = fld.contents()
        if key == "general.name":
            value = name
        if key == "general.file_type":
            continue  # llama.cpp writes the right one when it re-quantizes
        sub_type = fld.types[-1] if fld.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, fld.types[0], sub_type=sub_type)
    missing = set(replacements) - {t.name for t in reader.tensors}
    if missing:
        raise BackendError(f"the base GGUF has no tensors {sorted(missing)[:3]}…; was the adapter trained on another model?")
    for t in reader.tensors:
        if t.name in replacements:
            data = replacements[t.name]
            writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, GGMLQuantizationType.F16)
        else:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(replacements[t.name] if t.name in replacements else t.data)
    writer.close()


def export_model(
    base_gguf: str | Path, adapter_dir: str | Path, out_dir: str | Path, name: str = "llm4tag-tagger", ftype: str = "Q8_0"
) -> dict:
    """Merge, write ``<name>.gguf`` (``ftype``: Q8_0 or F16) and ``Modelfile`` into ``out_dir``."""
    from ..llm.llamacpp import requantize

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    replacements, shape = merged_matrices(base_gguf, adapter_dir)
    f16 = out / f"{name}.F16.gguf"
    partial = out / f"{name}.F16.gguf.partial"
    write_gguf(base_gguf, replacements, partial, name)
    partial.replace(f16)
    final = f16
    if ftype != "F16":
        final = out / f"{name}.{ftype}.gguf"
        requantize(f16, final, ftype)
        f16.unlink()
    (out / "Modelfile").write_text(MODELFILE.format(base=Path(base_gguf).name, name=name, gguf=final.name), encoding="utf-8")
    return {
        "gguf": str(final),
        "modelfile": str(out / "Modelfile"),
        "bytes": final.stat().st_size,
        "tensors_replaced": len(replacements),
        **shape,
    }
