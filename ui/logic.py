"""The app's logic without Gradio: follow-up commands, feedback verdicts, reading dropped files
and converting CSV batches to JSONL. (Re-thresholding a result is ``agent.confidence.rethreshold``;
merging streamed steps is the graph's own, through ``agent.tagging.tag_stream``.)

Everything here is a plain function over plain data, so it is tested without a browser.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from knowledge_base.documents import allow_large_csv_fields
from knowledge_base.errors import InputError
from knowledge_base.loaders import clean_text

# ---- follow-up commands ---------------------------------------------------------------------
ACTIONS = ("accept", "reject", "add", "explain", "undo", "help")
NEEDS_TAG = ("reject", "add", "explain")
_COMMAND = re.compile(r"(?is)(accept|reject|add|explain|undo|help)(?:\s+(.+))?")
MAX_COMMAND_CHARS = 300

HELP = (
    "After a result, reply with:\n"
    "- `accept` — the tags shown are right (written to the knowledge base at once)\n"
    "- `accept TAG[, TAG…]` — these tags are right\n"
    "- `reject TAG[, TAG…]` — these tags are wrong\n"
    "- `add TAG[, TAG…]` — these tags are missing (they must be in the tag repository)\n"
    "- `explain TAG` — why the tag was (or was not) proposed\n"
    "- `undo` — take back the last feedback\n"
    "Anything else is tagged as a new text."
)


@dataclass(frozen=True)
class Command:
    action: str  # one of ACTIONS
    tags: tuple[str, ...] = ()


def parse_command(message: str | None) -> Command | None:
    """A follow-up command, or None when the message is a new text to tag.

    Only a short one-line message that starts with a command word is a command; ``undo`` and
    ``help`` take no argument, the others take tag names separated by commas.
    """
    text = (message or "").strip()
    if not text or "\n" in text or len(text) > MAX_COMMAND_CHARS:
        return None
    m = _COMMAND.fullmatch(text)
    if not m:
        return None
    action, rest = m.group(1).lower(), (m.group(2) or "").strip()
    if action in ("undo", "help") and rest:
        return None
    if action == "accept" and rest.lower() in ("all", "these", "them", "shown"):
        rest = ""
    names = [n.strip().strip("`'\"").strip() for n in rest.split(",")]
    return Command(action, tuple(n for n in names if n))


def resolve_tags(names: tuple[str, ...] | list[str], known: set[str]) -> tuple[list[str], list[str]]:
    """Map typed names onto the repository: exact, then case-insensitive, then space-separated
    names that are each a tag. Returns (resolved tags, names not found)."""
    lowered: dict[str, list[str]] = {}
    for tag in known:
        lowered.setdefault(tag.lower(), []).append(tag)

    def one(name: str) -> str | None:
        if name in known:
            return name
        matches = lowered.get(name.lower(), [])
        return matches[0] if len(matches) == 1 else None

    resolved: list[str] = []
    unknown: list[str] = []
    for name in names:
        tag = one(name)
        if tag is not None:
            parts = [tag]
        else:
            parts = [one(p) for p in name.split()] if len(name.split()) > 1 else [None]
        if all(parts):
            resolved += [p for p in parts if p not in resolved]
        else:
            unknown.append(name)
    return resolved, unknown


def empty_verdict() -> dict:
    return {"correct": [], "incorrect": []}


def apply_verdict(verdict: dict, action: str, tags: list[str]) -> dict:
    """The verdict on a content after a command: ``accept``/``add`` make tags correct, ``reject``
    makes them incorrect; a tag is never both."""
    correct, incorrect = list(verdict.get("correct", [])), list(verdict.get("incorrect", []))
    if action in ("accept", "add"):
        correct += [t for t in tags if t not in correct]
        incorrect = [t for t in incorrect if t not in tags]
    elif action == "reject":
        incorrect += [t for t in tags if t not in incorrect]
        correct = [t for t in correct if t not in tags]
    else:
        raise ValueError(f"{action!r} is not a feedback action")
    return {"correct": correct, "incorrect": incorrect}


# ---- files ----------------------------------------------------------------------------------
TEXT_SUFFIXES = (".txt", ".md", ".jsonl")


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not valid UTF-8 (byte {exc.start}: {exc.reason}); re-save it as UTF-8") from exc


def read_dropped_file(path: str | Path) -> tuple[str, str | None, str | None]:
    """The text to tag from a dropped .txt/.md/.jsonl file: (text, title, note).

    A .jsonl file contributes its first item (``text``, optional ``title``); the note says how
    many more it holds (the Batch tab tags them all).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise InputError(f"{path.name}: drop a .txt, .md or .jsonl file (CSV and larger files go to the Batch tab)")
    data = _decode(path)
    if suffix != ".jsonl":
        if not clean_text(data):
            raise InputError(f"{path.name} is empty; give some text to tag")
        return data, None, None
    lines = [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
    if not lines:
        raise InputError(f"{path.name} is empty; give some text to tag")
    number, first = lines[0]
    try:
        obj = json.loads(first)
    except ValueError as exc:
        raise InputError(f"{path.name}:{number}: malformed JSON ({exc})") from exc
    text = obj.get("text") if isinstance(obj, dict) else None
    if not isinstance(text, str) or not clean_text(text):
        raise InputError(f"{path.name}:{number}: 'text' is missing or empty")
    title = obj.get("title") if isinstance(obj.get("title"), str) else None
    note = (
        f"{path.name} holds {len(lines)} items; only the first was tagged — use the Batch tab for all of them" if len(lines) > 1 else None
    )
    return text, title, note


def csv_to_jsonl(src: str | Path, dst: str | Path) -> int:
    """Convert a CSV batch (a ``text`` column, optional ``id`` and ``title``) to batch JSONL.

    Row N gets the id ``row-N`` when it has none. A row with an empty text is kept as an item
    with an empty text, so the batch reports it on its line and goes on. Returns the row count.
    """
    src, dst = Path(src), Path(dst)
    data = _decode(src)
    allow_large_csv_fields()
    reader = csv.DictReader(io.StringIO(data, newline=""))
    columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    if "text" not in columns:
        found = ", ".join(repr(c) for c in reader.fieldnames or []) or "none"
        raise InputError(f"{src.name} has no 'text' column (its columns: {found}); the first row must name the columns")
    rows = 0
    with open(dst, "w", encoding="utf-8") as out:
        try:
            for number, row in enumerate(reader, 1):
                item = {"id": clean_text(row.get(columns["id"]) or "") if "id" in columns else ""}
                item["id"] = item["id"] or f"row-{number}"
                item["text"] = row.get(columns["text"]) or ""
                if "title" in columns and row.get(columns["title"]):
                    item["title"] = row[columns["title"]]
                out.write(json.dumps(item, ensure_ascii=False) + "\n")
                rows += 1
        except csv.Error as exc:
            raise InputError(f"{src.name}: row {rows + 1} cannot be read as CSV ({exc})") from exc
    return rows


def prepare_batch_input(path: str | Path, workdir: str | Path) -> Path:
    """The JSONL file the batch runs on: the upload itself, or its conversion from CSV."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return path
    if suffix == ".csv":
        target = Path(workdir) / (path.stem + ".jsonl")
        csv_to_jsonl(path, target)
        return target
    raise InputError(f"{path.name}: upload a .jsonl file (one {{\"text\": ...}} per line) or a .csv file with a 'text' column")
