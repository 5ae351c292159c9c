"""The fine-tuning sets, built from the knowledge base's annotated samples (paper §3.2.1, §3.3).

- D, generation: input = Template_b(c, Φ(c)) with Φ(c) the real recall output computed without
  the sample's own history entry (no leakage), target = the sample's correct tags among the
  candidates, as the JSON array the generator emits. Samples with no correct candidate are
  skipped (the generator cannot learn to name what it is not shown).
- D′, judge: (content, tag) → Yes/No with the judge prompt inference uses (including its
  demonstrations from similar samples); positives are the sample's tags, negatives its explicit
  incorrect tags and recalled-but-wrong candidates (hard negatives). Given a ``generator`` (the
  model of an earlier round), the tags it proposes wrongly for the sample come first among the
  negatives: the judge learns to refuse the near-misses the generator it works with makes.

Samples are selected for diversity: round-robin over tags, rarest first, so every tag is covered
as evenly as the history allows before any tag gets a second turn.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from knowledge_base.errors import InputError
from knowledge_base.loaders import Sample
from knowledge_base.recall import recall_candidates
from knowledge_base.store import KnowledgeBase, _json_list, sample_from_neighbour
from prompts import load_prompt
from prompts.fill import generation_prompt, judgment_examples, judgment_prompts

from ..context import Context


@dataclass
class TrainingSetReport:
    samples_available: int = 0
    samples_selected: int = 0
    generation_records: int = 0
    judge_records: int = 0
    judge_positive: int = 0
    skipped_no_correct_candidate: int = 0
    heldout_samples: int = 0
    generator_mistakes: int = 0  # judge negatives taken from the earlier round's wrong proposals
    tags_covered: int = 0
    path: str = ""
    notes: list[str] = field(default_factory=list)


def load_samples(kb: KnowledgeBase, since: float | None = None) -> tuple[list[Sample], dict[str, np.ndarray], dict[str, float]]:
    """Every annotated sample (or those added after ``since``), with its stored embedding."""
    col = kb.collection("samples")
    got = col.get(where={"added_at": {"$gt": since}} if since else None, include=["documents", "metadatas", "embeddings"])
    samples, vectors, added = [], {}, {}
    for cid, text, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"]):
        tags = tuple(_json_list(meta, "tags"))
        if tags:
            samples.append(Sample(cid, text, tags, tuple(_json_list(meta, "incorrect_tags"))))
            vectors[cid] = np.asarray(vec, dtype=np.float32)
            added[cid] = float((meta or {}).get("added_at", 0.0))
    return samples, vectors, added


def select_diverse(samples: list[Sample], limit: int, seed: int = 13) -> list[Sample]:
    """Round-robin over tags, rarest tag first: tags are covered evenly up to ``limit`` samples."""
    if len(samples) <= limit:
        return list(samples)
    rng = random.Random(seed)
    by_tag: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_tag[s.tags[0] if len(s.tags) == 1 else rng.choice(s.tags)].append(s)
    for group in by_tag.values():
        rng.shuffle(group)
    order = sorted(by_tag, key=lambda t: (len(by_tag[t]), t))
    chosen: list[Sample] = []
    seen: set[str] = set()
    while len(chosen) < limit and any(by_tag.values()):
        for tag in order:
            while by_tag[tag] and by_tag[tag][-1].id in seen:
                by_tag[tag].pop()
            if by_tag[tag] and len(chosen) < limit:
                s = by_tag[tag].pop()
                chosen.append(s)
                seen.add(s.id)
    return chosen


def build_training_sets(
    kb: KnowledgeBase,
    render: Callable[[str, str], str],
    out_path: str | Path,
    context: Context | None = None,
    max_samples: int = 2000,
    heldout_share: float = 0.1,
    since: float | None = None,
    seed: int = 13,
    negatives_per_sample: int = 2,
    progress: Callable[[int, int], None] | None = None,
    generator: Callable[[str, str, list[str], int], list[str]] | None = None,
    tasks: tuple[str, ...] = ("generate", "judge"),
) -> TrainingSetReport:
    """Write D and D′ as ``train.jsonl.gz`` records: prompt (chat-templated by ``render``), answer, task, split.

    ``generator(system, user, candidates, max_tags)`` returns the tags an earlier round's model
    proposes for the generation prompt; its wrong ones become the first judge negatives.
    ``tasks`` limits the records written (a second round writes only judge records)."""
    ctx = (context or Context()).with_overrides(kb_dir=str(kb.directory))
    report = TrainingSetReport(path=str(out_path))
    samples, vectors, _ = load_samples(kb, since)
    report.samples_available = len(samples)
    if not samples:
        raise InputError(
            "the knowledge base has no annotated samples"
            + (" added since the last training run" if since else "")
            + "; load some with llm4tag kb load-samples or record feedback first"
        )
    chosen = select_diverse(samples, max_samples, seed)
    report.samples_selected = len(chosen)
    rng = random.Random(seed)
    heldout = set(rng.sample([s.id for s in chosen], k=int(len(chosen) * heldout_share))) if len(chosen) >= 10 else set()
    report.heldout_samples = len(heldout)
    system = load_prompt("system")
    # the candidates tagging would see, less the learned path: its classifier was trained on these very samples
    recall_cfg = ctx.recall_config(kb.config.recall).with_overrides(max_learned=0)
    covered: set[str] = set()
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(str(out_path) + ".partial")
    with gzip.open(partial, "wt", encoding="utf-8") as fh:
        for n, s in enumerate(chosen, 1):
            split = "heldout" if s.id in heldout else "train"
            vector = vectors[s.id]
            result = recall_candidates(kb, s.text, recall_cfg, exclude_ids=[s.id], vector=vector)
            candidates = [{**asdict(c), "paths": c.paths} for c in result.candidates]
            names = [c["tag"] for c in candidates]
            truth = set(s.tags)
            right = [t for t in names if t in truth][: ctx.tag_limit]
            user = generation_prompt(s.text, candidates, ctx.mode, ctx.tag_limit, ctx.content_chars).user
            if right and "generate" in tasks:
                fh.write(
                    json.dumps(
                        {
                            "task": "generate",
                            "split": split,
                            "id": s.id,
                            "prompt": render(system, user),
                            "answer": json.dumps(right, ensure_ascii=False),
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                report.generation_records += 1
                covered.update(right)
            elif not right:
                report.skipped_no_correct_candidate += 1
            mistakes = [t for t in generator(system, user, names, ctx.tag_limit) if t not in truth] if generator and names else []
            report.generator_mistakes += len(mistakes)
            examples = [sample_from_neighbour(h) for h in kb.similar_samples(vector, ctx.max_examples, exclude=[s.id])]
            shots = judgment_examples(
                [{"text": e.text, "tags": list(e.tags), "incorrect_tags": list(e.incorrect_tags)} for e in examples], names
            )
            hard = [t for t in names if t not in truth]
            negatives = list(dict.fromkeys([*mistakes, *s.incorrect_tags[:1], *hard]))[: max(negatives_per_sample, len(mistakes))]
            positives = list(s.tags)[: max(1, negatives_per_sample)]
            pairs = [(t, "Yes") for t in positives] + [(t, "No") for t in negatives]
            descriptions = {c["tag"]: c.get("description", "") for c in candidates}
            missing = [t for t, _ in pairs if t not in descriptions]
            descriptions |= {t: tag.description for t, tag in kb.get_tags(missing).items()}
            prompts = judgment_prompts(s.text, [t for t, _ in pairs], descriptions, ctx.content_chars, shots)
            for (t, answer), user in zip(pairs, prompts if "judge" in tasks else []):
                fh.write(
                    json.dumps(
                        {"task": "judge", "split": split, "id": s.id, "tag": t, "prompt": render(system, user), "answer": answer},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                report.judge_records += 1
                report.judge_positive += answer == "Yes"
            if progress:
                progress(n, len(chosen))
    partial.replace(out_path)
    report.tags_covered = len(covered)
    return report
