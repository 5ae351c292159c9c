"""The hostile corpus: hypothesis strategies for input a careless or hostile caller sends — lone
surrogates, NULs, control, zero-width and bidi characters, huge lines, invalid UTF-8 bytes, wrong
JSON types, NaN and infinities — and a line-by-line client for ``llm4tag mcp``. Shared by
``tests/test_hostile_corpus.py`` (a few hundred cases per run) and ``bench/hostile_corpus.py``
(ten thousand and more, over every surface)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

HUGE = 200_000

# ---- the corpus --------------------------------------------------------------------------------
SURROGATES = ["\ud800", "\udc80", "\udfff", "\ud83d"]  # lone: a broken JSON escape, a non-UTF-8 argv byte
ODD = [
    "\x00",
    "\x01",
    "\x08",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "\x85",
    "\r",
    "\n",
    "\t",
    "\u2028",
    "\u2029",  # NUL, control, line breaks
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",  # zero-width
    "\u202a",
    "\u202b",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2069",
    "\u200e",
    "\u200f",  # bidi marks and overrides
    "\ufffd",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "e\u0301",
    "::",
    "\\",
    '"',
    "'",
    "{",
    "}",
    "%s",
    "${x}",
    "../",
    "<script>",
    " ",
]
WORDS = ["game", "library", "network", "image", "editor", "shared", "chess", "server", "python", "role::program", "devel::library"]


def weighted(*pairs):
    """One of the strategies, chosen with whole-number weights: (weight, strategy), ... (``st.one_of``
    would pick each distinct strategy equally often, repeats or not)."""
    return st.sampled_from([strategy for weight, strategy in pairs for _ in range(weight)]).flatmap(lambda strategy: strategy)


piece = weighted((3, st.sampled_from(WORDS)), (2, st.sampled_from(ODD)), (1, st.text(max_size=8)))
odd_text = st.lists(piece, min_size=1, max_size=10).map(" ".join)  # Unicode any encoder takes, however odd
with_surrogate = st.tuples(odd_text, st.sampled_from(SURROGATES), odd_text).map("".join)
huge_text = st.builds(
    lambda c, tail: c * HUGE + tail,
    st.sampled_from(["a", "word ", "\u200b", "\u202e", "\x00", "\u00e9"]),
    st.sampled_from(["", "\udc80", " end"]),
)
hostile_text = weighted((6, odd_text), (2, with_surrogate), (1, huge_text), (1, st.text(max_size=30)))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
wrong_type = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    non_finite,
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=4)), max_size=2),
)
any_value = weighted((3, hostile_text), (1, wrong_type))


fresh_id = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_:./ \u00e9\u200b", min_size=1, max_size=24)


def mostly(valid, hostile=None):
    """Usually a valid value (so the paths behind validation run too), sometimes a hostile one."""
    return weighted((3, valid), (1, hostile if hostile is not None else any_value))


number_like = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40), st.floats(allow_nan=True, allow_infinity=True), non_finite, any_value
)
junk_bytes = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"\xff\xfe",
            b"\xc3(",
            b"\xed\xa0\x80",
            b"\xed\xb2\x80",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe2\x82",
            b"\x80" * 5,
            b"\xef\xbb\xbf",
            b"\x00\x00",
        ]
    ),
)


def tag_list(known: list[str]):
    """A list of tag names: mostly known ones, or hostile ones, or a wrong type instead of a list."""
    name = mostly(st.sampled_from(known))
    return weighted((3, st.lists(st.sampled_from(known), min_size=1, max_size=3)), (2, st.lists(name, max_size=4)), (1, any_value))


def dumps(value) -> str:
    """What a careless client sends: NaN and Infinity as JSON's non-standard literals, lone
    surrogates as ``\\udc80`` escapes (``ensure_ascii``)."""
    return json.dumps(value, allow_nan=True)


def strict_json(raw: bytes):
    def refuse(token):
        raise AssertionError(f"the answer holds the non-JSON literal {token}")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


RAW_BODIES = [
    b"[" * 100_000,
    b"{" * 50_000,
    b'{"text": "a"',
    b"null",
    b"[]",
    b"42",
    b'"text"',
    b'{"text": "\xff\xfe", "llm": false}',
    b'{"text": "a", "llm": false, "text": "\\ud800"}',
    b'{"text": NaN, "llm": false}',
    b"\xef\xbb\xbf{}",
    b"",
]


class McpProcess:
    """``llm4tag mcp`` in a subprocess, spoken to line by line (as tests/test_hardening.py does)."""

    def __init__(self, kb_dir: Path):
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "LLM4TAG_BUDGET": "5",
            "LLM4TAG_MAX_TAGS": "2",
            "LLM4TAG_USE_KNOWLEDGE": "false",
            "LLM4TAG_MAX_EXAMPLES": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ui.cli", "--kb", str(kb_dir), "mcp"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.replies: dict = {}
        self.unreadable: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 1000

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.unreadable.append(line)
                continue
            if isinstance(message, dict) and "id" in message:
                self.replies[message["id"]] = message

    def send(self, message) -> None:
        self.proc.stdin.write((message if isinstance(message, str) else dumps(message)).encode("utf-8", "surrogatepass") + b"\n")
        self.proc.stdin.flush()

    def wait(self, key, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while key not in self.replies:
            assert self.proc.poll() is None, "the MCP server died"
            assert time.monotonic() < deadline, f"no reply to request {key}"
            time.sleep(0.02)
        return self.replies.pop(key)

    def request(self, method: str, params) -> dict:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.wait(self.next_id)

    def close(self, timeout: float = 60) -> None:
        """End the session (standard input closed) and wait for the server to exit; kill it if it does not."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
