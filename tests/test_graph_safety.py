"""Issue 15 item 5 (and 10's damaged snapshot): opening a knowledge base never runs code from it.

The graph is a SQLite store (older folders' plain-JSON snapshot is migrated into it); an old
``graph.pickle`` is never unpickled — the knowledge base is refused with the command that rebuilds
the graph from the Chroma stores, which reads neither it nor a damaged store.
"""

from __future__ import annotations

import gc
import pickle
import shutil

import pytest
from click.testing import CliRunner

from knowledge_base import KnowledgeBase, KnowledgeBaseError
from knowledge_base.graph import ContentTagGraph
from ui.cli import main


class _Exploit:
    """Unpickling this writes a marker file: proof that reading the snapshot ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _plant_pickle(directory, marker):
    for name in ("graph.json", "graph.journal", "graph.sqlite", "graph.sqlite-wal", "graph.sqlite-shm"):  # an old folder had none of these
        (directory / name).unlink(missing_ok=True)
    (directory / "graph.pickle").write_bytes(pickle.dumps(_Exploit(marker)))


def _graph_signature(kb: KnowledgeBase):
    g = kb.graph.to_networkx()
    return (
        sorted((n, d.get("kind")) for n, d in g.nodes(data=True)),
        sorted((tuple(sorted((u, v))), d["kind"]) for u, v, d in g.edges(data=True) if d["kind"] == "det"),
    )


def test_the_store_is_sqlite_and_round_trips(tmp_path):
    g = ContentTagGraph(tmp_path)
    g.write(
        [
            {"op": "node", "id": "t:a", "kind": "tag"},
            {"op": "node", "id": "c:1", "kind": "content"},
            {"op": "edge", "u": "c:1", "v": "t:a", "kind": "det", "w": 1.0},
            {"op": "edge", "u": "c:1", "v": "c:2", "kind": "sim", "w": 0.61},
        ]
    )
    g.compact()
    assert (tmp_path / "graph.sqlite").read_bytes().startswith(b"SQLite format 3") and not (tmp_path / "graph.pickle").exists()
    again = ContentTagGraph(tmp_path).to_networkx()
    assert dict(again.nodes(data=True)) == dict(g.to_networkx().nodes(data=True))
    assert again["c:1"]["c:2"] == {"kind": "sim", "weight": 0.61}


def test_a_planted_pickle_is_never_read_and_the_kb_is_refused_with_the_fix(writable_kb, tmp_path):
    directory = writable_kb.directory
    marker = tmp_path / "pwned"
    _plant_pickle(directory, marker)
    with pytest.raises(KnowledgeBaseError, match="kb rebuild-graph") as err:
        KnowledgeBase(directory)
    assert type(err.value).__name__ == "GraphSnapshotError"
    result = CliRunner().invoke(main, ["--kb", str(directory), "kb", "stats"])
    assert result.exit_code == 1 and "rebuild-graph" in result.output and "Traceback" not in result.output
    assert not marker.exists(), "opening the knowledge base unpickled graph.pickle"


def test_rebuild_graph_from_the_stores_migrates_without_unpickling(writable_kb, tmp_path):
    directory = writable_kb.directory
    expected = _graph_signature(writable_kb)
    marker = tmp_path / "pwned"
    _plant_pickle(directory, marker)
    result = CliRunner().invoke(main, ["--kb", str(directory), "kb", "rebuild-graph"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the graph" in result.output
    assert not marker.exists()
    assert not (directory / "graph.pickle").exists() and (directory / "graph.pickle.unread").exists()
    rebuilt = KnowledgeBase(directory)
    assert _graph_signature(rebuilt) == expected  # every tag, content and annotation is back
    assert rebuilt.graph.counts()["similarity_edges"] == 0  # queries, not stored
    assert (directory / "graph.sqlite").is_file() and not rebuilt.graph.journal_path.exists()


def test_a_damaged_store_names_the_rebuild_command_which_repairs_it(writable_kb):
    directory = writable_kb.directory
    expected = _graph_signature(writable_kb)
    writable_kb.graph.compact()
    del writable_kb
    gc.collect()
    store = directory / "graph.sqlite"
    for sidecar in ("graph.sqlite-wal", "graph.sqlite-shm"):
        (directory / sidecar).unlink(missing_ok=True)
    store.write_bytes(b"not a database at all, but a file that was overwritten" * 100)
    with pytest.raises(KnowledgeBaseError, match="damaged.*rebuild-graph"):
        KnowledgeBase(directory)
    result = CliRunner().invoke(main, ["--kb", str(directory), "kb", "stats"])
    assert result.exit_code == 1 and "rebuild-graph" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["--kb", str(directory), "kb", "rebuild-graph"])
    assert result.exit_code == 0, result.output
    assert _graph_signature(KnowledgeBase(directory)) == expected


def test_a_damaged_older_snapshot_names_the_rebuild_command(tmp_path):
    directory = tmp_path
    (directory / "graph.json").write_bytes(b'{"format": "llm4tag-graph", "version": 1, "nodes": [["t:a", "tag"]')  # truncated
    with pytest.raises(KnowledgeBaseError, match="damaged.*rebuild-graph"):
        ContentTagGraph(directory)
    (directory / "graph.json").write_text('{"format": "llm4tag-graph", "version": 1, "nodes": [["t:a", 3]], "edges": []}')
    with pytest.raises(KnowledgeBaseError, match="bad node entry"):
        ContentTagGraph(directory)
    (directory / "graph.json").write_text(
        '{"format": "llm4tag-graph", "version": 1, "nodes": [["t:a", "tag"], ["c:1", "content"]], '
        '"edges": [["c:1", "t:a", "det", 1.0], ["c:1", "t:a", "det", true]]}'
    )
    with pytest.raises(KnowledgeBaseError, match=r"bad edge entry \['c:1', 't:a', 'det', True\]"):
        ContentTagGraph(directory)
    assert gc.isenabled()  # the loader pauses the garbage collector while it builds, and resumes it after a failure too
    assert (directory / "graph.json").exists() and not (directory / "graph.sqlite").exists()  # nothing migrated, nothing lost


def test_rebuild_refuses_a_folder_that_is_not_a_knowledge_base(tmp_path):
    result = CliRunner().invoke(main, ["--kb", str(tmp_path / "typo"), "kb", "rebuild-graph"])
    assert result.exit_code == 1 and "not a knowledge base" in result.output
    assert not (tmp_path / "typo").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_malformed_line_of_an_older_journal_is_skipped_and_reported(tmp_path):
    (tmp_path / "graph.journal").write_bytes(
        b'{"op": "node", "id": "t:a", "kind": "tag"}\n{"op": "edge"}\n[1, 2]\n{"op": "node", "id": "c:1", "kind": "content"}\n'
    )
    again = ContentTagGraph(tmp_path)
    assert set(again.to_networkx()) == {"t:a", "c:1"}
    assert len(again.problems) == 2 and "rebuild-graph" in again.problems[0]
