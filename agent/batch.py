"""Batch tagging (``llm4tag index``): JSONL in, JSONL out, written as results come, resumable.

Each input line is a JSON object with ``text`` (and optional ``id``, ``title``); a line that is
plain text is tagged as it is. Each output line echoes the ``id`` (or ``line-N``) with the result
every surface returns (``agent.results.TagResult``: tags with confidence and why, the scored tags
under the threshold, the threshold, mode and route, notes) and the candidates, or an ``error`` with ``status``: ``bad-input`` for an unusable input line, ``failed`` when tagging
it failed (say, the model server was down); neither stops the batch. Re-running with the same
output file skips every id already tagged and tries the errors again (a later line for an id
supersedes an earlier one), so a crash or Ctrl-C loses at most the item in flight.

The output file is only ever appended to. An existing one must hold this tool's records: a file
with other lines is refused, untouched; a torn last line is cut only when it is the start of a
record this tool was writing. The input file cannot be the output file.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from knowledge_base.errors import InputError, Llm4tagError
from knowledge_base.loaders import clean_text, valid_unicode

from .context import Context
from .results import recalled_tags, tag_result
from .tagging import tag

if TYPE_CHECKING:
    from .workers import TaggerPool


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
    errors: list[str] = field(default_factory=list)  # bad input lines
    failed: list[str] = field(default_factory=list)  # items whose tagging failed (retried on the next run)


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


RECORD_START = b'{"id": '  # how every line this tool (and the evaluation runner) writes begins


def _foreign(out_path: Path, number: int | str, raw: bytes) -> Llm4tagError:
    shown = raw[:60].decode("utf-8", "backslashreplace")
    return Llm4tagError(
        f"{out_path}:{number} is not a result line llm4tag wrote ({shown!r}); nothing was changed. "
        "Give a new output file (or the one an earlier run of the same command wrote)"
    )


def read_finished(out_path: Path) -> dict[str, dict]:
    """Records already in a JSONL results file, by id (the last line for an id wins).

    A torn last line — the start of a record cut short by a crash mid-write — is cut off first,
    so the next append starts on a fresh line. Any other line that is not a record (this is not
    a results file) raises ``Llm4tagError`` and nothing in the file is changed.
    """
    if not out_path.exists():
        return {}
    data = out_path.read_bytes()
    good_end = data.rfind(b"\n") + 1
    lines = data[:good_end].splitlines()
    records = {}
    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
            records[str(record["id"])] = record
        except (ValueError, KeyError, TypeError):
            raise _foreign(out_path, number, raw) from None
    tail = data[good_end:]
    if tail:
        try:
            record = json.loads(tail)
            records[str(record["id"])] = record
            complete = True
        except (ValueError, KeyError, TypeError):
            complete = False
        if not (tail.startswith(RECORD_START) or RECORD_START.startswith(tail)):
            raise _foreign(out_path, len(lines) + 1, tail)
        with open(out_path, "r+b") as fh:
            if complete:  # a whole record without its newline: end it
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
            else:  # the start of a record this tool was writing when it stopped
                fh.truncate(good_end)
    return records


def finished_keys(out_path: Path) -> set[str]:
    """Ids already tagged: a record with an ``error`` (a bad line, a failure) is tried again."""
    return {key for key, record in read_finished(out_path).items() if not (isinstance(record, dict) and "error" in record)}


def batch_record(key: str, result: dict) -> dict:
    """One output line of a batch: the item's id, the result every surface returns
    (``agent.results.TagResult``: the tags, each with its confidence and why, the scored tags
    under the threshold, the threshold, mode and route, the notes) and, as REST adds them, the
    recalled candidates (``agent.results.RecalledTag``)."""
    return {
        "id": key,
        **tag_result(result).model_dump(mode="json"),
        "candidates": [c.model_dump(mode="json") for c in recalled_tags(result)],
    }


def run_batch(
    in_path: str | Path,
    out_path: str | Path,
    context: Context,
    on_item: Callable[[BatchReport, BatchItem], None] | None = None,
    tagger: Callable[..., dict] | None = None,
    workers: int = 1,
    pool: "TaggerPool | None" = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> BatchReport:
    """Tag every usable line of ``in_path`` into ``out_path`` (see the module docstring).

    ``workers`` > 1 tags that many items at once in a ``TaggerPool`` (model worker processes,
    or threads for a remote backend); results are still written in input order, each as soon as
    it and every line before it are done, so an interruption loses at most the items in flight.
    ``pool``: an already started ``TaggerPool`` to use instead (it is left running).
    ``engine="ray"`` tags on Ray Data instead, with an actor pool of ``workers`` taggers, on a
    local Ray instance or the cluster at ``ray_address`` (``agent.ray_engine``).
    """
    if engine not in ("local", "ray"):
        raise Llm4tagError(f"unknown engine {engine!r}; use local or ray")
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise Llm4tagError(f"{in_path}: input file not found")
    if out_path.exists() and os.path.samefile(in_path, out_path):
        raise Llm4tagError(f"{out_path} is the input file too; results go to a separate file (e.g. {in_path.stem}.tags.jsonl)")
    done = finished_keys(out_path)
    items = list(read_items(in_path))
    report = BatchReport(total=len(items))
    pending = []
    for item in items:  # an id already tagged, or given twice in the input, is done once
        if item.key in done:
            report.skipped_done += 1
            if on_item:
                on_item(report, item)
        else:
            pending.append(item)
            done.add(item.key)
    with open(out_path, "ab") as out:
        if engine == "ray":
            from .ray_engine import ray_results

            results = ray_results(pending, context, workers, ray_address)
        else:
            results = _results(pending, context, tagger, workers, pool)
        for item, result in results:
            status = "bad-input"
            if isinstance(result, dict):
                record = batch_record(item.key, result)
                report.tagged += 1
            else:
                if item.error is None:
                    item.error, status = str(result), "failed"
                record = {"id": item.key, "line": item.line, "error": item.error, "status": status}
                (report.failed if status == "failed" else report.errors).append(f"{in_path}:{item.line}: {item.error}")
            out.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace"))  # one write per line
            out.flush()
            os.fsync(out.fileno())
            if on_item:
                on_item(report, item)
    return report


def _results(
    items: list[BatchItem], context: Context, tagger: Callable[..., dict] | None, workers: int, pool: "TaggerPool | None"
) -> Iterator[tuple[BatchItem, dict | Exception | None]]:
    """(item, its tagging result, or the error that stopped it, or None for a bad line), in order."""
    if workers <= 1 and pool is None:
        tagger = tagger or tag
        for item in items:
            if item.error is not None:
                yield item, None
                continue
            try:
                yield item, tagger(item.text, title=item.title, context=context)
            except (Llm4tagError, OSError) as exc:
                yield item, exc
        return
    if tagger is not None:
        raise ValueError("a custom tagger runs in this process: use workers=1")
    from .workers import TaggerPool

    own = pool is None
    pool = pool or TaggerPool(workers, context)
    window: deque = deque()
    try:
        for item in items:
            window.append((item, None if item.error is not None else pool.submit(item.text, item.title, context)))
            while len(window) > 2 * pool.workers or (window and (window[0][1] is None or window[0][1].done())):
                yield _settled(*window.popleft())
        while window:
            yield _settled(*window.popleft())
    finally:
        if own:
            pool.close(cancel=True)


def _settled(item: BatchItem, future) -> tuple[BatchItem, dict | Exception | None]:
    if future is None:
        return item, None
    try:
        return item, future.result()
    except (Llm4tagError, OSError) as exc:
        return item, exc
