"""The demo's shipped fine-tuned model (``knowledge_base/demo_data/model/``): what it is, and its
installation into the demo knowledge base on first use.

``install_demo_model`` copies the LoRA adapter GGUF, the fitted fusion and the tuned threshold
into the demo knowledge base and records the adapter in its ``training.json``, so the page, the
CLI and the tests tag with the fine-tuned model by default (``--no-fine-tuning`` runs the base
model). ``agent.training.demo`` builds these files (``llm4tag train-demo``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import replace

from knowledge_base.demo import DEMO_DATA
from knowledge_base.store import KnowledgeBase

from .confidence import FILE_NAME as CALIBRATION_FILE

TRAINING_RECORD = "training.json"  # beside a knowledge base: its fine-tuned model and every training run
DEMO_MODEL = DEMO_DATA / "model"
ADAPTER = "demo-lora.gguf"
DESCRIPTION = "demo-model.json"
CALIBRATION_ITEMS = DEMO_DATA / "calibration.jsonl"
FOREIGN_ITEMS = DEMO_DATA / "foreign.jsonl"  # everyday texts no demo tag fits: the fusion learns what foreign evidence looks like
INSTALLED = "demo-model.installed"


def shipped_demo_model() -> dict | None:
    """What ``demo-model.json`` says about the shipped model; None when none is shipped."""
    path = DEMO_MODEL / DESCRIPTION
    if not (path.is_file() and (DEMO_MODEL / ADAPTER).is_file()):
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _model_fingerprint() -> str:
    h = hashlib.sha1()
    for name in (ADAPTER, DESCRIPTION, CALIBRATION_FILE):
        path = DEMO_MODEL / name
        h.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return h.hexdigest()[:12]


def install_demo_model(kb: KnowledgeBase) -> bool:
    """Put the shipped adapter, fusion and threshold into the demo knowledge base (once per
    shipped version); False when no model is shipped."""
    described = shipped_demo_model()
    if described is None:
        return False
    from filelock import FileLock

    with FileLock(str(kb.directory / (INSTALLED + ".lock"))):  # two processes opening the demo at once install it once
        _install(kb, described)
    return True


def _install(kb: KnowledgeBase, described: dict) -> None:
    marker = kb.directory / INSTALLED
    fingerprint = _model_fingerprint()
    if marker.is_file() and marker.read_text(encoding="ascii").strip() == fingerprint:
        return
    target = kb.directory / "model"
    target.mkdir(exist_ok=True)
    shutil.copyfile(DEMO_MODEL / ADAPTER, target / (ADAPTER + ".partial"))
    (target / (ADAPTER + ".partial")).replace(target / ADAPTER)
    if (DEMO_MODEL / CALIBRATION_FILE).is_file():
        shutil.copyfile(DEMO_MODEL / CALIBRATION_FILE, kb.directory / CALIBRATION_FILE)
    else:
        (kb.directory / CALIBRATION_FILE).unlink(missing_ok=True)
    record = {
        "lora": f"model/{ADAPTER}",
        "shipped_with": "knowledge_base/demo_data/model",
        "trained_at": described.get("built_at"),
        "last_run_at": time.time(),  # llm4tag train --since-last trains on what is added from now on
        "runs": [],
        "note": "the demo's shipped adapter; llm4tag train replaces it with this knowledge base's own fine-tune",
    }
    tmp = kb.directory / (TRAINING_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    tmp.replace(kb.directory / TRAINING_RECORD)
    kb.update_config(replace(kb.config, threshold=described.get("threshold")))
    marker.write_text(fingerprint, encoding="ascii")
