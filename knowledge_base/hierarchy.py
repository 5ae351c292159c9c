"""The tag tree: a tag's parent (a vocabulary's ``parent`` column, SKOS ``broader``) used by recall's
ranker, by the shape of the answer and in what a result shows.

- ``family_features``: for each candidate, the strongest evidence of its siblings, of its
  children and of its parent among the candidates, on the classifier's and the similar items'
  paths, and whether it is the strongest of its siblings. Annif's MLLM backend turns
  broader/narrower/related into features the same way; the ranker learns their weights, one per
  direction (a parent's children speak for it in a topic tree and never in debtags, whose facets
  are not assigned). Features are 0 for a tag outside any tree, so a flat repository ranks as
  before.
- ``consistent``: an answer made to agree with the tree, a setting per knowledge base
  (``hierarchy_output``): ``as-is`` (default), ``add-ancestors`` (each kept tag brings its
  ancestors, at its own confidence), or ``drop-covered-parents`` (a parent goes when one of its
  children is kept: the most specific tags only).
- ``path``: a tag's place in the tree, root first, shown beside each tag in results.
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

HierarchyOutput = Literal["as-is", "add-ancestors", "drop-covered-parents"]
OUTPUTS = ("as-is", "add-ancestors", "drop-covered-parents")
FAMILY_FEATURES = ("sibling_evidence", "children_evidence", "parent_evidence", "family_best")


def path(tag: str, parents: dict[str, str]) -> list[str]:
    """``tag``'s ancestors and itself, root first (a loop, which the loaders refuse, ends the walk)."""
    out = [tag]
    while out[-1] in parents and parents[out[-1]] not in out:
        out.append(parents[out[-1]])
    return out[::-1]


def family_features(evidence: dict[str, dict[str, float]], parents: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each candidate → its ``FAMILY_FEATURES``, one per direction in the tree, so the ranker
    weighs each apart: its siblings' strongest evidence, its children's (for a parent: in
    debtags a facet is never assigned whatever its values' evidence, in a topic tree a parent
    often is), its parent's, and whether it is the strongest of its siblings. ``evidence``:
    candidate → {"learned": score, "C2C2T": vote share} (its best on each path, 0 when the path
    did not find it); a candidate's strength is the larger of the two."""
    children: dict[str, list[str]] = {}
    for tag in evidence:
        if tag in parents:
            children.setdefault(parents[tag], []).append(tag)
    strength = {t: max(e.get("learned", 0.0), e.get("C2C2T", 0.0)) for t, e in evidence.items()}
    out = {}
    for tag in evidence:
        parent = parents.get(tag)
        siblings = [s for s in children.get(parent, []) if s != tag] if parent is not None else []
        out[tag] = {
            "sibling_evidence": max((strength[s] for s in siblings), default=0.0),
            "children_evidence": max((strength[c] for c in children.get(tag, [])), default=0.0),
            "parent_evidence": strength.get(parent, 0.0) if parent is not None else 0.0,
            "family_best": 1.0 if parent is not None and strength[tag] > 0 and all(strength[tag] >= strength[s] for s in siblings) else 0.0,
        }
    return out


def consistent(tags: Sequence[dict], parents: dict[str, str], rule: str, known: Iterable[str] = ()) -> list[dict]:
    """The final tags (dicts with "tag" and "confidence", best first) made to agree with the tree.
    ``add-ancestors``: each tag's missing ancestors follow it (``origin`` "hierarchy", the
    child's confidence; only tags in ``known``, the repository, when given); ``drop-covered-parents``:
    a tag one of whose descendants is kept goes."""
    if rule == "as-is" or not parents:
        return list(tags)
    names = [t["tag"] for t in tags]
    if rule == "drop-covered-parents":
        covered = {a for n in names for a in path(n, parents)[:-1]}
        return [t for t in tags if t["tag"] not in covered]
    allowed = set(known)
    out, seen = [], set()
    for t in tags:
        if t["tag"] not in seen:
            out.append(t)
            seen.add(t["tag"])
        for ancestor in reversed(path(t["tag"], parents)[:-1]):
            if ancestor not in seen and (not allowed or ancestor in allowed):
                out.append({**t, "tag": ancestor, "origin": "hierarchy", "paths": [], "description": ""})
                seen.add(ancestor)
    return out
