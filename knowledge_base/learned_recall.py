"""Training the learned recall path: the classifier and, beside it, the recall ranker.

``train_learned_recall(kb)``:

1. holds out a seeded slice of the history (``holdout``, 10% by default, when that is at least
   ``MIN_HELD_OUT`` items);
2. trains a classifier on the rest with each feature variant — TF-IDF words beside the
   embedding, or the embedding alone — keeps the one whose first tag is right for more held-out
   items (words help long, jargon-rich texts and can hurt very short ones), and recalls each
   held-out item with it, its own history entry hidden from C2C2T — so no path sees the item's
   annotations;
3. fits the ranker on those candidates (right or wrong, with their evidence) — recalled as if a
   seeded share of the tags (``cold_share``) had no history yet: their annotations are hidden
   from that classifier, from the priors and from C2C2T, so that the ranker learns to rank a tag
   that has only its description (``knowledge_base.ranker``);
4. keeps, from the same items, how close an in-domain item lies to the history and to the tags
   (the ranker's ``domain``) and the confidence cut with the best micro-F1 (its ``threshold``);
5. trains the classifier on the whole history and stores it with the ranker (``classifier/``).

Run it after loading samples and again after corrections (``llm4tag kb train-classifier``).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace

import numpy as np

from .classifier import TagClassifier
from .ranker import RecallRanker, best_threshold, domain_quantiles
from .recall import ranker_features, recall_candidates
from .store import KnowledgeBase, _json_list

MIN_HELD_OUT = 20
COLD_SHARE = 0.15  # tags recalled as if they had no history while the ranker is fitted
DOMAIN_SHARE = 0.05  # in-domain items allowed below the domain cut of each closeness (nearest-neighbour OOD detection's 95%)


def train_learned_recall(kb: KnowledgeBase, holdout: float = 0.1, seed: int = 13, n_threads: int = 1,
                         cold_share: float = COLD_SHARE) -> dict:
    """Train and store the classifier and its ranker; returns what they were trained on."""
    started = time.perf_counter()
    got = kb.collection("samples").get(include=["metadatas", "embeddings", "documents"])
    rows = [(sid, np.asarray(vec, dtype=np.float32), _json_list(meta or {}, "tags"), text or "")
            for sid, meta, vec, text in zip(got["ids"], got["metadatas"], got["embeddings"] if len(got["ids"]) else [], got["documents"])]
    rows = [r for r in rows if r[2]]
    vectors = np.stack([r[1] for r in rows]) if rows else np.zeros((0, 1), dtype=np.float32)
    tags = [r[2] for r in rows]
    texts = [r[3] for r in rows]
    ranker, held_out, use_texts, choice = None, 0, texts, {"features": "words+embedding"}
    n_held = int(len(rows) * holdout)
    if n_held >= MIN_HELD_OUT:
        rng = random.Random(seed)
        held = set(rng.sample(range(len(rows)), n_held))
        known = sorted({t for i in range(len(rows)) if i not in held for t in tags[i]})
        cold = frozenset(rng.sample(known, int(len(known) * cold_share))) if len(known) >= 10 else frozenset()
        # the rest of the history as the ranker's slice sees it: the cold tags' annotations gone
        warm_tags = [[t for t in tags[i] if t not in cold] for i in range(len(rows))]
        train = [i for i in range(len(rows)) if i not in held and warm_tags[i]]
        # the features that suit this history: each variant trained on the rest, scored on the held-out slice
        variants = {}
        for name, variant_texts in (("words+embedding", texts), ("embedding", None)):
            model = TagClassifier.train(vectors[train], [warm_tags[i] for i in train], kb.config.encoder, n_threads=n_threads,
                                        texts=[variant_texts[i] for i in train] if variant_texts is not None else None)
            if name == "words+embedding" and model.info.vocabulary == 0:
                continue  # no words to learn from: the same model as the next one
            right = sum(bool(p) and p[0][0] in tags[i] for i in held for p in [model.predict(vectors[i], 1, texts[i])])
            variants[name] = (right / n_held, model)
        chosen = max(variants, key=lambda n: variants[n][0])  # ties: words+embedding, the first tried
        partial = variants[chosen][1]
        use_texts = texts if chosen == "words+embedding" else None
        choice = {"features": chosen, "held_out_accuracy": {n: round(a, 4) for n, (a, _) in variants.items()}}
        priors = _priors([warm_tags[i] for i in train])
        features, labels, fits, per_item = [], [], [], []
        config = replace(kb.config.recall, memory_similarity=None)  # memory would bring the cold tags' verdicts back
        for i in sorted(held):
            result = recall_candidates(kb, texts[i], config, exclude_ids=[rows[i][0]], vector=vectors[i], learned=partial,
                                       hidden_tags=cold)
            item_features = ranker_features(result.candidates, lambda t: priors.get(t, 0.0), result.fit, result.tag_similarity)
            item_labels = [cand.tag in tags[i] for cand in result.candidates]
            features += item_features
            labels += item_labels
            fits.append(result.fit)
            per_item.append((item_features, item_labels, len(tags[i])))
        cold_items = sum(1 for i in held if cold & set(tags[i]))
        ranker = RecallRanker.fit(features, labels, _priors(tags), items=n_held, cold_tags=len(cold), cold_items=cold_items,
                                  domain=domain_quantiles(fits, DOMAIN_SHARE))
        if ranker is not None:
            scored = [[(ranker.predict(f), right) for f, right in zip(item_features, item_labels)] for item_features, item_labels, _ in per_item]
            single = all(len(t) == 1 for t in tags)  # a single-tag history: one tag per item is what tagging returns
            ranker.threshold = best_threshold(scored, [n for _, _, n in per_item], 1 if single else None)
        held_out = n_held
    model = TagClassifier.train(vectors, tags, kb.config.encoder, n_threads=n_threads, texts=use_texts)
    model.ranker = ranker
    with kb.write_lock():
        model.save(kb.directory)
    report = {k: v for k, v in model.info.__dict__.items() if k not in ("labels", "hyper_parameters")}
    return report | choice | {"tags": len(model.info.labels), "ranker": ranker is not None, "held_out": held_out,
                     "ranker_pairs": ranker.pairs if ranker else 0, "cold_tags": ranker.cold_tags if ranker else 0,
                     "cold_items": ranker.cold_items if ranker else 0, "threshold": ranker.threshold if ranker else None,
                     "seconds": round(time.perf_counter() - started, 1)}


def _priors(tag_lists: list[list[str]]) -> dict[str, float]:
    counts = Counter(t for tags in tag_lists for t in tags)
    return {t: n / max(len(tag_lists), 1) for t, n in counts.items()}


def retrain_due(kb: KnowledgeBase, samples: int | None = None) -> bool:
    """Whether the knowledge base has a classifier and at least ``config.retrain_after`` samples
    arrived since it was trained (a knowledge base without one never trains on its own);
    ``samples`` is the current sample count when the caller has it."""
    after = kb.config.retrain_after
    classifier = kb.classifier() if after else None
    if classifier is None:
        return False
    return (kb.collection("samples").count() if samples is None else samples) - classifier.info.samples >= after
