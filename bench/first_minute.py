"""A newcomer's first minute: `llm4tag app` on the demo, from a fresh home folder, to the first result.

Starts the app on the bundled demo knowledge base with an empty ``$LLM4TAG_HOME`` (so the demo
knowledge base is built and the model files are prepared as on a fresh machine), opens the page
in Debian's headless Chromium as soon as it answers, sends the first demo text at once, and
prints how long each part took: until the page opened, and from the page opening to the first
result; then the tags shown with their confidences and provenance. A screenshot of the result
goes to ``bench/out/first-minute.png``.

    .venv/bin/python bench/first_minute.py [--home DIR] [--example 0]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=None, help="LLM4TAG_HOME to use (default: a new empty folder)")
    ap.add_argument("--example", type=int, default=0, help="which demo example text to send")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from knowledge_base.demo import demo_examples
    from playwright.sync_api import expect, sync_playwright

    home = Path(args.home or tempfile.mkdtemp(prefix="llm4tag-first-minute-"))
    OUT.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "LLM4TAG_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    log = open(OUT / "first-minute-app.log", "w")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "app", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - started > 600:
                raise SystemExit(f"the app did not start; see {OUT / 'first-minute-app.log'}")
            time.sleep(0.25)
        page_open_s = time.monotonic() - started
        text = demo_examples()[args.example]["text"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(300_000)
            page.goto(url)
            opened = time.monotonic()
            box = page.locator("#chat-input textarea")
            box.fill(text)
            box.press("Enter")
            first_status = page.locator("#chat").inner_text(timeout=10_000)
            expect(page.locator("#l4t-panel .l4t-tag").first).to_be_visible(timeout=300_000)
            first_result_s = time.monotonic() - opened
            page.wait_for_timeout(500)
            page.screenshot(path=OUT / "first-minute.png", full_page=True)
            tags = [
                {"tag": t.get_attribute("data-tag"), "state": t.get_attribute("data-state"), "text": " ".join(t.inner_text().split())}
                for t in page.locator("#l4t-panel .l4t-tag").all()
            ]
            status = page.locator("#warm-up").inner_text()
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    print(
        json.dumps(
            {
                "home": str(home),
                "until_page_opened_s": round(page_open_s, 1),
                "page_open_to_first_result_s": round(first_result_s, 1),
                "chat_just_after_sending": " ".join(first_status.split())[:300],
                "status_line": status,
                "tags": tags,
                "screenshot": str(OUT / "first-minute.png"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
