"""How soon the page shows a text's first tags, and its final answer (issue 26's page target).

Starts ``llm4tag app`` on a knowledge base (default: the demo's, ``$LLM4TAG_HOME/demo-kb``, built
on first use), opens the page in Debian's headless Chromium, waits until the status line says the
app is ready (warm-up done), tags each demo text once to warm every cache that a first request
pays for (the model, the encoder's session) — on a *different* text, so that the measured texts
are not answered from the tagging cache — then for each demo text, several rounds of it with a
word changed so that no cache answers it:

- *first tags*: from pressing Enter to the side panel listing tags (fused recall's first answer,
  before any language-model step);
- *final*: from pressing Enter until the conversation takes a new text again (the final answer).

Prints p50 and p95 of each, per LLM mode chosen on the page (``--modes auto,fast``), and writes
``bench/out/page_latency.json``. Measure on an idle machine: the figures are wall-clock.

    .venv/bin/python bench/page_latency.py [--kb DIR] [--rounds 3] [--modes auto,fast]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def start_app(kb: str | None, log_name: str) -> tuple[subprocess.Popen, str, object]:
    """``llm4tag app`` on a free local port (on ``kb``, else the demo knowledge base), once it answers:
    (the process, its URL, its open log file, ``bench/out/<log_name>``)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "ui.cli", *(["--kb", kb] if kb else []), "app", "--port", str(port)]
    log = open(OUT / log_name, "w") if OUT.is_dir() else open(os.devnull, "w")
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 600
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc, url, log
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the app did not start; see {OUT / log_name}")
            time.sleep(1)


def main() -> None:
    from playwright.sync_api import sync_playwright

    from knowledge_base.demo import demo_examples

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", default=None, help="knowledge base (default: the demo's)")
    ap.add_argument("--rounds", type=int, default=3, help="variants of each demo text per mode")
    ap.add_argument("--modes", default="auto,fast", help="the page's language-model choices to measure")
    args = ap.parse_args()
    texts = [ex["text"] for ex in demo_examples()]
    proc, url, log = start_app(args.kb, "page_latency-app.log")
    results: dict = {"texts": len(texts), "rounds": args.rounds, "modes": {}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(int(os.environ.get("PAGE_TIMEOUT_MS", "600000")))
            page.goto(url)
            try:
                page.get_by_text("✓ Ready").first.wait_for()
            except Exception:
                page.screenshot(path=OUT / "page_latency-stuck.png", full_page=True)
                raise
            box = page.locator("#chat-input textarea")

            def send(text: str) -> tuple[float, float]:
                box.wait_for(state="visible")
                page.wait_for_function("() => !document.querySelector('#chat-input textarea').disabled")
                box.fill(text)
                started = time.perf_counter()
                box.press("Enter")
                page.wait_for_function(
                    "(snippet) => { const p = document.querySelector('#l4t-panel'); return p && p.textContent.includes(snippet)"
                    " && p.querySelectorAll('.l4t-tag').length > 0 }",
                    arg=" ".join(text.split())[:30],
                )  # the panel shows it on one line
                first = time.perf_counter() - started
                page.wait_for_function("() => !document.querySelector('#chat-input textarea').disabled")
                final = time.perf_counter() - started
                page.wait_for_timeout(500)  # not timed: the page settles (the input is cleared) before the next text
                return first, final

            def checked_send(text: str) -> tuple[float, float]:
                try:
                    return send(text)
                except Exception:
                    page.screenshot(path=OUT / "page_latency-stuck.png", full_page=True)
                    state = page.evaluate(
                        "() => [...document.querySelectorAll('#chat-input textarea')].map(t => [t.disabled, t.value.slice(0, 60)])"
                    )
                    print("stuck sending", text[:60].replace("\n", " "), "; the input:", state, file=sys.stderr)
                    raise

            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                page.get_by_label(mode, exact=True).check()
                checked_send(f"({mode} warm-up) A music player with playlists and an equaliser")  # not measured
                firsts, finals = [], []
                for r in range(args.rounds):
                    for n, text in enumerate(texts):
                        first, final = checked_send(f"({mode} {r}.{n}) {text}")  # the marker first: the panel's snippet shows it
                        firsts.append(first)
                        finals.append(final)
                results["modes"][mode] = {
                    "first_tags_p50_s": round(statistics.median(firsts), 3),
                    "first_tags_p95_s": round(_quantile(firsts, 0.95), 3),
                    "final_p50_s": round(statistics.median(finals), 3),
                    "final_p95_s": round(_quantile(finals, 0.95), 3),
                    "sends": len(firsts),
                }
                print(
                    f"{mode:>5}: first tags p50 {results['modes'][mode]['first_tags_p50_s']:.3f} s "
                    f"(p95 {results['modes'][mode]['first_tags_p95_s']:.3f}), final answer p50 "
                    f"{results['modes'][mode]['final_p50_s']:.3f} s (p95 {results['modes'][mode]['final_p95_s']:.3f}) "
                    f"over {len(firsts)} sends",
                    flush=True,
                )
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    try:
        results["load_average"] = os.getloadavg()
    except OSError:
        pass
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "page_latency.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
