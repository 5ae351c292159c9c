"""The bundled demo knowledge base (a slice of debtags; see demo_data/NOTICE.md).

Built on first use into ``$LLM4TAG_HOME/demo-kb`` (default ``~/.cache/llm4tag/demo-kb``) and
reused afterwards; a change to the bundled files rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from filelock import FileLock

from .config import KnowledgeBaseConfig, llm4tag_home
from .encoder import Encoder
from .graph import STORE, STORE_VERSION
from .loaders import read_documents, read_samples, read_tags
from .learned_recall import RANKER_VERSION, foreign_texts, train_learned_recall
from .store import KnowledgeBase

DEMO_DATA = Path(__file__).parent / "demo_data"
DEMO_FILES = ("tags.tsv", "samples.jsonl", "docs/debtags-guide.md")
SHIPPED_VECTORS = DEMO_DATA / "vectors.npz"  # the embeddings of every text the build encodes (``write_shipped_vectors``)


def demo_kb_dir() -> Path:
    return llm4tag_home() / "demo-kb"


def _fingerprint() -> str:
    h = hashlib.sha1(repr(KnowledgeBaseConfig()).encode())  # new defaults rebuild the demo too
    h.update(f"graph {STORE} {STORE_VERSION}".encode())  # so does a new graph format (an old demo kept a pickle, then JSON)
    h.update(f"ranker {RANKER_VERSION}".encode())  # and a new way of fitting the recall ranker
    for name in (*DEMO_FILES, "foreign.jsonl"):  # the everyday texts: the ranker's contrast learns from them
        h.update((DEMO_DATA / name).read_bytes())
    return h.hexdigest()[:12]


def demo_examples() -> list[dict]:
    """Validation texts (never loaded into the demo KB) to try the tagger on."""
    with open(DEMO_DATA / "examples.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_demo_kb(directory: Path, log: Callable[[str], None] = print, shipped_vectors: bool = True) -> KnowledgeBase:
    """Build the demo knowledge base from the bundled files into an empty ``directory``, with the
    embeddings shipped in ``vectors.npz`` when they belong to this encoder (``shipped_vectors``)."""
    kb = KnowledgeBase(directory)
    if shipped_vectors and _remember_shipped_vectors(kb):
        log("  using the embeddings shipped with the demo (no encoding)")
    try:
        log("  " + kb.add_tags(read_tags(DEMO_DATA / "tags.tsv").records).summary() + " (tags)")
        log("  " + kb.add_samples(read_samples(DEMO_DATA / "samples.jsonl").records).summary() + " (samples)")
        log("  " + kb.add_documents(read_documents([DEMO_DATA / "docs"]).records).summary() + " (document passages)")
        trained = train_learned_recall(kb)
    finally:
        kb.encoder.forget()
    log(f"  learned recall path trained on {trained['samples']} samples, {trained['tags']} tags in {trained['seconds']:.1f}s")
    return kb


def _remember_shipped_vectors(kb: KnowledgeBase) -> bool:
    """Give the encoder the shipped vectors of every text the build encodes, if they were computed by
    an encoder of its identity (another model or other weights: the build encodes as usual)."""
    try:
        with np.load(SHIPPED_VECTORS) as shipped:
            if str(shipped["encoder"]) != kb.encoder.identity():
                return False
            kb.encoder.remember([str(d) for d in shipped["digests"]], shipped["vectors"])
            return True
    except (OSError, KeyError, ValueError):
        return False


def write_shipped_vectors(log: Callable[[str], None] = print) -> Path:
    """Build the demo knowledge base in a temporary folder, recording every text it encodes, and
    write their vectors (float16) with the encoder's identity to ``vectors.npz``; run it when the
    demo's files, the everyday corpus or the encoder change (``make demo-vectors``)."""
    encoder = Encoder.shared(KnowledgeBaseConfig().encoder)  # the one every demo knowledge base of this process uses
    with tempfile.TemporaryDirectory(prefix="llm4tag-demo-vectors-") as work:
        encoder.recording = []
        try:
            build_demo_kb(Path(work) / "kb", log, shipped_vectors=False)
            # and the everyday corpus, whose vectors a training may have read from this machine's cache
            texts = list(dict.fromkeys(encoder.recording + foreign_texts()))
        finally:
            encoder.recording = None
    vectors = encoder.encode(texts).vectors  # one bulk call (PyTorch), as a build's
    np.savez_compressed(
        SHIPPED_VECTORS,
        encoder=np.array(encoder.identity()),
        digests=np.array([encoder.digest(t) for t in texts]),
        vectors=vectors.astype(np.float16),
    )
    log(f"{len(texts)} vectors → {SHIPPED_VECTORS}")
    return SHIPPED_VECTORS


def open_demo_kb(log: Callable[[str], None] = print, prepare_encoder: bool = False) -> KnowledgeBase:
    """Open the demo knowledge base, building it first if needed (about 30 seconds: its embeddings ship with it);
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


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write-vectors"]:
        sys.exit("usage: python -m knowledge_base.demo --write-vectors")
    write_shipped_vectors()
