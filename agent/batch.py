"""Batch tagging (``llm4tag index``): JSONL in, JSONL out, written as results come, resumable.

Each input line is a JSON object with ``text`` (and optional ``id``, ``title``); a line that is
plain text is tagged as it is. Each output line echoes the ``id`` (or ``line-N``) with the tags,
or an ``error`` for a bad input line, which never stops the batch. Re-running with the same
output file skips every id already written, so a crash or Ctrl-C loses at most the item in flight.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from knowledge_base.errors import InputError, Llm4tagError
from knowledge_base.loaders import clean_text, valid_unicode

from .context import Context
from .tagging import tag


@dataclass
class BatchItem:
    key: str
    line: int
    text: str | None
    title: str | None = None
    error: str | None = None


@dataclass
class BatchReport:
    total: int = 0
    tagged: int = 0
    skipped_done: int = 0
    errors: list[str] = field(default_factory=list)


def read_items(path: Path) -> Iterator[BatchItem]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            key = f"line-{number}"
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield BatchItem(key, number, None, error=f"not valid UTF-8 ({exc.reason})")
                continue
            if not line:
                continue
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    yield BatchItem(key, number, None, error=f"malformed JSON ({exc})")
                    continue
                if not isinstance(obj, dict):
                    yield BatchItem(key, number, None, error="a line that starts with '{' must be a JSON object")
                    continue
                raw_id = obj.get("id")
                key = str(raw_id) if raw_id not in (None, "") and not isinstance(raw_id, (dict, list)) else key
                text = obj.get("text")
                title = obj.get("title") if isinstance(obj.get("title"), str) else None
                try:
                    for value, what in ((key, "'id'"), (text, "'text'"), (title, "'title'")):
                        if isinstance(value, str):
                            valid_unicode(value, what)
                except InputError as exc:
                    yield BatchItem(f"line-{number}", number, None, error=str(exc))
                    continue
                if not isinstance(text, str) or not clean_text(text):
                    yield BatchItem(key, number, None, error="'text' is missing or empty")
                    continue
                yield BatchItem(key, number, text, title)
            else:
                yield BatchItem(key, number, line)


def read_finished(out_path: Path) -> dict[str, dict]:
    """Records already in a JSONL results file, by id. A torn last line (a crash mid-write) is
    cut off first, so the next append starts on a fresh line."""
    if not out_path.exists():
        return {}
    data = out_path.read_bytes()
    good_end = data.rfind(b"\n") + 1
    if good_end < len(data):
        with open(out_path, "r+b") as fh:
            fh.truncate(good_end)
    records = {}
    for raw in data[:good_end].splitlines():
        try:
            record = json.loads(raw)
            records[str(record["id"])] = record
        except (ValueError, KeyError, TypeError):
            continue
    return records


def finished_keys(out_path: Path) -> set[str]:
    return set(read_finished(out_path))


def batch_record(key: str, result: dict) -> dict:
    """One output line of a batch: the id, the tags with their confidences, the candidates, the notes."""
    return {
        "id": key,
        "tags": [t["tag"] for t in result["tags"]],
        "confidence": [t["confidence"] for t in result["tags"]],
        "candidates": [c["tag"] for c in result["candidates"]],
        "notes": result["notes"],
    }


def run_batch(in_path: str | Path, out_path: str | Path, context: Context,
              on_item: Callable[[BatchReport, BatchItem], None] | None = None,
              tagger: Callable[..., dict] | None = None) -> BatchReport:
    tagger = tagger or tag
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise Llm4tagError(f"{in_path}: input file not found")
    done = finished_keys(out_path)
    items = list(read_items(in_path))
    report = BatchReport(total=len(items))
    with open(out_path, "a", encoding="utf-8") as out:
        for item in items:
            if item.key in done:
                report.skipped_done += 1
            else:
                if item.error is None:
                    try:
                        record = batch_record(item.key, tagger(item.text, title=item.title, context=context))
                        report.tagged += 1
                    except Llm4tagError as exc:
                        item.error = str(exc)
                if item.error is not None:
                    record = {"id": item.key, "line": item.line, "error": item.error}
                    report.errors.append(f"{in_path}:{item.line}: {item.error}")
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())
                done.add(item.key)
            if on_item:
                on_item(report, item)
    return report
