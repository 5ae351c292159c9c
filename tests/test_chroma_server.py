"""Several llm4tag servers, one Chroma server (issue 16, knowledge_base/shared_graph.py).

A real ``chroma run`` server on loopback and separate llm4tag processes, each with its own
knowledge-base folder pointed at it (``LLM4TAG_CHROMA_HOST``/``_PORT``): what one writes, the
others see without restarting, graph edges included (a correction reaches another process's
C2C2T recall), concurrent writers lose nothing, and every process's graph ends equal to the one a
fresh process builds from the store. Real MiniLM (PyTorch runtime, so no process exports the ONNX
copy), real Chroma, real networkx.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120

TAGS = [
    ("astronomy", "stars, planets, telescopes and the night sky"),
    ("music", "songs, instruments and audio production"),
    ("cooking", "recipes, kitchens and food"),
    ("vehicle", "cars, trucks and bicycles"),
    ("security", "encryption, passwords and cryptography"),
]
SKY = "A telescope app that maps the stars and planets of the night sky"
SAMPLES = [
    ("sky", SKY, ["music"]),  # tagged wrongly: corrected below
    ("recipes", "A recipe manager for home cooks with a shopping list", ["cooking"]),
    ("cars", "A fleet tracker for cars and delivery trucks", ["vehicle"]),
    ("vault", "A password vault that encrypts your secrets", ["security"]),
]

WORKER = r"""
import json, sys, time, traceback
from pathlib import Path
from knowledge_base import KnowledgeBase, Sample, Tag, recall_candidates

kb = None

def graph():
    kb.graph.refresh()
    with kb.graph.lock:
        g = kb.graph.to_networkx()
        return {"nodes": sorted([n, d.get("kind")] for n, d in g.nodes(data=True)),
                "edges": sorted([*sorted((u, v)), d.get("kind"), d.get("weight")] for u, v, d in g.edges(data=True))}

def recall(text):
    out = {}
    for c in recall_candidates(kb, text).candidates:
        ev = c.evidence_for("C2C2T")
        out[c.tag] = {"paths": c.paths, "via": [v["id"] for v in ev.via] if ev else []}
    return out

def handle(cmd, a):
    global kb
    if cmd == "open":
        kb = KnowledgeBase(a["kb"])
        kb.encoder.encode_one("warm up")
        return str(kb.directory)
    if cmd == "add_tags":
        return kb.add_tags([Tag(n, d) for n, d in a["tags"]]).added
    if cmd == "add_samples":
        return kb.add_samples([Sample(i, t, tuple(tags)) for i, t, tags in a["samples"]]).added
    if cmd == "feedback":
        return kb.record_feedback(a["text"], a["correct"], a.get("incorrect", ()), cid=a.get("cid"))
    if cmd == "insert":
        return kb.insert_content(a["text"], a["tags"], cid=a.get("cid"), replace=a.get("replace", False))
    if cmd == "remove":
        return kb.remove_sample(a["cid"])
    if cmd == "recall":
        return recall(a["text"])
    if cmd == "graph":
        return graph()
    if cmd == "tags_of":
        kb.graph.refresh()
        return sorted(kb.graph.tags_of(a["cid"]))
    if cmd == "tag_names":
        return sorted(kb.tag_names())
    if cmd == "revision":
        return kb.revision()
    if cmd == "stats":
        s = kb.stats()
        return {k: s.get(k) for k in ("store", "tags", "contents", "samples", "graph", "shared_graph", "problems")}
    if cmd == "write_many":  # one sample a write, from the moment the go file appears
        go, deadline = Path(a["go"]), time.time() + 60
        while not go.exists() and time.time() < deadline:
            time.sleep(0.005)
        for i, t, tags in a["samples"]:
            kb.add_samples([Sample(i, t, tuple(tags))])
        return len(a["samples"])
    raise ValueError(f"unknown command {cmd}")

print("@@" + json.dumps({"ok": "ready"}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    try:
        out = {"ok": handle(req["cmd"], req.get("args") or {})}
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print("@@" + json.dumps(out), flush=True)
"""


def chroma_binary() -> str | None:
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.exists() else shutil.which("chroma")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def heartbeat(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory):
    binary = chroma_binary()
    if binary is None:
        pytest.skip("the chroma command (shipped in the chromadb wheel) is not installed beside this Python")
    root = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = open(root / "server.log", "wb")
    server = subprocess.Popen(
        [binary, "run", "--path", str(root / "db"), "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.time() + 60
        while not heartbeat(port):
            assert server.poll() is None, (root / "server.log").read_text(errors="replace")[-3000:]
            assert time.time() < deadline, "the Chroma server did not answer its heartbeat within 60 s"
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


class Worker:
    """One llm4tag process with its own knowledge-base folder, driven over stdin/stdout."""

    def __init__(self, name: str, port: int, root: Path):
        self.name = name
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO_ROOT),
            HF_HUB_OFFLINE="1",
            ANONYMIZED_TELEMETRY="False",
            OMP_NUM_THREADS="1",
            LLM4TAG_CHROMA_HOST="127.0.0.1",
            LLM4TAG_CHROMA_PORT=str(port),
            LLM4TAG_ENCODER_RUNTIME="torch",
        )
        self.stderr = open(root / f"{name}.stderr", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("@@"):
                self.replies.put(json.loads(line[2:]))
        self.replies.put({"error": f"{self.name} ended"})

    def send(self, cmd: str, **args) -> None:
        self.proc.stdin.write(json.dumps({"cmd": cmd, "args": args}) + "\n")
        self.proc.stdin.flush()

    def receive(self):
        try:
            reply = self.replies.get(timeout=TIMEOUT_S)
        except queue.Empty:
            reply = {"error": f"{self.name} did not answer within {TIMEOUT_S} s"}
        if "error" in reply:
            self.stderr.seek(0)
            pytest.fail(f"{self.name}: {reply['error']}\n{reply.get('traceback', '')}\n{self.stderr.read()[-3000:]}")
        return reply["ok"]

    def __call__(self, cmd: str, **args):
        self.send(cmd, **args)
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.stderr.close()


@pytest.fixture(scope="module")
def servers(chroma_port, tmp_path_factory):
    """Three llm4tag processes on one Chroma server: A and B (two servers, two folders) and C,
    which opens a fresh folder whenever a test asks what a newcomer builds from the store."""
    root = tmp_path_factory.mktemp("llm4tag-servers")
    workers = [Worker(name, chroma_port, root) for name in ("A", "B", "C")]
    try:
        for w in workers:
            assert w.receive() == "ready"
        for w in workers[:2]:
            w.send("open", kb=str(root / w.name))
        for w in workers[:2]:
            w.receive()
        yield {"A": workers[0], "B": workers[1], "C": workers[2], "root": root}
    finally:
        for w in workers:
            w.close()


def fresh_graph(servers, name: str) -> dict:
    servers["C"]("open", kb=str(servers["root"] / name))
    return servers["C"]("graph")


def test_two_servers_see_each_others_tags_samples_and_corrections(servers):
    a, b = servers["A"], servers["B"]
    assert a("add_tags", tags=TAGS) == len(TAGS)
    assert a("add_samples", samples=SAMPLES) == len(SAMPLES)

    # B (its own folder, open all along) sees A's tags, samples and deterministic edges
    assert b("tag_names") == sorted(name for name, _ in TAGS)
    assert b("tags_of", cid="cars") == ["vehicle"]
    stats = b("stats")
    assert stats["store"].startswith("chroma server 127.0.0.1:")
    assert (stats["tags"], stats["samples"], stats["contents"]) == (len(TAGS), len(SAMPLES), len(SAMPLES))
    assert stats["graph"]["deterministic_edges"] == len(SAMPLES) and stats["shared_graph"]["records"] >= len(TAGS) + len(SAMPLES)
    assert not stats["problems"]

    query = "An app that maps the stars and planets in the night sky for amateur astronomers"
    before = b("recall", text=query)
    assert "sky" in before["music"]["via"]  # the wrong tag, through the similar history content
    revision = b("revision")

    # A corrects the sample; B's next recall walks the corrected edge, without a restart
    a("feedback", text=SKY, correct=["astronomy"], incorrect=["music"], cid="sky")
    after = b("recall", text=query)
    assert "C2C2T" in after["astronomy"]["paths"] and "sky" in after["astronomy"]["via"]
    assert "sky" not in after.get("music", {"via": []})["via"]
    assert b("tags_of", cid="sky") == ["astronomy"]
    assert b("revision") != revision  # caches keyed on it (the node cache) see the change

    # B's writes reach A: a write-back, then a removal (its tombstone)
    b("insert", text="A synthesizer and drum machine for electronic music production", tags=["music"], cid="synth")
    assert a("tags_of", cid="synth") == ["music"]
    assert "synth" in a("recall", text="A drum machine and synthesizer app for making electronic music")["music"]["via"]
    b("remove", cid="recipes")
    assert ["c:recipes", "content"] not in a("graph")["nodes"]

    # A replaces a content under its id: B drops the old text's edges with it
    a("insert", text="A guide to repairing bicycles and their gears", tags=["vehicle"], cid="cars", replace=True)
    graph_a, graph_b = a("graph"), b("graph")
    assert graph_b == graph_a
    assert fresh_graph(servers, "newcomer-1") == graph_a  # and a newcomer builds the same graph from the store


def test_two_servers_writing_at_once_lose_nothing(servers):
    a, b = servers["A"], servers["B"]
    if not a("tag_names"):
        a("add_tags", tags=TAGS)
    n = 6
    batches = {
        who: [
            (f"{who}-{i}", f"{who} writes note {i} about apples, trucks and songs", ["vehicle"] if i % 2 else ["music", "cooking"])
            for i in range(n)
        ]
        for who in ("A", "B")
    }
    go = servers["root"] / "go"
    a.send("write_many", samples=batches["A"], go=str(go))
    b.send("write_many", samples=batches["B"], go=str(go))
    go.touch()
    assert (a.receive(), b.receive()) == (n, n)

    graph_a, graph_b = a("graph"), b("graph")
    assert graph_a == graph_b
    assert fresh_graph(servers, "newcomer-2") == graph_a
    det = {(u, v) for u, v, kind, _ in graph_a["edges"] if kind == "det"}
    for who, samples in batches.items():
        for cid, _, tags in samples:
            assert all(tuple(sorted((f"c:{cid}", f"t:{t}"))) in det for t in tags), (who, cid)
            assert [f"c:{cid}", "content"] in graph_a["nodes"]
    stats = b("stats")
    assert stats["graph"]["content_nodes"] == stats["contents"]


def test_late_records_tombstones_and_a_restart_converge_to_a_fresh_build(chroma_port, tmp_path):
    """The catch-up itself, on records written straight into an edge store (no encoder): a record
    stamped before one already applied is re-applied in stamp order, a tombstone removes its node,
    and a graph re-opened from its snapshot resumes from ``synced_to`` instead of rebuilding."""
    import chromadb
    from chromadb.config import Settings

    from knowledge_base.graph import ContentTagGraph
    from knowledge_base.shared_graph import STAMP, SharedGraph

    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_port, settings=Settings(anonymized_telemetry=False))
    col = client.get_or_create_collection(f"late-{tmp_path.name}-graph", embedding_function=None)

    def cache(folder: str) -> tuple[ContentTagGraph, SharedGraph]:
        (tmp_path / folder).mkdir(exist_ok=True)
        graph = ContentTagGraph(tmp_path / folder)
        shared = SharedGraph(client, col, graph, threading.RLock(), stored=lambda: 0)
        graph.catch_up = shared.catch_up
        graph.refresh()
        return graph, shared

    def put(rid: str, doc: dict, stamp: int) -> None:
        col.upsert(ids=[rid], embeddings=[[1.0]], documents=[json.dumps(doc)], metadatas=[{STAMP: stamp, "kind": doc["kind"]}])

    def state(graph: ContentTagGraph):
        return (
            sorted((n, d.get("kind")) for n, d in graph.to_networkx().nodes(data=True)),
            sorted((tuple(sorted((u, v))), d["kind"], d["weight"]) for u, v, d in graph.to_networkx().edges(data=True)),
        )

    graph, shared = cache("one")
    assert graph.latest == 0 and graph.synced_to and graph.to_networkx().number_of_nodes() == 0  # an empty store: synced, with nothing
    now = int(client.heartbeat()) // 1000
    put("t:x", {"kind": "tag", "edges": []}, now - 3_000_000)
    put("c:1", {"kind": "content", "edges": [["t:x", "det", 1.0]]}, now - 2_000_000)
    assert graph.refresh() and graph.tags_of("1") == {"x": 1.0}
    assert not graph.refresh()  # nothing new: one small query, nothing applied
    # the next query starts from the time of this one, not from the latest record: an idle reader's
    # window empties once the margin has passed, whatever was written before
    assert graph.synced_to > graph.latest
    # an older llm4tag's record also lists similarity edges: queries now, so they are not stored
    put("c:2", {"kind": "content", "edges": [["c:1", "sim", 0.7], ["t:x", "det", 1.0]]}, now - 1_000_000)
    assert graph.refresh() and graph.tags_of("2") == {"x": 1.0} and not graph.subgraph(["c:1", "c:2"]).has_edge("c:1", "c:2")
    # c:1 re-written (a new verdict, no tags) by a writer whose record lands after c:2's, stamped before it:
    # the window is applied again in stamp order, and both contents end as their latest records say
    put("c:1", {"kind": "content", "edges": []}, now - 1_500_000)
    assert graph.refresh() and shared.late == 1
    assert graph.tags_of("1") == {} and graph.tags_of("2") == {"x": 1.0}
    fresh, fresh_shared = cache("two")
    assert fresh_shared.built and state(fresh) == state(graph)

    put("c:2", {"kind": "gone"}, now)  # a tombstone
    assert graph.refresh() and "c:2" not in graph.to_networkx()
    assert fresh.refresh() and state(fresh) == state(graph)

    graph.compact()  # the snapshot keeps synced_to: a restart resumes from it
    reopened, reopened_shared = cache("one")
    assert not reopened_shared.built and reopened.latest == graph.latest and state(reopened) == state(graph)
    assert reopened.synced_to >= graph.synced_to  # its first refresh caught up from the saved point
    put("c:3", {"kind": "content", "edges": [["t:x", "det", 1.0]]}, now + 1)
    assert reopened.refresh() and reopened.tags_of("3") == {"x": 1.0}
    assert state(cache("three")[0]) == state(reopened)
