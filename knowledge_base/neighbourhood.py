"""The graph around one node, its similarity edges asked of the vector index (paper §3.1).

The graph store (``knowledge_base.graph``) keeps the deterministic edges: annotations and
write-backs. A similarity edge is not stored: it is a query. A content–tag edge joins a content
to a tag whose description lies above δ_ct from it (at most ``max_c2t`` per content), a
content–content edge joins it to one of its ``similar_contents`` nearest contents above δ_cc —
the edges recall's C2T and C2C2T walk, computed the same way from the stored embeddings, so they
follow every write and a change of δ at once, and cost no disk (at a million contents they were
87% of a 3.6 GiB store).

``similarity_edges`` answers for one node; ``neighbourhood`` builds the small networkx graph the
page draws: the node, its strongest neighbours (annotations first) hop by hop, the deterministic
edges among them from the store and the similarity edges among them from their embeddings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from .graph import CONTENT, TAG

if TYPE_CHECKING:
    from .store import KnowledgeBase


def similarity_edges(kb: "KnowledgeBase", node: str, k: int | None = None) -> list[tuple[str, float]]:
    """A node's similarity edges, strongest first: (other node, cosine).

    A content's: its nearest tags above δ_ct (at most ``max_c2t``) and its nearest other contents
    above δ_cc (at most ``similar_contents``); a tag's: the ``k`` contents nearest it above δ_ct
    (``similar_contents`` when not given). A pair that is annotated keeps its deterministic edge
    and gets no similarity edge. An unknown node has none."""
    rc = kb.config.recall
    vector = embeddings(kb, [node]).get(node)
    if vector is None:
        return []
    if node.startswith(CONTENT):
        cid = node[len(CONTENT) :]
        annotated = set(kb.graph.tags_of(cid))
        edges = [
            (TAG + h.id, h.similarity)
            for h in kb.similar_tags(vector, rc.max_c2t, refresh=False, details=False)
            if h.similarity > rc.delta_ct and h.id not in annotated
        ]
        edges += [
            (CONTENT + h.id, h.similarity)
            for h in kb.similar_contents(vector, rc.similar_contents, exclude={cid}, refresh=False)
            if h.similarity > rc.delta_cc
        ]
    else:
        tag = node[len(TAG) :]
        hits = [h for h in kb.similar_contents(vector, k or rc.similar_contents, refresh=False) if h.similarity > rc.delta_ct]
        annotated = kb.graph.tags_of_many(h.id for h in hits)
        edges = [(CONTENT + h.id, h.similarity) for h in hits if tag not in annotated.get(h.id, ())]
    return sorted(((n, round(float(w), 4)) for n, w in edges), key=lambda e: -e[1])


def neighbourhood(kb: "KnowledgeBase", node: str, radius: int = 1, limit: int = 40) -> nx.Graph:
    """A small networkx graph around a node for pictures and explanations: at each hop, each
    node's strongest edges (annotations first, then similarity), ``limit`` nodes a hop at most;
    then every deterministic edge among the nodes kept, and their similarity edges among them
    (each content keeps at most ``max_c2t`` tags and ``similar_contents`` contents, as above).
    Empty when the node is not in the graph."""
    if not kb.graph.has_node(node):
        return nx.Graph()
    keep, frontier = {node}, [node]
    for _ in range(radius):
        share = max(1, limit // max(1, len(frontier)))
        reached = []
        for n in frontier:
            ranked = [m for m, kind, _ in kb.graph.neighbours(n) or [] if kind == "det"]
            if len(ranked) < share:  # room left after the annotations: the most similar nodes
                ranked += [m for m, _ in similarity_edges(kb, n, k=share)]
            for m in ranked[:share]:
                if m not in keep:
                    keep.add(m)
                    reached.append(m)
        frontier = reached
    g = kb.graph.subgraph(keep)
    _add_similarity_among(kb, g)
    return g


def embeddings(kb: "KnowledgeBase", nodes: list[str]) -> dict[str, np.ndarray]:
    """The stored, unit-length embeddings of tag and content nodes (those that have one)."""
    out: dict[str, np.ndarray] = {}
    for prefix, collection in ((TAG, "tags"), (CONTENT, "contents")):
        ids = [n[len(prefix) :] for n in nodes if n.startswith(prefix)]
        if not ids:
            continue
        got = kb.collection(collection).get(ids=ids, include=["embeddings"])
        for i, vector in zip(got["ids"], got["embeddings"]):
            v = np.asarray(vector, dtype=np.float32)
            out[prefix + i] = v / (np.linalg.norm(v) or 1.0)
    return out


def _add_similarity_among(kb: "KnowledgeBase", g: nx.Graph) -> None:
    """The similarity edges between the nodes of ``g``, from their embeddings; an edge already
    there (an annotation) stays as it is."""
    rc = kb.config.recall
    vectors = embeddings(kb, list(g.nodes))
    contents = [n for n in vectors if n.startswith(CONTENT)]
    if not contents:
        return
    others = list(vectors)
    cosine = np.stack([vectors[c] for c in contents]) @ np.stack([vectors[o] for o in others]).T
    for row, c in enumerate(contents):
        tags = [(cosine[row, j], o) for j, o in enumerate(others) if o.startswith(TAG) and cosine[row, j] > rc.delta_ct]
        peers = [(cosine[row, j], o) for j, o in enumerate(others) if o.startswith(CONTENT) and o != c and cosine[row, j] > rc.delta_cc]
        for found, most in ((tags, rc.max_c2t), (peers, rc.similar_contents)):
            for w, o in sorted(found, reverse=True)[:most]:
                if not g.has_edge(c, o):
                    g.add_edge(c, o, kind="sim", weight=round(float(w), 4))
