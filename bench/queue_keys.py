"""Seconds per record in the page's review queue for a person using keys only (issue 28).

Copies a knowledge base (default: the demo's, ``$LLM4TAG_HOME/demo-kb``, built on first use) so
the decisions stay out of it, starts ``llm4tag app`` on the copy, opens the page in Debian's
headless Chromium, loads ``--records`` texts into the Queue tab (the demo's calibration texts)
and decides each by keys: ``Enter`` (accept as suggested), and on every fourth record ``1`` then
``Enter`` (a change). For each it measures the page's turnaround: from the first key until the
next record is on screen — what a person waits for, their reading time not included. Prints p50
and p95 and the time to load the file, and writes ``bench/out/queue_keys.json``. Measure on an
idle machine: the figures are wall-clock.

    .venv/bin/python bench/queue_keys.py [--kb DIR] [--records 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from page_latency import CHROMIUM, CHROMIUM_ARGS, _quantile, start_app  # noqa: E402


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    from knowledge_base.demo import DEMO_DATA, open_demo_kb

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", default=None, help="knowledge base to copy (default: the demo's)")
    ap.add_argument("--records", type=int, default=40)
    args = ap.parse_args()
    source = Path(args.kb) if args.kb else open_demo_kb().directory
    kb_dir = OUT / "queue-keys-kb"
    shutil.rmtree(kb_dir, ignore_errors=True)
    shutil.copytree(source, kb_dir, ignore=shutil.ignore_patterns(".write.lock", "queue.sqlite*"))
    texts = [json.loads(line) for line in (DEMO_DATA / "calibration.jsonl").read_text(encoding="utf-8").splitlines()][: args.records]
    queue_file = OUT / "queue-keys.jsonl"
    queue_file.write_text("".join(json.dumps({"id": t["id"], "text": t["text"]}) + "\n" for t in texts), encoding="utf-8")
    proc, url, log = start_app(str(kb_dir), "queue_keys-app.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_role("tab", name="Queue").click()
            page.locator("#queue-input input[type=file]").set_input_files(str(queue_file))
            started = time.perf_counter()
            page.locator("#queue-load").click()
            expect(page.locator("#queue-report")).to_contain_text(f"{len(texts)} records queued", timeout=600_000)
            load_seconds = time.perf_counter() - started
            record = page.locator("#queue-record code").first
            turnaround = []
            for n in range(len(texts)):
                shown = record.inner_text()
                page.locator("#queue-progress").click()  # the focus on the page, as after reading the text
                began = time.perf_counter()
                if n % 4 == 3:
                    page.keyboard.press("1")
                page.keyboard.press("Enter")
                expect(page.locator("#queue-progress")).to_contain_text(f"{n + 1} of {len(texts)} decided")
                if n + 1 < len(texts):
                    expect(record).not_to_have_text(shown)
                turnaround.append(time.perf_counter() - began)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    result = {
        "records": len(texts),
        "load_seconds": round(load_seconds, 2),
        "turnaround_p50": round(_quantile(turnaround, 0.5), 3),
        "turnaround_p95": round(_quantile(turnaround, 0.95), 3),
        "load": os.getloadavg()[0],
    }
    print(
        f"{len(texts)} records: load {result['load_seconds']} s; per record (key to next record) "
        f"p50 {result['turnaround_p50']} s, p95 {result['turnaround_p95']} s; load average {result['load']:.1f}"
    )
    (OUT / "queue_keys.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
