"""Long-term knowledge injection (paper §3.2.1): fine-tune the embedded model for generation and
for the Yes/No judge, export it, and record it in the knowledge base.

``train_model`` runs the whole chain: build D and D′ from the knowledge base (``datasets``),
LoRA fine-tuning (``finetune``, CPU or CUDA), then either merge and export a Q8_0 GGUF plus an
Ollama Modelfile or write a LoRA adapter GGUF (``export``), and record it in ``training.json``
beside the knowledge base.
A knowledge base with a recorded model tags with it by default (backend ``llamacpp``).
Needs the ``train`` extra (transformers, peft, gguf).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from knowledge_base.errors import InputError
from knowledge_base.store import KnowledgeBase

from ..context import Context
from ..runtime import TRAINING_RECORD, _recorded_file, read_training_record, recorded_model

RECORD = TRAINING_RECORD


def training_record(kb_dir: str | Path) -> dict:
    """What ``training.json`` says: the current model and every run (empty when never trained)."""
    path = Path(kb_dir) / RECORD
    return read_training_record(path) if path.is_file() else {}


def trained_model_path(kb_dir: str | Path | None) -> str | None:
    """The knowledge base's fine-tuned GGUF, when one is recorded and still on disk."""
    return None if kb_dir is None else recorded_model(training_record(kb_dir), Path(kb_dir))


def _save_record(kb_dir: Path, record: dict) -> None:
    tmp = kb_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, kb_dir / RECORD)


def _previous_adapter(kb: KnowledgeBase, record: dict, base: str, work: Path) -> str | None:
    """The adapter ``--since-last`` goes on from: the last run's peft folder, else the peft form of
    the recorded LoRA adapter GGUF (the demo ships only that); None: a fresh LoRA."""
    if record.get("adapter") and Path(record["adapter"]).is_dir():
        return record["adapter"]
    lora = _recorded_file(record.get("lora"), kb.directory)
    if lora:
        from .export import adapter_from_lora_gguf

        return str(adapter_from_lora_gguf(lora, base, work / "previous-adapter"))
    return None


def _require_train_extra() -> None:
    missing = [m for m in ("transformers", "peft", "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"training needs {', '.join(missing)}: pip install 'llm4tag[train]'")


def train_model(
    kb: KnowledgeBase,
    work_dir: str | Path | None = None,
    *,
    max_samples: int = 2000,
    epochs: int = 2,
    batch_size: int = 8,
    lr: float = 2e-4,
    lora_r: int = 16,
    since_last: bool = False,
    prepare_only: bool = False,
    adapter: str | Path | None = None,
    device: str = "auto",
    context: Context | None = None,
    name: str = "llm4tag-tagger",
    rounds: int = 1,
    mistake_samples: int = 200,
    serve: str = "merged",
    time_limit: float | None = None,
    seed: int = 13,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Build the sets, fine-tune, export and record. Returns a summary (paths, sizes, held-out figures).

    ``rounds=2`` adds a second round for the judge: the first round's model generates tags for up
    to ``mistake_samples`` samples, its wrong proposals become judge negatives, and training goes
    on from the first round's adapter on those judge records. ``serve``: ``merged`` writes a Q8_0
    GGUF with the fine-tune merged in (and an Ollama Modelfile): faster to run; ``adapter`` writes
    a LoRA adapter GGUF of a few MB that llama.cpp applies to the base model at load time."""
    from ..llm.llamacpp import LlamaCppBackend, default_model_path, shipped_model_path
    from .datasets import build_training_sets

    _require_train_extra()
    if serve not in ("merged", "adapter"):
        raise InputError(f"serve must be 'merged' or 'adapter', not {serve!r}")
    if rounds not in (1, 2):
        raise InputError(f"rounds must be 1 or 2, not {rounds}")
    work = Path(work_dir or kb.directory / "training")
    work.mkdir(parents=True, exist_ok=True)
    record = training_record(kb.directory)
    base = record.get("base") or shipped_model_path()
    since = record.get("last_run_at") if since_last else None
    if since_last and since is None:
        raise InputError("--since-last: this knowledge base has no earlier training run; run llm4tag train first")
    run_started = time.time()
    data = work / "train.jsonl.gz"
    summary: dict = {"work_dir": str(work), "base": base}
    if adapter is None:
        renderer = LlamaCppBackend(base)
        report = build_training_sets(
            kb,
            renderer.render_text,
            data,
            context,
            max_samples=max_samples,
            since=since,
            seed=seed,
            progress=(lambda d, t: progress("building sets", d, t)) if progress else None,
        )
        summary["sets"] = asdict(report)
        if prepare_only:
            script = Path(__file__).with_name("finetune.py")
            summary["next"] = (
                f"python {script} --base {base} --data {data} --out {work / 'run'} --epochs {epochs}; "
                f"then llm4tag train --adapter {work / 'run' / 'adapter'}"
            )
            return summary
        from .export import export_lora_adapter
        from .finetune import finetune_args, train

        previous = _previous_adapter(kb, record, base, work) if since_last else None
        settings = dict(batch_size=batch_size, lr=lr, lora_r=lora_r, device=device, time_limit=time_limit, seed=seed)
        result = train(finetune_args(base, data, work / "run", epochs=epochs, init_adapter=previous, **settings))
        summary["training"] = {k: v for k, v in result.items() if k != "losses"}
        adapter = work / "run" / "adapter"
        if rounds == 2:
            first = export_lora_adapter(base, adapter, work / "run" / "round1.lora.gguf", name=f"{name}-round1")
            tuned = LlamaCppBackend(default_model_path(), lora_path=first["adapter_gguf"])
            data2 = work / "train-round2.jsonl.gz"
            report2 = build_training_sets(
                kb,
                renderer.render_text,
                data2,
                context,
                max_samples=min(mistake_samples, max_samples),
                since=since,
                seed=seed + 1,
                tasks=("judge",),
                generator=lambda system, user, names, k: tuned.select_tags(system, user, names, k).tags,
                progress=(lambda d, t: progress("generator's mistakes", d, t)) if progress else None,
            )
            summary["sets_round2"] = asdict(report2)
            result2 = train(finetune_args(base, data2, work / "run2", epochs=1, init_adapter=adapter, **settings))
            summary["training_round2"] = {k: v for k, v in result2.items() if k != "losses"}
            adapter = work / "run2" / "adapter"
    else:
        log = Path(adapter).parent / "train_log.json"
        if log.is_file():
            summary["training"] = {k: v for k, v in json.loads(log.read_text(encoding="utf-8")).items() if k != "losses"}
    if serve == "merged":
        from .export import export_model

        exported = export_model(base, adapter, work / "model", name=name)
        served = {"model": exported["gguf"], "modelfile": exported["modelfile"]}
    else:
        from .export import export_lora_adapter

        exported = export_lora_adapter(base, adapter, work / "model" / f"{name}.lora.gguf", name=name)
        served = {"lora": exported["adapter_gguf"]}
    summary["export"] = exported
    runs = record.get("runs", [])
    runs.append(
        {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "since_last": since_last,
            "adapter": str(adapter),
            **served,
            **{k: summary[k] for k in ("sets", "training", "sets_round2", "training_round2") if k in summary},
        }
    )
    _save_record(
        kb.directory,
        {**served, "adapter": str(adapter), "base": base, "trained_at": runs[-1]["at"], "last_run_at": run_started, "runs": runs},
    )
    return summary
