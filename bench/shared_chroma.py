"""Several llm4tag servers, one Chroma server: what a catch-up costs (knowledge_base/shared_graph.py).

Starts ``chroma run`` on a free loopback port (a temporary folder), opens a reader knowledge base
in this process (its own folder, that server), and drives a writer process (its own folder, the
same server) that loads a small tag vocabulary and then, ``--rounds`` times, writes ``--records``
new samples (default 100: one ``add_samples`` call, one edge record each). Measured in the reader,
``kb.graph.refresh()`` — the catch-up every recall, write and health check makes:

* idle: nothing written for longer than the margin (10 s): the query returns nothing (median of ``--repeat``);
* in the margin: nothing new, but the writer's last ``--records`` records are younger than the margin,
  so their metadata comes back and nothing is applied (median of ``--repeat``);
* after N new records: the first refresh after the writer acknowledged N records (their metadata,
  their documents, applied to the graph), once per round;
* a newcomer's first open: ``KnowledgeBase(new folder)`` builds its graph from the whole edge store.

Prints the figures and writes ``bench/out/shared_chroma.json``::

    .venv/bin/python bench/shared_chroma.py                  # 100 records, 3 rounds
    .venv/bin/python bench/shared_chroma.py --records 1000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "apple pear truck bicycle guitar violin recipe oven planet telescope password cipher "
    "network server editor compiler library game puzzle camera photo map route song drum"
).split()
TAGS = [(f"topic::{w}", f"things about {w}s") for w in WORDS]

WRITER = r"""
import json, random, sys
from knowledge_base import KnowledgeBase, Sample, Tag
kb = KnowledgeBase(sys.argv[1])
words = sys.argv[2].split()
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["do"] == "tags":
        kb.add_tags([Tag(n, d) for n, d in cmd["tags"]])
    else:
        rng = random.Random(cmd["round"])
        samples = [Sample(f"r{cmd['round']}-{i}", " ".join(rng.choice(words) for _ in range(12)),
                          tuple(sorted({f"topic::{rng.choice(words)}" for _ in range(2)}))) for i in range(cmd["n"])]
        kb.add_samples(samples)
    print("@@done", flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_heartbeat(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert server.poll() is None, "the Chroma server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the Chroma server did not answer its heartbeat")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100, help="new records the writer writes each round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=50, help="refreshes timed for each idle figure")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "shared_chroma.json")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llm4tag-shared-"))
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    log = open(work / "chroma.log", "wb")
    server = subprocess.Popen(
        [
            str(chroma if chroma.exists() else shutil.which("chroma")),
            "run",
            "--path",
            str(work / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        LLM4TAG_CHROMA_HOST="127.0.0.1",
        LLM4TAG_CHROMA_PORT=str(port),
    )
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "ANONYMIZED_TELEMETRY", "LLM4TAG_CHROMA_HOST", "LLM4TAG_CHROMA_PORT")})
    writer = None
    try:
        wait_for_heartbeat(port, server)
        from knowledge_base import KnowledgeBase
        from knowledge_base.shared_graph import MARGIN_US

        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(work / "writer"), " ".join(WORDS)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

        def ask(**cmd) -> None:
            writer.stdin.write(json.dumps(cmd) + "\n")
            writer.stdin.flush()
            for line in writer.stdout:
                if line.startswith("@@done"):
                    return
            raise SystemExit("the writer process ended")

        ask(do="tags", tags=TAGS)
        reader = KnowledgeBase(work / "reader")
        reader.graph.refresh()
        margin_s = MARGIN_US / 1e6
        rounds = []
        for r in range(args.rounds):
            time.sleep(margin_s + 0.5)  # the last write is older than the margin
            idle = [timed(reader.graph.refresh) for _ in range(args.repeat)]
            ask(do="write", round=r, n=args.records)
            nodes_before = reader.graph.to_networkx().number_of_nodes()
            after = timed(reader.graph.refresh)
            applied = reader.graph.to_networkx().number_of_nodes() - nodes_before
            in_margin = [timed(reader.graph.refresh) for _ in range(args.repeat)]
            rounds.append(
                {
                    "idle_ms": ms(statistics.median(idle)),
                    "in_margin_ms": ms(statistics.median(in_margin)),
                    "after_new_ms": ms(after),
                    "new_content_nodes": applied,
                }
            )
            print(
                f"round {r + 1}: idle {rounds[-1]['idle_ms']} ms, after {args.records} new records {rounds[-1]['after_new_ms']} ms "
                f"({applied} content nodes applied), in the margin {rounds[-1]['in_margin_ms']} ms",
                flush=True,
            )
        records = reader._shared.collection.count()
        docs = reader._shared.collection.get(include=["documents"], limit=200)["documents"]
        started = time.perf_counter()
        newcomer = KnowledgeBase(work / "newcomer")
        cold = time.perf_counter() - started
        same = {(n, d.get("kind")) for n, d in newcomer.graph.to_networkx().nodes(data=True)} == {
            (n, d.get("kind")) for n, d in reader.graph.to_networkx().nodes(data=True)
        }
        result = {
            "records_per_round": args.records,
            "rounds": rounds,
            "idle_ms_median": statistics.median(x["idle_ms"] for x in rounds),
            "in_margin_ms_median": statistics.median(x["in_margin_ms"] for x in rounds),
            "after_new_ms_median": statistics.median(x["after_new_ms"] for x in rounds),
            "store_records": records,
            "mean_record_bytes": round(statistics.mean(len(d) for d in docs)) if docs else 0,
            "newcomer_first_open_s": round(cold, 3),
            "newcomer_graph_equal": same,
            "graph": reader.graph.counts(),
        }
        print(f"catch-up, nothing changed (idle): {result['idle_ms_median']} ms (median of {args.repeat} × {args.rounds})")
        print(f"catch-up, nothing new but {args.records} records inside the margin: {result['in_margin_ms_median']} ms")
        print(
            f"catch-up after {args.records} new records from another process: {result['after_new_ms_median']} ms (median of {args.rounds})"
        )
        print(
            f"newcomer's first open, graph built from {records} records (mean {result['mean_record_bytes']} bytes): "
            f"{result['newcomer_first_open_s']} s; same nodes as the reader: {same}"
        )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        if writer is not None:
            writer.stdin.close()
            writer.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
