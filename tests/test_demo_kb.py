"""The demo knowledge base builds from the embeddings shipped with it, and they cover every text."""

from __future__ import annotations

import numpy as np

from knowledge_base.demo import SHIPPED_VECTORS, _remember_shipped_vectors, build_demo_kb
from knowledge_base.encoder import Encoder
from knowledge_base.store import KnowledgeBase


def test_the_demo_builds_from_its_shipped_vectors_and_they_cover_every_text_it_encodes(tmp_path):
    with np.load(SHIPPED_VECTORS) as shipped:
        identity, digests, vectors = str(shipped["encoder"]), [str(d) for d in shipped["digests"]], shipped["vectors"]
    kb_dir = tmp_path / "demo-kb"
    encoder = KnowledgeBase(kb_dir).encoder
    assert identity == encoder.identity(), "vectors.npz was written by another encoder: run make demo-vectors"
    encoder.recording = []
    try:
        kb = build_demo_kb(kb_dir, log=lambda line: None)
        encoded = list(dict.fromkeys(encoder.recording))
    finally:
        encoder.recording = None
    missing = [t for t in encoded if Encoder.digest(t) not in set(digests)]
    assert not missing, f"{len(missing)} texts the build encodes have no shipped vector (first: {missing[0][:80]!r}): run make demo-vectors"
    # what was stored is the shipped vector itself, not a new encoding
    got = kb.collection("samples").get(limit=5, include=["embeddings", "documents"])
    index = {d: i for i, d in enumerate(digests)}
    for text, stored in zip(got["documents"], got["embeddings"]):
        # equal to well within float16's rounding (about 5e-5 here), which a new encoding would show
        assert np.abs(np.asarray(stored, dtype=np.float32) - vectors[index[Encoder.digest(text)]].astype(np.float32)).max() < 1e-6
    assert not encoder._known  # forgotten after the build: later texts are encoded as usual


def test_vectors_of_another_encoder_are_not_used(tmp_path, monkeypatch):
    kb = KnowledgeBase(tmp_path / "kb")
    monkeypatch.setattr(Encoder, "identity", lambda self: "another-model")
    assert _remember_shipped_vectors(kb) is False and not kb.encoder._known
