"""Long-term knowledge injection (paper §3.2.1): fine-tune the embedded model for generation and
for the Yes/No judge, export it, and record it in the knowledge base.

``train_model`` runs the whole chain: build D and D′ from the knowledge base (``datasets``),
LoRA fine-tuning (``finetune``, CPU or CUDA), merge and export a Q8_0 GGUF plus an Ollama
Modelfile (``export``), then record the model in ``training.json`` beside the knowledge base.
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
from ..runtime import TRAINING_RECORD, read_training_record, recorded_model

RECORD = TRAINING_RECORD


def training_record(kb_dir: str | Path) -> dict:
    """What ``training.json`` says: the current model and every run (empty when never trained)."""
    path = Path(kb_dir) / RECORD
    return read_training_record(path) if path.is_file() else {}


def trained_model_path(kb_dir: str | Path | None) -> str | None:
    """The knowledge base's fine-tuned GGUF, when one is recorded and still on disk."""
    return None if kb_dir is None else recorded_model(training_record(kb_dir))


def _save_record(kb_dir: Path, record: dict) -> None:
    tmp = kb_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, kb_dir / RECORD)


def _require_train_extra() -> None:
    missing = [m for m in ("transformers", "peft", "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"training needs {', '.join(missing)}: pip install 'llm4tag[train]'")


def train_model(kb: KnowledgeBase, work_dir: str | Path | None = None, *, max_samples: int = 2000, epochs: int = 2, batch_size: int = 8,
                lr: float = 2e-4, lora_r: int = 16, since_last: bool = False, prepare_only: bool = False, adapter: str | Path | None = None,
                device: str = "auto", context: Context | None = None, name: str = "llm4tag-tagger",
                progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Build the sets, fine-tune, export and record. Returns a summary (paths, sizes, held-out figures)."""
    from ..llm.llamacpp import LlamaCppBackend, shipped_model_path
    from .datasets import build_training_sets

    _require_train_extra()
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
        report = build_training_sets(kb, renderer.render_text, data, context, max_samples=max_samples, since=since,
                                     progress=(lambda d, t: progress("building sets", d, t)) if progress else None)
        summary["sets"] = asdict(report)
        if prepare_only:
            script = Path(__file__).with_name("finetune.py")
            summary["next"] = (f"python {script} --base {base} --data {data} --out {work / 'run'} --epochs {epochs}; "
                               f"then llm4tag train --adapter {work / 'run' / 'adapter'}")
            return summary
        from .finetune import finetune_args, train

        previous = record.get("adapter") if since_last else None
        result = train(finetune_args(base, data, work / "run", epochs=epochs, batch_size=batch_size, lr=lr, lora_r=lora_r,
                                     device=device, init_adapter=previous))
        summary["training"] = {k: v for k, v in result.items() if k != "losses"}
        adapter = work / "run" / "adapter"
    else:
        log = Path(adapter).parent / "train_log.json"
        if log.is_file():
            summary["training"] = {k: v for k, v in json.loads(log.read_text(encoding="utf-8")).items() if k != "losses"}
    from .export import export_model

    exported = export_model(base, adapter, work / "model", name=name)
    summary["export"] = exported
    runs = record.get("runs", [])
    runs.append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "since_last": since_last, "adapter": str(adapter),
                 "model": exported["gguf"], **{k: summary[k] for k in ("sets", "training") if k in summary}})
    _save_record(kb.directory, {"model": exported["gguf"], "modelfile": exported["modelfile"], "adapter": str(adapter), "base": base,
                                "trained_at": runs[-1]["at"], "last_run_at": run_started, "runs": runs})
    return summary
