"""The bundled demo knowledge base (a slice of debtags; see demo_data/NOTICE.md).

Built on first use into ``$LLM4TAG_HOME/demo-kb`` (default ``~/.cache/llm4tag/demo-kb``) and
reused afterwards; a change to the bundled files rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock

from .config import KnowledgeBaseConfig, llm4tag_home
from .graph import SNAPSHOT_FORMAT, SNAPSHOT_VERSION
from .loaders import read_documents, read_samples, read_tags
from .learned_recall import RANKER_VERSION, train_learned_recall
from .store import KnowledgeBase

DEMO_DATA = Path(__file__).parent / "demo_data"
DEMO_FILES = ("tags.tsv", "samples.jsonl", "docs/debtags-guide.md")


def demo_kb_dir() -> Path:
    return llm4tag_home() / "demo-kb"


def _fingerprint() -> str:
    h = hashlib.sha1(repr(KnowledgeBaseConfig()).encode())  # new defaults rebuild the demo too
    h.update(f"graph {SNAPSHOT_FORMAT} {SNAPSHOT_VERSION}".encode())  # so does a new graph format (an old demo kept a pickle)
    h.update(f"ranker {RANKER_VERSION}".encode())  # and a new way of fitting the recall ranker
    for name in (*DEMO_FILES, "foreign.jsonl"):  # the everyday texts: the ranker's contrast learns from them
        h.update((DEMO_DATA / name).read_bytes())
    return h.hexdigest()[:12]


def demo_examples() -> list[dict]:
    """Validation texts (never loaded into the demo KB) to try the tagger on."""
    with open(DEMO_DATA / "examples.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_demo_kb(directory: Path, log: Callable[[str], None] = print) -> KnowledgeBase:
    """Build the demo knowledge base from the bundled files into an empty ``directory``."""
    kb = KnowledgeBase(directory)
    log("  " + kb.add_tags(read_tags(DEMO_DATA / "tags.tsv").records).summary() + " (tags)")
    log("  " + kb.add_samples(read_samples(DEMO_DATA / "samples.jsonl").records).summary() + " (samples)")
    log("  " + kb.add_documents(read_documents([DEMO_DATA / "docs"]).records).summary() + " (document passages)")
    trained = train_learned_recall(kb)
    log(f"  learned recall path trained on {trained['samples']} samples, {trained['tags']} tags in {trained['seconds']:.1f}s")
    return kb


def open_demo_kb(log: Callable[[str], None] = print, prepare_encoder: bool = False) -> KnowledgeBase:
    """Open the demo knowledge base, building it first if needed (about a minute);
    ``prepare_encoder`` as for ``KnowledgeBase``."""
    directory = demo_kb_dir()
    directory.parent.mkdir(parents=True, exist_ok=True)
    marker = directory / "demo.built"
    with FileLock(str(directory.parent / "demo-kb.build.lock")):
        if marker.exists() and marker.read_text().strip() == _fingerprint():
            return KnowledgeBase(directory, prepare_encoder=prepare_encoder)
        if directory.exists():
            shutil.rmtree(directory)
        log(f"building the demo knowledge base in {directory} (first run only) ...")
        kb = build_demo_kb(directory, log)
        marker.write_text(_fingerprint())
        return kb
