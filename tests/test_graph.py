"""The content–tag graph kept in SQLite (knowledge_base/graph.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knowledge_base.graph import ContentTagGraph, content_node, tag_node

ROOT = Path(__file__).resolve().parents[1]


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


def edge_kind(graph: ContentTagGraph, u: str, v: str) -> str | None:
    """The kind of the stored edge between two nodes, None when there is none."""
    return (graph.subgraph([u, v]).get_edge_data(u, v) or {}).get("kind")


def snapshot(graph: ContentTagGraph) -> tuple:
    """Everything that matters about a graph, comparable with ==."""
    g = graph.to_networkx()
    nodes = sorted((n, d.get("kind")) for n, d in g.nodes(data=True))
    edges = sorted((tuple(sorted((u, v))), d["kind"], d["weight"]) for u, v, d in g.edges(data=True))
    return nodes, edges


def test_write_then_reload_sees_the_same_graph(tmp_path):
    g = ContentTagGraph(tmp_path)
    assert g.write(BASE_OPS) == len(BASE_OPS)
    assert g.write([]) == 0
    assert (tmp_path / "graph.sqlite").is_file() and not (tmp_path / "graph.json").exists()
    again = ContentTagGraph(tmp_path)
    assert snapshot(again) == snapshot(g)
    assert again.counts() == {"tag_nodes": 3, "content_nodes": 2, "deterministic_edges": 3, "similarity_edges": 2}
    assert again.tags_of("2") == {"vehicle": 1.0, "fruit": 1.0}
    assert again.tags_of("1") == {"fruit": 1.0}  # the sim edge to music is not a deterministic tag
    assert again.tags_of("missing") == {}
    assert again.tags_of_many(["1", "2", "missing"]) == {"1": ["fruit"], "2": ["fruit", "vehicle"]}
    assert again.to_networkx()["c:1"]["t:music"] == {"kind": "sim", "weight": 0.31}
    assert edge_kind(again, "t:fruit", "c:2") == "det" and edge_kind(again, "c:1", "t:vehicle") is None
    assert again.has_node("c:2") and not again.has_node("c:3") and again.present(["c:1", "c:3", "t:music"]) == {"c:1", "t:music"}
    assert again.tag_names() == {"fruit", "vehicle", "music"}
    assert sorted(again.neighbours("c:1")) == [("c:2", "sim", 0.72), ("t:fruit", "det", 1.0), ("t:music", "sim", 0.31)]
    assert again.neighbours("c:3") is None


def test_a_batch_that_fails_halfway_leaves_nothing(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    before = snapshot(g)
    with pytest.raises(KeyError):
        g.write([node("c:3", "content"), det("3", "music"), {"op": "edge", "u": "c:3"}])  # the third is malformed
    assert snapshot(g) == before == snapshot(ContentTagGraph(tmp_path))
    assert g.counts()["content_nodes"] == 2


def test_a_writer_killed_mid_batch_leaves_each_batch_whole_or_absent(tmp_path):
    """SIGKILL while a process writes batches of 50 edges: every batch that is there is whole."""
    script = (
        "import sys\n"
        "from knowledge_base.graph import ContentTagGraph\n"
        "g = ContentTagGraph(sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "for b in range(100000):\n"
        "    g.write([{'op': 'node', 'id': f'c:{b}', 'kind': 'content'}]\n"
        "            + [{'op': 'edge', 'u': f'c:{b}', 'v': f't:{k}', 'kind': 'det', 'w': 1.0} for k in range(50)])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and ContentTagGraph(tmp_path).counts()["content_nodes"] < 20:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    survivor = ContentTagGraph(tmp_path)
    contents = survivor.node_ids("content")
    assert len(contents) >= 20
    assert all(len(survivor.tags_of(c[2:])) == 50 for c in contents)
    assert survivor.counts() == {
        "tag_nodes": 50,
        "content_nodes": len(contents),
        "deterministic_edges": 50 * len(contents),
        "similarity_edges": 0,
    }


def test_drop_det_keeps_similarity_edges(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    g.write([{"op": "drop_det", "id": "c:2"}, {"op": "drop_det", "id": "c:unknown"}])
    assert g.tags_of("2") == {}
    assert edge_kind(g, "c:2", "c:1") == "sim"
    assert g.tags_of("1") == {"fruit": 1.0}
    assert g.counts() == {"tag_nodes": 3, "content_nodes": 2, "deterministic_edges": 1, "similarity_edges": 2}
    assert snapshot(ContentTagGraph(tmp_path)) == snapshot(g)


def test_remove_node_removes_its_edges(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    g.write([{"op": "remove_node", "id": "c:1"}, {"op": "remove_node", "id": "c:never"}])
    assert not g.has_node("c:1")
    assert g.counts() == {"tag_nodes": 3, "content_nodes": 1, "deterministic_edges": 2, "similarity_edges": 0}
    assert snapshot(ContentTagGraph(tmp_path)) == snapshot(g)


def test_det_then_sim_on_the_same_pair_keeps_the_last_op(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write([det("1", "fruit"), sim("c:1", "t:fruit", 0.5)])
    assert g.to_networkx()["c:1"]["t:fruit"] == {"kind": "sim", "weight": 0.5}
    g.write([det("1", "fruit")])
    assert edge_kind(g, "c:1", "t:fruit") == "det"
    assert g.counts()["deterministic_edges"] == 1 and g.counts()["similarity_edges"] == 0


def test_drop_similarity_keeps_every_annotation(tmp_path):
    """Similarity edges an older llm4tag stored go in one transaction; nodes and annotations stay."""
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    assert g.drop_similarity() == 2 and g.drop_similarity() == 0
    assert g.counts() == {"tag_nodes": 3, "content_nodes": 2, "deterministic_edges": 3, "similarity_edges": 0}
    assert g.tags_of("2") == {"vehicle": 1.0, "fruit": 1.0} and g.has_node("t:music")
    assert snapshot(ContentTagGraph(tmp_path)) == snapshot(g)


def test_counts_kept_by_the_store_agree_with_the_graph_after_many_random_operations(tmp_path):
    import random

    rng = random.Random(5)
    g = ContentTagGraph(tmp_path)
    for _ in range(40):
        ops = []
        for _ in range(25):
            c, t, c2 = f"c:{rng.randrange(30)}", f"t:{rng.randrange(8)}", f"c:{rng.randrange(30)}"
            ops.append(
                rng.choice(
                    [
                        node(c, "content"),
                        node(t, "tag"),
                        det(c[2:], t[2:]),
                        sim(c, t, 0.3),
                        sim(c, c2, 0.8),
                        {"op": "drop_det", "id": c},
                        {"op": "remove_node", "id": c},
                    ]
                )
            )
        g.write(ops)
    nxg = g.to_networkx()
    tags = sum(1 for n in nxg if n.startswith("t:"))
    det_edges = sum(1 for _, _, d in nxg.edges(data=True) if d["kind"] == "det")
    assert g.counts() == {
        "tag_nodes": tags,
        "content_nodes": nxg.number_of_nodes() - tags,
        "deterministic_edges": det_edges,
        "similarity_edges": nxg.number_of_edges() - det_edges,
    }


def test_refresh_says_when_another_instance_wrote(tmp_path):
    a = ContentTagGraph(tmp_path)
    b = ContentTagGraph(tmp_path)
    assert not b.refresh()
    a.write(BASE_OPS)
    assert snapshot(b) == snapshot(a)  # every read sees what is committed
    assert b.refresh() and not b.refresh()
    b.write([{"op": "remove_node", "id": "c:2"}])
    assert not b.refresh()  # its own write
    assert a.refresh() and not a.has_node("c:2")
    a.write([{"op": "touch", "what": "documents"}])  # no edge moves, but the others are told
    assert b.refresh()
    assert snapshot(a) == snapshot(b) == snapshot(ContentTagGraph(tmp_path))


def test_opening_writes_nothing_so_a_reader_never_waits_for_a_writer(tmp_path):
    import sqlite3

    ContentTagGraph(tmp_path).write(BASE_OPS)
    holder = sqlite3.connect(str(tmp_path / "graph.sqlite"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    holder.execute("INSERT INTO nodes(id, kind) VALUES ('c:9', 'content')")
    started = time.monotonic()
    reader = ContentTagGraph(tmp_path)
    assert reader.tags_of("2") == {"vehicle": 1.0, "fruit": 1.0} and not reader.has_node("c:9")
    assert time.monotonic() - started < 60  # a reader that waited would wait out SQLite's 120 s busy timeout
    holder.execute("COMMIT")
    assert reader.refresh() and reader.has_node("c:9")


def test_the_shared_store_marks_are_saved_by_compact(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    g.synced_to, g.latest = 1_700_000_000_000_000, 1_699_999_999_000_000
    g.compact()
    again = ContentTagGraph(tmp_path)
    assert (again.synced_to, again.latest) == (1_700_000_000_000_000, 1_699_999_999_000_000)
    assert snapshot(again) == snapshot(g)


def _write_legacy(directory, ops, journal_lines=b""):
    """An older knowledge base's graph: the JSON snapshot of ``ops`` and a journal."""
    snapshot = {
        "format": "llm4tag-graph",
        "version": 1,
        "synced_to": 123,
        "latest": 100,
        "nodes": [[op["id"], op["kind"]] for op in ops if op["op"] == "node"],
        "edges": [[op["u"], op["v"], op["kind"], op["w"]] for op in ops if op["op"] == "edge"],
    }
    (directory / "graph.json").write_text(json.dumps(snapshot))
    (directory / "graph.journal").write_bytes(journal_lines)


def test_an_older_snapshot_and_journal_are_migrated_on_open_without_loss(tmp_path):
    journal = (
        json.dumps(det("1", "vehicle")).encode()
        + b"\n"
        + b'{"op": "edge"}\n'  # a line no llm4tag wrote
        + json.dumps({"op": "remove_node", "id": "c:2"}).encode()
        + b"\n"
        + json.dumps(det("3", "music")).encode()[:25]
    )  # torn
    _write_legacy(tmp_path, BASE_OPS, journal)
    (tmp_path / "unused").mkdir()
    expected = ContentTagGraph(tmp_path / "unused")
    annotations = [op for op in BASE_OPS if op["op"] == "node" or op["kind"] == "det"]  # similarity edges are queries now
    expected.write(annotations + [det("1", "vehicle"), {"op": "remove_node", "id": "c:2"}])
    g = ContentTagGraph(tmp_path)
    assert snapshot(g) == snapshot(expected)
    assert (g.synced_to, g.latest) == (123, 100)
    assert not (tmp_path / "graph.json").exists() and not (tmp_path / "graph.journal").exists()
    assert len(g.problems) == 1 and "rebuild-graph" in g.problems[0]
    assert snapshot(ContentTagGraph(tmp_path)) == snapshot(expected)  # the next open reads the store


def test_a_rebuilt_store_is_swapped_in_and_another_instance_follows(tmp_path):
    a = ContentTagGraph(tmp_path)
    b = ContentTagGraph(tmp_path)
    a.write(BASE_OPS)
    scratch = ContentTagGraph.scratch(tmp_path)
    scratch.write([node("t:fruit", "tag"), node("c:7", "content"), det("7", "fruit")])
    a.adopt(scratch)
    assert a.tags_of("7") == {"fruit": 1.0} and not a.has_node("c:1")
    assert b.refresh() and snapshot(b) == snapshot(a)
    assert sorted(p.name for p in tmp_path.iterdir() if "rebuild" in p.name) == []


def test_subgraph(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(BASE_OPS)
    sub = g.subgraph(["c:2", "t:fruit", "c:1", "c:absent"])
    assert set(sub.nodes) == {"c:2", "t:fruit", "c:1"} and sub.nodes["t:fruit"] == {"kind": "tag"}
    assert sorted(tuple(sorted(e)) for e in sub.edges) == [("c:1", "c:2"), ("c:1", "t:fruit"), ("c:2", "t:fruit")]
    assert g.subgraph([]).number_of_nodes() == 0


def test_readers_and_a_writer_thread_share_one_graph(tmp_path):
    import threading

    from knowledge_base.graph import ContentTagGraph

    graph = ContentTagGraph(tmp_path)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            for i in range(300):
                graph.write(
                    [
                        {"op": "node", "id": f"c:{i}", "kind": "content"},
                        {"op": "edge", "u": f"c:{i}", "v": f"t:tag{i % 7}", "kind": "det", "w": 1.0},
                        {"op": "edge", "u": f"c:{i}", "v": f"c:{max(0, i - 1)}", "kind": "sim", "w": 0.7},
                    ]
                )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                graph.counts()
                graph.tags_of("0")
                graph.subgraph(["c:0", "c:1", "t:tag0"])
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


def test_a_contents_annotations_keep_their_order_also_through_a_migration(tmp_path):
    """Recall's ties among tags follow the order a content's tags were given, as they did when the
    graph was a networkx graph in memory (whose adjacency kept insertion order)."""
    given = ["vehicle", "music", "fruit"]
    (tmp_path / "store").mkdir()
    g = ContentTagGraph(tmp_path / "store")
    g.write([node("c:1", "content")] + [{**det("1", t), "n": i} for i, t in enumerate(given)])
    assert list(g.tags_of("1")) == given and g.tags_of_many(["1"]) == {"1": given}
    _write_legacy(tmp_path, [node("c:1", "content")] + [det("1", t) for t in given])
    assert list(ContentTagGraph(tmp_path).tags_of("1")) == given


def test_a_store_made_before_annotations_kept_their_order_gains_the_column_on_open(tmp_path):
    import sqlite3

    ContentTagGraph(tmp_path).write(BASE_OPS)
    conn = sqlite3.connect(str(tmp_path / "graph.sqlite"))
    conn.execute("ALTER TABLE edges DROP COLUMN pos")
    conn.commit()
    conn.close()
    again = ContentTagGraph(tmp_path)
    assert again.tags_of("2") == {"vehicle": 1.0, "fruit": 1.0} and again.counts()["deterministic_edges"] == 3
