"""The journaled networkx content–tag graph (knowledge_base/graph.py)."""

from __future__ import annotations

import json

from knowledge_base.graph import ContentTagGraph, content_node, tag_node


def node(n: str, kind: str) -> dict:
    return {"op": "node", "id": n, "kind": kind}


def det(cid: str, tag: str) -> dict:
    return {"op": "edge", "u": content_node(cid), "v": tag_node(tag), "kind": "det", "w": 1.0}


def sim(u: str, v: str, w: float) -> dict:
    return {"op": "edge", "u": u, "v": v, "kind": "sim", "w": w}


BASE_OPS = [
    node("t:fruit", "tag"),
    node("t:vehicle", "tag"),
    node("t:music", "tag"),
    node("c:1", "content"),
    det("1", "fruit"),
    sim("c:1", "t:music", 0.31),
    node("c:2", "content"),
    det("2", "vehicle"),
    det("2", "fruit"),
    sim("c:2", "c:1", 0.72),
]


def snapshot(graph: ContentTagGraph) -> tuple:
    """Everything that matters about a graph, comparable with ==."""
    nodes = sorted((n, d.get("kind")) for n, d in graph.g.nodes(data=True))
    edges = sorted((tuple(sorted((u, v))), d["kind"], d["weight"]) for u, v, d in graph.g.edges(data=True))
    return nodes, edges


def test_write_then_reload_sees_the_same_graph(tmp_path):
    g = ContentTagGraph(tmp_path)
    assert g.write(BASE_OPS) == len(BASE_OPS)
    assert g.write([]) == 0
    assert g.journal_path.exists() and not g.snapshot_path.exists()
    assert len(g.journal_path.read_bytes().splitlines()) == len(BASE_OPS)
    again = ContentTagGraph(tmp_path)
    assert snapshot(again) == snapshot(g)
    assert again.counts() == {"tag_nodes": 3, "content_nodes": 2, "deterministic_edges": 3, "similarity_edges": 2}
    assert again.tags_of("2") == {"vehicle": 1.0, "fruit": 1.0}
    assert again.tags_of("1") == {"fruit": 1.0}  # the sim edge to music is not a deterministic tag
    assert again.tags_of("missing") == {}
    assert again.g["c:1"]["t:music"] == {"kind": "sim", "weight": 0.31}


def test_compact_writes_snapshot_and_empties_journal(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    g.compact()
    assert g.snapshot_path.exists()
    assert g.journal_path.read_bytes() == b""
    assert not g.snapshot_path.with_suffix(".json.tmp").exists()
    assert g.snapshot_path.name == "graph.json"
    g.write([det("1", "vehicle")])
    reloaded = ContentTagGraph(tmp_path)
    assert snapshot(reloaded) == snapshot(g)
    assert reloaded.tags_of("1") == {"fruit": 1.0, "vehicle": 1.0}


def test_torn_last_journal_line_is_skipped(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    expected = snapshot(g)
    with open(g.journal_path, "ab") as fh:  # a crash in the middle of an append
        fh.write(json.dumps(det("3", "music")).encode()[:25])
    survivor = ContentTagGraph(tmp_path)
    assert snapshot(survivor) == expected
    assert "c:3" not in survivor.g


def test_write_after_a_torn_line_is_not_lost(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    with open(g.journal_path, "ab") as fh:
        fh.write(json.dumps(det("3", "music")).encode()[:25])
    writer = ContentTagGraph(tmp_path)
    writer.write([node("c:4", "content"), det("4", "music"), det("4", "fruit")])
    writer.write([det("5", "vehicle")])
    reader = ContentTagGraph(tmp_path)
    assert snapshot(reader) == snapshot(writer)
    assert reader.tags_of("4") == {"music": 1.0, "fruit": 1.0}
    assert reader.tags_of("5") == {"vehicle": 1.0}
    assert "c:3" not in reader.g
    writer.refresh()  # its own writes are not applied twice or misread
    assert snapshot(writer) == snapshot(reader)


def test_crash_between_snapshot_and_journal_truncation(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    g.compact()
    later = [
        {"op": "drop_det", "id": "c:2"},
        det("2", "music"),
        sim("c:2", "t:fruit", 0.4),
        {"op": "remove_node", "id": "c:1"},
        node("c:1", "content"),
        det("1", "vehicle"),
        sim("c:1", "c:2", 0.65),
    ]
    g.write(later)
    journal = g.journal_path.read_bytes()
    expected = snapshot(g)
    g.compact()  # the snapshot now holds every op ...
    g.journal_path.write_bytes(journal)  # ... but the crash left the journal untruncated
    replayed = ContentTagGraph(tmp_path)
    assert snapshot(replayed) == expected
    assert replayed.tags_of("2") == {"music": 1.0}
    assert replayed.tags_of("1") == {"vehicle": 1.0}
    assert replayed.g["c:2"]["t:fruit"]["kind"] == "sim"


def test_drop_det_keeps_similarity_edges(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    g.write([{"op": "drop_det", "id": "c:2"}, {"op": "drop_det", "id": "c:unknown"}])
    assert g.tags_of("2") == {}
    assert g.g["c:2"]["c:1"]["kind"] == "sim"
    assert g.tags_of("1") == {"fruit": 1.0}
    assert g.counts() == {"tag_nodes": 3, "content_nodes": 2, "deterministic_edges": 1, "similarity_edges": 2}
    assert snapshot(ContentTagGraph(tmp_path)) == snapshot(g)


def test_remove_node_removes_its_edges(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    g.write([{"op": "remove_node", "id": "c:1"}, {"op": "remove_node", "id": "c:never"}])
    assert "c:1" not in g.g
    assert g.counts() == {"tag_nodes": 3, "content_nodes": 1, "deterministic_edges": 2, "similarity_edges": 0}
    assert snapshot(ContentTagGraph(tmp_path)) == snapshot(g)


def test_det_then_sim_on_the_same_pair_keeps_the_last_op(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write([det("1", "fruit"), sim("c:1", "t:fruit", 0.5)])
    assert g.g["c:1"]["t:fruit"] == {"kind": "sim", "weight": 0.5}


def test_refresh_picks_up_another_instances_writes(tmp_path):
    a = ContentTagGraph(tmp_path)
    b = ContentTagGraph(tmp_path)
    a.write(BASE_OPS)
    assert b.g.number_of_nodes() == 0
    b.refresh()
    assert snapshot(b) == snapshot(a)
    a.write([det("1", "music")])
    b.refresh()
    assert b.tags_of("1") == {"fruit": 1.0, "music": 1.0}
    a.compact()  # another instance compacts: b must reload the snapshot, not lose or repeat anything
    a.write([det("2", "music")])
    b.refresh()
    assert snapshot(b) == snapshot(a)
    b.write([{"op": "remove_node", "id": "c:2"}])
    a.refresh()
    assert "c:2" not in a.g
    assert snapshot(a) == snapshot(b) == snapshot(ContentTagGraph(tmp_path))


def test_automatic_compaction(tmp_path, monkeypatch):
    import knowledge_base.graph as graph_module

    monkeypatch.setattr(graph_module, "COMPACT_AFTER_OPS", 5)
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS[:4])
    assert not g.snapshot_path.exists()
    g.write(BASE_OPS[4:])
    assert g.snapshot_path.exists() and g.journal_path.read_bytes() == b""
    assert snapshot(ContentTagGraph(tmp_path)) == snapshot(g)


def test_neighbourhood(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    assert g.neighbourhood("c:absent").number_of_nodes() == 0
    hood = g.neighbourhood("c:2", radius=1)
    assert set(hood.nodes) == {"c:2", "t:vehicle", "t:fruit", "c:1"}
    small = g.neighbourhood("c:2", radius=1, limit=2)
    assert set(small.nodes) == {"c:2", "t:vehicle", "t:fruit"}  # deterministic edges come first


def test_readers_and_a_writer_thread_share_one_graph(tmp_path):
    import threading

    from knowledge_base.graph import ContentTagGraph

    graph = ContentTagGraph(tmp_path)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            for i in range(300):
                graph.write([
                    {"op": "node", "id": f"c:{i}", "kind": "content"},
                    {"op": "edge", "u": f"c:{i}", "v": f"t:tag{i % 7}", "kind": "det", "w": 1.0},
                    {"op": "edge", "u": f"c:{i}", "v": f"c:{max(0, i - 1)}", "kind": "sim", "w": 0.7},
                ])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                graph.counts()
                graph.tags_of("0")
                graph.neighbourhood("c:0", radius=2)
                graph.refresh()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    counts = graph.counts()
    assert counts["content_nodes"] == 300 and counts["deterministic_edges"] == 300
    assert counts["similarity_edges"] == 300  # c:i–c:(i-1) for i ≥ 1, plus the self-loop c:0–c:0
