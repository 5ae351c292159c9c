"""Tags without history, simulated for an evaluation (``llm4tag eval --cold-start SHARE``).

A team adds a tag with its name and description long before any content is annotated with it.
``cold_start_kb`` copies the knowledge base into the evaluation's folder, takes a seeded
``share`` of the tags that have history out of every sample's annotations there (their names,
descriptions and everything else stay: ``KnowledgeBase.forget_tags``), and retrains the learned
recall path on what is left, so no path has seen those tags used. The evaluation then runs on
the copy and reports the items that carry one of those tags apart (``cold`` items). The copy is
made once per folder, share, seed and state of the knowledge base; a resumed evaluation reuses it,
and a change to the knowledge base (samples, a retrained classifier) makes it again.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from knowledge_base.errors import InputError
from knowledge_base.learned_recall import train_learned_recall
from knowledge_base.store import KnowledgeBase, _json_list

FOLDER = "cold-start-kb"
RECORD = "cold-start.json"
# what a copy leaves behind: the tagging graph's caches and reviews belong to the original
# and so does a fine-tuned model, which was trained on the annotations the copy hides
SKIPPED = ("node-cache.sqlite*", "reviews.sqlite*", ".write.lock", "training", "training.json")


def cold_start_kb(kb: KnowledgeBase, out_dir: str | Path, share: float, seed: int) -> tuple[Path, list[str]]:
    """A copy of ``kb`` in ``out_dir`` in which a seeded ``share`` of the tags with history have
    none; returns its folder and those tags."""
    if not 0.0 < share < 1.0:
        raise InputError(f"--cold-start must be a share between 0 and 1 (e.g. 0.1), not {share}")
    if kb.config.chroma_host:
        raise InputError("--cold-start copies the knowledge base's folder; a knowledge base on a Chroma server cannot be copied that way")
    target = Path(out_dir) / FOLDER
    record_path = target / RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("share") != share or record.get("seed") != seed or record.get("source") != str(kb.directory):
            raise InputError(f"{target} was made for another --cold-start share, seed or knowledge base; use another --out folder")
        if record.get("source_revision") == kb.revision():
            return target, list(record["tags"])
        # the knowledge base changed since (samples, a retrained classifier): the copy is made again from it
    source_revision = kb.revision()
    if target.exists():
        shutil.rmtree(target)  # an earlier copy that never finished, or one of an earlier state
    with kb.write_lock():  # nobody writes while the folder is copied
        shutil.copytree(kb.directory, target, ignore=shutil.ignore_patterns(*SKIPPED))
    copy = KnowledgeBase(target)
    metas = copy.collection("samples").get(include=["metadatas"])["metadatas"]
    used = sorted({t for meta in metas for t in _json_list(meta or {}, "tags")})
    cold = sorted(random.Random(seed).sample(used, max(1, round(len(used) * share)))) if used else []
    changed = copy.forget_tags(cold)
    trained = train_learned_recall(copy) if kb.classifier() is not None else None
    record_path.write_text(
        json.dumps(
            {
                "share": share,
                "seed": seed,
                "source": str(kb.directory),
                "source_revision": source_revision,
                "tags": cold,
                "samples": changed,
                "classifier": trained,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return target, cold
