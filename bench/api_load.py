"""Load benchmark of the REST API (``llm4tag serve``) with the embedded model, on loopback.

Starts ``llm4tag serve`` (real uvicorn, in a subprocess) on a free loopback port over a writable
copy of a knowledge base (default: the demo knowledge base; ``--kb DIR`` for another), then:

1. Tag phase — for each concurrency level (default 1, 4, 16 clients), sends ``--requests``
   ``POST /v1/tag`` requests (at least one per client) with distinct texts and ids, and reports
   requests per minute (completed requests / wall time), p50/p95 latency, errors (non-200) and
   mismatches (a response whose echoed id or text hash is not its request's).
2. Learn phase — ``--learn`` concurrent ``POST /v1/learn`` writes with distinct texts (with a
   bearer token, as a non-loopback deployment would need), and counts lost writes: the samples
   the knowledge base gained versus the writes acknowledged.

Prints a table and writes ``bench/out/api_load.json``. Server settings come from the usual
``LLM4TAG_*`` variables (``--budget`` and ``--max-tags`` are shortcuts)::

    .venv/bin/python bench/api_load.py --requests 16
    .venv/bin/python bench/api_load.py --kb my-kb --levels 1,4,16 --requests 32 --learn 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge_base.demo import demo_examples, open_demo_kb  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def start_server(kb_dir: Path, port: int, token: str, env: dict, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ui.cli", "--kb", str(kb_dir), "serve", "--host", "127.0.0.1", "--port", str(port), "--token", token]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}; see its log")
        try:
            r = httpx.get(f"{base}/health", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f}s")


def texts_pool() -> list[str]:
    return [e["text"] for e in demo_examples()]


def tag_level(base: str, clients: int, n: int, pool: list[str], offset: int) -> dict:
    # distinct texts: past the pool's end a text carries its request's number, so no cache answers it
    jobs = [
        (f"req-{clients}-{i}", pool[k % len(pool)] if k < len(pool) else f"{pool[k % len(pool)]} (request {k})")
        for i in range(n)
        for k in [offset + i]
    ]

    local = threading.local()

    def client() -> httpx.Client:
        # one keep-alive connection per client thread, as a real client holds: a new httpx client per
        # request builds an SSL context each time (~40 ms), which this bench once reported as the server's
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=900)
        return local.client

    def one(job):
        rid, text = job
        started = time.perf_counter()
        try:
            r = client().post("/v1/tag", json={"text": text, "id": rid})
        except httpx.HTTPError as exc:
            return rid, time.perf_counter() - started, f"{type(exc).__name__}", False, None
        seconds = time.perf_counter() - started
        if r.status_code != 200:
            return rid, seconds, f"HTTP {r.status_code}", False, None
        body = r.json()
        matched = body["id"] == rid and body["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        return rid, seconds, None, matched, server_seconds(r)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool_:
        results = list(pool_.map(one, jobs))
    wall = time.perf_counter() - started
    ok = [s for _, s, err, _, _ in results if err is None]
    server = [t for _, _, err, _, t in results if err is None and t is not None]
    errors = [err for _, _, err, _, _ in results if err is not None]
    return {
        "clients": clients,
        "requests": n,
        "ok": len(ok),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "mismatched": sum(1 for _, _, err, matched, _ in results if err is None and not matched),
        "wall_s": round(wall, 2),
        "requests_per_min": round(len(ok) / wall * 60, 2) if wall else 0.0,
        "p50_s": round(percentile(ok, 0.50), 2),
        "p95_s": round(percentile(ok, 0.95), 2),
        "p50_ms": round(percentile(ok, 0.50) * 1000, 1),
        "server_p50_ms": round(percentile(server, 0.50) * 1000, 1) if server else None,  # the app's own time (Server-Timing)
    }


def server_seconds(response: httpx.Response) -> float | None:
    """The app's own time from its ``Server-Timing: app;dur=<ms>`` header (None without one)."""
    for part in response.headers.get("server-timing", "").split(","):
        name, _, params = part.strip().partition(";")
        if name == "app" and params.startswith("dur="):
            return float(params[4:]) / 1000
    return None


def batch_phase(base: str, n: int, pool: list[str]) -> dict:
    """One ``POST /v1/tag-batch`` of ``n`` distinct documents: how long it took and for how many of
    them the language model ran (each result's ``route``)."""
    docs = [{"id": f"batch-{i}", "text": f"{pool[i % len(pool)]} (batch document {i})"} for i in range(n)]
    with httpx.Client(base_url=base, timeout=3600) as client:
        started = time.perf_counter()
        r = client.post("/v1/tag-batch", json={"documents": docs})
        seconds = time.perf_counter() - started
    body = r.json() if r.status_code == 200 else {}
    results = body.get("results") or []
    return {
        "documents": n,
        "status": r.status_code,
        "tagged": body.get("tagged"),
        "seconds": round(seconds, 2),
        "routed_to_llm": sum(bool((x.get("route") or {}).get("llm")) for x in results),
        "server_s": server_seconds(r),
    }


def learn_phase(base: str, token: str, n: int) -> dict:
    tags = [t["name"] for t in httpx.get(f"{base}/v1/tags", params={"limit": 20}, timeout=60).json()["tags"]]
    before = httpx.get(f"{base}/health", timeout=60).json()["knowledge_base"]["samples"]
    stamp = secrets.token_hex(4)
    headers = {"Authorization": f"Bearer {token}"}

    def one(i):
        payload = {
            "text": f"Load-test correction {stamp}-{i}: a small utility number {i}",
            "correct": [tags[i % len(tags)]],
            "id": f"load-{stamp}-{i}",
        }
        try:
            return httpx.post(f"{base}/v1/learn", json=payload, headers=headers, timeout=600).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    after = httpx.get(f"{base}/health", timeout=60).json()["knowledge_base"]["samples"]
    acknowledged = sum(1 for s in statuses if s == 200)
    return {
        "writes": n,
        "acknowledged": acknowledged,
        "errors": n - acknowledged,
        "samples_before": before,
        "samples_after": after,
        "lost": acknowledged - (after - before),
        "wall_s": round(wall, 2),
        "writes_per_min": round(acknowledged / wall * 60, 1) if wall else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kb", type=Path, default=None, help="knowledge base to copy (default: the demo knowledge base)")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level, comma-separated")
    parser.add_argument("--requests", type=int, default=16, help="tag requests per level (at least one per client)")
    parser.add_argument("--learn", type=int, default=50, help="concurrent learn writes")
    parser.add_argument("--batch", type=int, default=0, help="also send one /v1/tag-batch of this many documents (e.g. 32)")
    parser.add_argument("--budget", type=int, default=None, help="server's candidate budget (LLM4TAG_BUDGET)")
    parser.add_argument("--max-tags", type=int, default=None, help="server's max tags (LLM4TAG_MAX_TAGS)")
    parser.add_argument("--out", type=Path, default=OUT / "api_load.json")
    args = parser.parse_args()

    source = args.kb.expanduser().resolve() if args.kb else open_demo_kb(log=lambda m: print(m, file=sys.stderr)).directory
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    if args.budget:
        env["LLM4TAG_BUDGET"] = str(args.budget)
    if args.max_tags:
        env["LLM4TAG_MAX_TAGS"] = str(args.max_tags)
    token = secrets.token_urlsafe(16)
    work = Path(tempfile.mkdtemp(prefix="llm4tag-api-load-"))
    kb_copy = work / "kb"
    shutil.copytree(source, kb_copy, ignore=shutil.ignore_patterns(".write.lock", "*.lock"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    print(f"serving a copy of {source} on {base} (log: {log_path})", file=sys.stderr)
    proc = start_server(kb_copy, port, token, env, log_path)
    try:
        started = time.perf_counter()
        health = wait_ready(base, proc)
        startup = time.perf_counter() - started
        httpx.post(f"{base}/v1/tag", json={"text": "warm-up request"}, timeout=900)  # first-call costs stay out of the figures
        pool = texts_pool()
        rows, offset = [], 0
        for clients in levels:
            n = max(args.requests, clients)
            print(f"tag: {clients} concurrent clients, {n} requests ...", file=sys.stderr)
            rows.append(tag_level(base, clients, n, pool, offset))
            offset += n
        batch = batch_phase(base, args.batch, pool) if args.batch else None
        print(f"learn: {args.learn} concurrent writes ...", file=sys.stderr)
        learn = learn_phase(base, token, args.learn)
        final = httpx.get(f"{base}/health", timeout=60).json()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    report = {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2), "python": platform.python_version()},
        "server": {
            "backend": health["backend"],
            "workers": health["queue"]["workers"],
            "max_waiting": health["queue"]["max_waiting"],
            "budget": env.get("LLM4TAG_BUDGET", "kb default"),
            "max_tags": env.get("LLM4TAG_MAX_TAGS", "5"),
            "llm_threads": env.get("LLM4TAG_LLM_THREADS", "1"),
            "startup_s": round(startup, 1),
        },
        "knowledge_base": {"source": str(source), **{k: health["knowledge_base"][k] for k in ("tags", "samples", "document_passages")}},
        "tag": rows,
        "learn": learn,
        "batch": batch,
        "queue_at_end": final["queue"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)

    s = report["server"]
    print(
        f"llm4tag serve · {s['backend']} · {s['workers']} workers, queue {s['max_waiting']} · budget {s['budget']}, max_tags {s['max_tags']} · "
        f"{report['machine']['cpus']} CPUs, load {report['machine']['load_avg_1m_at_end']}"
    )
    print(
        f"{'clients':>7} {'requests':>8} {'ok':>4} {'errors':>6} {'mismatch':>8} {'req/min':>8} {'p50 s':>7} {'p95 s':>7} {'wall s':>7} {'p50 ms':>7} {'server p50 ms':>13}"
    )
    for r in rows:
        print(
            f"{r['clients']:>7} {r['requests']:>8} {r['ok']:>4} {r['errors']:>6} {r['mismatched']:>8} {r['requests_per_min']:>8.1f} "
            f"{r['p50_s']:>7.2f} {r['p95_s']:>7.2f} {r['wall_s']:>7.1f} {r['p50_ms']:>7.1f} {r['server_p50_ms'] if r['server_p50_ms'] is not None else '-':>13}"
        )
    if batch:
        print(
            f"tag-batch of {batch['documents']}: HTTP {batch['status']}, {batch['tagged']} tagged in {batch['seconds']} s, "
            f"the language model ran for {batch['routed_to_llm']}"
        )
    print(
        f"learn: {learn['writes']} concurrent writes, {learn['acknowledged']} acknowledged, {learn['errors']} errors, "
        f"samples {learn['samples_before']} → {learn['samples_after']}, lost {learn['lost']} ({learn['wall_s']} s)"
    )
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
