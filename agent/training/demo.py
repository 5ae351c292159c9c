"""The demo's fine-tuned model, built by one command into ``knowledge_base/demo_data/model/``
(``agent.demo_model`` installs it into the demo knowledge base on first use).

``build_demo_model`` (``llm4tag train-demo``, ``make demo-model``) builds the demo knowledge base
afresh in a work folder, fine-tunes the embedded model on its samples on CPU (two rounds: the
second trains the judge on the first round's wrong proposals), writes the LoRA adapter GGUF,
runs the fine-tuned pipeline on ``calibration.jsonl`` (debtags train items outside the demo's
history) and on ``foreign.jsonl`` (everyday texts no tag fits), fits the fusion of all the
evidence there (kept only when it beats recall's own P(right) out of fold) and chooses the
threshold with the best micro-F1 on the calibration items (at most ``Context.max_tags`` tags
each). It writes three files: ``demo-lora.gguf``, ``calibration.json`` (when a fusion was
kept) and ``demo-model.json`` (threshold, seed, command, the figures of the run).
``refit_only`` keeps the shipped adapter and refits the fusion and the threshold (minutes, not
the fine-tune's hour).

"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from knowledge_base.demo import build_demo_kb

from ..confidence import FILE_NAME as CALIBRATION_FILE
from ..context import Context
from ..demo_model import ADAPTER, CALIBRATION_ITEMS, DEMO_MODEL, DESCRIPTION, FOREIGN_ITEMS, install_demo_model, shipped_demo_model


def demo_threshold(run_dir: Path, fusion, max_tags: int) -> dict:
    """The threshold with the best micro-F1 on the calibration run's labelled items, for the
    confidence the demo will show (the fitted fusion when one was kept, else recall's P(right)),
    with the figures at it and how many of the run's foreign texts it still tags."""
    from ..batch import read_finished
    from ..evaluation.metrics import best_cut, multi_tag_metrics
    from ..evaluation.report import scored_answer

    finished = read_finished(Path(run_dir) / "items-full.jsonl")
    for r in finished.values():
        for j in r.get("judged", []):
            if fusion is not None and "features" in j:
                j["confidence"] = fusion.predict(j["features"])
            elif j.get("recall_probability") is not None:
                j["confidence"] = j["recall_probability"]
    records = [r for r in finished.values() if not r["id"].startswith("ood:")]
    foreign = [r for r in finished.values() if r["id"].startswith("ood:")]
    cut = best_cut([scored_answer(r) for r in records], [r["truth"] for r in records], max_tags)
    threshold = round(cut["threshold"], 2)
    kept = [[t for t, c in scored_answer(r) if c is not None and c >= threshold][:max_tags] for r in records]
    at = multi_tag_metrics(kept, [r["truth"] for r in records])
    return {
        "threshold": threshold,
        **{k: at[k] for k in ("Acc@1", "Acc@2", "Acc@3", "Coverage@1", "Coverage@3", "precision_micro", "recall_micro", "f1_micro")},
        "foreign_tagged": sum(1 for r in foreign if any(c is not None and c >= threshold for _, c in scored_answer(r))),
        "foreign_texts": len(foreign),
    }


def build_demo_model(
    work_dir: str | Path,
    out_dir: str | Path = DEMO_MODEL,
    *,
    samples: int = 200,
    mistake_samples: int = 80,
    epochs: int = 1,
    lora_r: int = 8,
    seed: int = 7,
    calibration_items: int | None = None,
    foreign_items: int | None = None,
    refit_only: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train, export, fit and tune the demo's model from ``knowledge_base/demo_data/`` (see the
    module's docstring); writes the shipped files into ``out_dir`` and returns what it measured."""
    from ..evaluation.calibrate import choose_and_fit
    from ..evaluation.labelled import load_out_of_domain
    from . import train_model

    started = time.perf_counter()
    work = Path(work_dir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log(f"building the demo knowledge base in {work / 'kb'} ...")
    kb = build_demo_kb(work / "kb", log)
    context = Context(kb_dir=str(kb.directory))
    shipped = shipped_demo_model() if refit_only else None
    if refit_only:
        if shipped is None:
            raise FileNotFoundError(f"no shipped demo model in {DEMO_MODEL} to refit; build one without --refit-only")
        log("keeping the shipped adapter (--refit-only) ...")
        install_demo_model(kb)
        adapter = DEMO_MODEL / ADAPTER
        summary = {"training": shipped.get("training")}
    else:
        log(f"fine-tuning on {samples} samples ({epochs} epoch), then the judge on the generator's mistakes for {mistake_samples} ...")
        summary = train_model(
            kb,
            work / "training",
            max_samples=samples,
            epochs=epochs,
            lora_r=lora_r,
            rounds=2,
            mistake_samples=mistake_samples,
            serve="adapter",
            seed=seed,
            context=context,
            name="llm4tag-demo",
            progress=progress,
        )
        adapter = Path(summary["export"]["adapter_gguf"])
    foreign = load_out_of_domain(FOREIGN_ITEMS, foreign_items, seed=seed if foreign_items else None)
    log(f"running the fine-tuned pipeline on {CALIBRATION_ITEMS.name} and {len(foreign)} foreign texts, and fitting the fusion ...")
    run_dir = work / "calibration-run"
    fit = choose_and_fit(
        kb,
        CALIBRATION_ITEMS,
        context.with_overrides(use_learned_calibration=False),
        run_dir,
        limit=calibration_items,
        seed=None,
        out_of_domain=foreign,
    )
    from ..confidence import LearnedCalibration

    fusion = LearnedCalibration.load(kb.directory)
    tuned = demo_threshold(run_dir, fusion, context.max_tags)
    if adapter.resolve() != (out / ADAPTER).resolve():
        shutil.copyfile(adapter, out / ADAPTER)
    if fusion is not None:
        shutil.copyfile(kb.directory / CALIBRATION_FILE, out / CALIBRATION_FILE)
    else:
        (out / CALIBRATION_FILE).unlink(missing_ok=True)
    described = {
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ("llm4tag train-demo " + " ".join(sys.argv[2:])).strip()
        if sys.argv[1:2] == ["train-demo"]
        else "agent.training.demo.build_demo_model",
        **(
            {"seed": seed, "samples": samples, "mistake_samples": mistake_samples, "epochs": epochs, "lora_r": lora_r}
            if not refit_only
            else {k: shipped.get(k) for k in ("seed", "samples", "mistake_samples", "epochs", "lora_r")}
            | {"adapter_built_at": shipped.get("adapter_built_at", shipped.get("built_at"))}
        ),
        "data": "knowledge_base/demo_data/samples.jsonl (history), calibration.jsonl and foreign.jsonl (fusion and threshold)",
        "threshold": tuned["threshold"],
        "threshold_rule": "best micro-F1 on the calibration items, at most max_tags tags each",
        "at_threshold_on_calibration_items": tuned,
        "fusion": fit.get("chosen"),
        "fusion_report": fit,
        "adapter_bytes": (out / ADAPTER).stat().st_size,
        "training": summary["training"]
        if refit_only
        else {k: summary.get(k) for k in ("sets", "training", "sets_round2", "training_round2")},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / DESCRIPTION).write_text(json.dumps(described, indent=2, default=str) + "\n", encoding="utf-8")
    log(
        f"wrote {out / ADAPTER} ({described['adapter_bytes']:,} bytes), {out / DESCRIPTION}"
        + (f", {out / CALIBRATION_FILE}" if fusion else "")
    )
    return described
