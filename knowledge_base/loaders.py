"""Readers for the three kinds of input a knowledge base is built from.

- Tag repository: TSV, CSV or JSONL with a name and optional description, synonyms and parent,
  its columns recognised by their usual names and its hierarchy checked (``read_tags``).
- Annotated samples: JSONL with ``text``, ``tags`` and optional ``id`` and ``incorrect_tags``.
- Domain documents: text, Markdown, PDF, HTML, Word (.docx) or CSV files (definitions, tagging rules),
  split into passages (``documents.py`` reads all but text and Markdown, with the ``docs`` extra).

Every reader parses the whole file before anything is written, so a file with a bad line either
stops with the file and line named (``on_error="stop"``) or is loaded without the bad lines,
which are listed in the report (``on_error="skip"``). Nothing is loaded half-way.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from .errors import InputError, LoadError

OnError = Literal["stop", "skip"]
_NAME_COLUMNS = ("tag", "name", "label")
_LIST_SPLIT = re.compile(r"\s*[|;]\s*")


@dataclass(frozen=True)
class Tag:
    name: str
    description: str = ""
    synonyms: tuple[str, ...] = ()
    parent: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # (language, label): the name in other languages (SKOS prefLabel@xx)

    def label(self, language: str | None) -> str:
        """The tag's label in ``language`` (an ISO 639-1 code), else its name (the vocabulary's default)."""
        return dict(self.labels).get(language.lower(), self.name) if language else self.name

    def metadata(self) -> dict[str, str]:
        """What the store keeps beside the tag's embedding (Chroma metadata: flat strings)."""
        return {
            "description": self.description,
            "synonyms": json.dumps(list(self.synonyms)),
            "parent": self.parent or "",
            **({"labels": json.dumps(dict(self.labels), ensure_ascii=False)} if self.labels else {}),
        }

    @classmethod
    def from_metadata(cls, name: str, meta: dict | None) -> "Tag":
        meta = meta or {}
        try:
            labels = tuple(sorted(json.loads(meta.get("labels") or "{}").items()))
        except (ValueError, AttributeError):
            labels = ()
        try:
            synonyms = tuple(json.loads(meta.get("synonyms") or "[]"))
        except ValueError:
            synonyms = ()
        return cls(name, meta.get("description", ""), synonyms, meta.get("parent") or None, labels)

    def embedding_text(self) -> str:
        """What the encoder sees for a tag: its readable name, synonyms and description."""
        parts = [humanize_tag(self.name)]
        if self.synonyms:
            parts.append("also: " + ", ".join(self.synonyms))
        if self.description:
            parts.append(self.description)
        return ". ".join(parts)


@dataclass(frozen=True)
class Sample:
    id: str
    text: str
    tags: tuple[str, ...]
    incorrect_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passage:
    """A domain-document passage: ``source`` is the file it came from, ``page`` its PDF page and
    ``row`` its CSV row (from 1), ``index`` its place among the file's passages (from 0)."""

    id: str
    source: str
    text: str
    page: int | None = None
    row: int | None = None
    index: int | None = None


@dataclass
class Problem:
    path: str
    line: int | None  # None: the whole file
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line is not None else f"{self.path}: {self.message}"


@dataclass
class Parsed:
    """Records read from a file plus the lines that could not be read."""

    records: list = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # tag repositories: tags that are gone — (name, its replacement or None when retired), for KnowledgeBase.apply_tag_changes
    changes: list[tuple[str, str | None]] = field(default_factory=list)


def humanize_tag(name: str) -> str:
    """``works-with::image`` → ``works-with: image``; ``card_arrival`` → ``card arrival``."""
    return name.replace("::", ": ").replace("_", " ").strip()


def clean_text(text: str) -> str:
    """Strip surrounding whitespace and control characters that break tokenizers and JSON."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", " ", text).strip()


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_ID_CHARS = 200


def valid_unicode(value: str, what: str = "the text") -> str:
    """``value`` unchanged if it is text every encoder and JSON writer accepts; else ``InputError``.

    Python strings may hold lone surrogates (U+D800–U+DFFF): a JSON escape such as ``"\\udc80"``
    decodes to one, and so does an invalid byte in a command-line argument. UTF-8 encoders, the
    tokenizer, SQLite and JSON responses all reject them, so they are refused at the door, with a
    message that is itself plain ASCII where it shows the character.
    """
    found = _SURROGATE.search(value)
    if found:
        raise InputError(
            f"{what} holds a lone surrogate {ascii(found.group())[1:-1]} at character {found.start() + 1}, which is not valid "
            "Unicode (a broken JSON escape, or bytes that are not UTF-8); fix or remove it"
        )
    return value


def encodable(value):
    """``value`` (JSON-like data) with every string encodable as UTF-8 (a lone surrogate becomes the
    escape ``\\udc80`` as text) and every non-finite float ``None``: for answers that must be sent
    whatever they quote (an error message, a result)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    return value


def require_text(text: str | None) -> str:
    """The content to tag, cleaned; raises a clear error when nothing is left or it is not valid Unicode."""
    if text is None or not isinstance(text, str):
        raise InputError("the content must be a string of text")
    cleaned = clean_text(valid_unicode(text, "the content"))
    if not cleaned:
        raise InputError("the content is empty (or only whitespace); give some text to tag")
    return cleaned


def require_id(value, what: str = "the id") -> str:
    """An id given by a caller: a non-empty string of printable, valid Unicode, at most 200 characters."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string")
    valid_unicode(value, what)
    if not value.strip():
        raise InputError(f"{what} is empty (or only whitespace); leave it out to derive one from the text")
    if clean_text(value) != value.strip() or value != value.strip():
        raise InputError(f"{what} {ascii(value)[:80]} has control characters (such as NUL) or surrounding whitespace; use printable text")
    if len(value) > MAX_ID_CHARS:
        raise InputError(f"{what} has {len(value)} characters, more than {MAX_ID_CHARS}")
    return value


def verdict(correct: Iterable[str], incorrect: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A correction's tags in order, without repeats; a tag named both right and wrong counts as right."""
    if isinstance(correct, str) or isinstance(incorrect, str):
        raise InputError("the correct and incorrect tags must be lists of tag names, not one string")
    correct, incorrect = list(correct), list(incorrect)
    for t in (*correct, *incorrect):
        if not isinstance(t, str):
            raise InputError(f"a tag name must be a string, not {type(t).__name__}")
        valid_unicode(t, "a tag name")
    right = tuple(dict.fromkeys(correct))
    return right, tuple(t for t in dict.fromkeys(incorrect) if t not in right)


def content_id(text: str) -> str:
    """A stable id for a content that came without one, so re-loading it does not duplicate it."""
    return "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _decoded_lines(path: Path, parsed: Parsed) -> Iterable[tuple[int, str]]:
    if not path.is_file():
        raise LoadError("file not found", str(path))
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            parsed.problems.append(
                Problem(str(path), number, f"not valid UTF-8 ({exc.reason} at byte {exc.start}); re-save the file as UTF-8")
            )


def _as_list(value, what: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = _LIST_SPLIT.split(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ValueError(f"'{what}' must be a list of strings")
    seen: dict[str, None] = {}
    for item in items:
        item = clean_text(valid_unicode(item, f"a name in '{what}'"))
        if item:
            seen.setdefault(item, None)
    return tuple(seen)


def _finish(parsed: Parsed, on_error: OnError, path: Path, what: str) -> Parsed:
    if parsed.problems and on_error == "stop":
        first = parsed.problems[0]
        more = f" (and {len(parsed.problems) - 1} more bad lines)" if len(parsed.problems) > 1 else ""
        raise LoadError(f"{first.message}{more}; nothing was loaded. Fix the line or load with --on-error skip", first.path, first.line)
    if not parsed.records and not parsed.changes:
        raise LoadError(f"no {what} found in the file; nothing was loaded", str(path))
    return parsed


# what each column may be called (compared lower-case, letters and digits only: "Scope note" → "scopenote")
COLUMN_NAMES = {
    "name": ("tag", "name", "label", "tagname", "preflabel", "term", "concept", "keyword"),
    "description": ("description", "desc", "definition", "scopenote", "meaning", "gloss", "explanation"),
    "synonyms": ("synonyms", "synonym", "aliases", "alias", "altlabel", "altlabels", "alsoknownas", "variants"),
    "parent": ("parent", "broader", "parenttag", "parentname"),
    "replaced_by": ("replacedby", "isreplacedby", "replacement", "mergedinto"),
    "deprecated": ("deprecated", "retired", "obsolete"),
}
_COLUMN = {alias: field for field, aliases in COLUMN_NAMES.items() for alias in aliases}


def _column(heading: str) -> str | None:
    """The field a column heading names (``COLUMN_NAMES``), or None."""
    return _COLUMN.get(re.sub(r"[^0-9a-z]", "", heading.lower()))


def _known_columns() -> str:
    return "; ".join(f"{field}: {', '.join(aliases)}" for field, aliases in COLUMN_NAMES.items())


def read_tags(path: str | Path, on_error: OnError = "stop", known: Iterable[str] = ()) -> Parsed:
    """Read a tag repository from .tsv, .csv or .jsonl, checking its shape before anything is
    written (SKOS files: ``skos.read_vocabulary``, which reads either).

    Columns (or JSON keys) are recognised by their usual names (``COLUMN_NAMES``); a file without
    a header row is read by position: name, description, synonyms, parent. The whole file is
    refused (``LoadError``, whatever ``on_error``) when its header names no tag column or its
    hierarchy has a cycle. A line is a problem (refused, or skipped with ``on_error="skip"``)
    when it has no name, repeats a tag named earlier, or names a parent that is neither in the
    file nor among ``known`` (the tags already in the repository). A column that is not
    recognised is a warning that names it: its values are not read. A row with a ``replaced_by``
    tag, or marked ``deprecated``, is not a tag to load but a change (``Parsed.changes``): the tag
    is renamed or merged into its replacement, or retired (``KnowledgeBase.apply_tag_changes``)."""
    path = Path(path)
    parsed = Parsed()
    suffix = path.suffix.lower()
    rows: list[tuple[int, dict]] = []
    unknown: dict[str, int] = {}  # column or key llm4tag does not read → the line it was first seen on
    if suffix in (".jsonl", ".json"):
        for number, line in _decoded_lines(path, parsed):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("each line must be a JSON object")
            except ValueError as exc:
                parsed.problems.append(Problem(str(path), number, f"malformed JSON ({exc})"))
                continue
            row: dict = {}
            for key, value in obj.items():
                field = _column(str(key))
                if field is None:
                    unknown.setdefault(str(key), number)
                elif field not in row or not row[field]:
                    row[field] = value
            rows.append((number, row))
    elif suffix in (".tsv", ".csv", ".txt"):
        delimiter = "," if suffix == ".csv" else "\t"
        from .documents import allow_large_csv_fields

        allow_large_csv_fields()
        header: list[str | None] | None = None
        for number, text in _decoded_lines(path, parsed):
            try:  # one line, one row: a line the csv module refuses (a field over its size limit) is that line's problem
                cells = next(csv.reader([text], delimiter=delimiter), [])
            except csv.Error as exc:
                parsed.problems.append(Problem(str(path), number, f"unreadable {suffix[1:].upper()} row ({exc})"))
                continue
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                fields = [_column(c.strip()) for c in cells]
                if any(fields):  # a header row: every column is read by its name
                    if "name" not in fields:
                        raise LoadError(
                            f"the header row ({', '.join(c.strip() for c in cells)}) names no tag column; nothing was "
                            f"loaded. Call the column that holds the tag names 'tag' (recognised columns — "
                            f"{_known_columns()})",
                            str(path),
                            number,
                        )
                    header = []
                    for cell, field in zip(cells, fields):
                        if field is None or field in header:
                            unknown.setdefault(cell.strip() or f"column {len(header) + 1} (no heading)", number)
                            header.append(None)
                        else:
                            header.append(field)
                    continue
                header = ["name", "description", "synonyms", "parent"]
                if len(cells) > len(header):
                    parsed.warnings.append(
                        f"{path}: no header row, so columns are read by position (name, description, synonyms, "
                        f"parent); the {len(cells) - len(header)} columns after those were not read"
                    )
            rows.append((number, {f: c for f, c in zip(header, cells) if f is not None}))
    else:
        raise LoadError(f"unsupported tag repository format {suffix!r}; use .tsv, .csv, .jsonl or SKOS (.ttl, .rdf, .jsonld)", str(path))
    if unknown:
        names = ", ".join(f"'{c}'" for c in unknown)
        hint = (
            " — no description column was recognised, so no tag has a description; rename the column that holds them 'description'"
            if not any("description" in row for _, row in rows)
            else ""
        )
        parsed.warnings.append(
            f"{path}:{min(unknown.values())}: {'column' if suffix != '.jsonl' else 'key'}s not read: {names}"
            f"{hint} (recognised — {_known_columns()})"
        )

    seen: dict[str, int] = {}  # tag → its line
    for number, row in rows:
        try:
            name = row.get("name")
            if not isinstance(name, str) or not clean_text(name):
                raise ValueError("missing tag name (column 'tag' or 'name')")
            name = clean_text(valid_unicode(name, "the tag name"))
            description = clean_text(valid_unicode(str(row.get("description") or ""), "the description"))
            synonyms = _as_list(row.get("synonyms"), "synonyms")
            parent = clean_text(valid_unicode(str(row.get("parent") or ""), "the parent")) or None
            replaced_by = clean_text(valid_unicode(str(row.get("replaced_by") or ""), "the replacement")) or None
            retired = str(row.get("deprecated") or "").strip().lower() in ("true", "yes", "1", "y", "x")
            if name in seen:
                raise ValueError(f"tag {name!r} is already on line {seen[name]}; keep one line per tag (merge the two)")
            if replaced_by == name:
                raise ValueError(f"tag {name!r} is replaced by itself; name another tag or leave the replacement empty")
        except ValueError as exc:
            parsed.problems.append(Problem(str(path), number, str(exc)))
            continue
        seen[name] = number
        if replaced_by or retired:  # gone: not loaded as a tag; its history moves (or is retired) when the file loads
            parsed.changes.append((name, replaced_by))
            continue
        parsed.records.append(Tag(name, description, synonyms, parent))
    names = {t.name for t in parsed.records} | set(known)
    for name, replaced_by in list(parsed.changes):
        if replaced_by is not None and replaced_by not in names:
            parsed.problems.append(
                Problem(
                    str(path),
                    seen[name],
                    f"tag {name!r} is replaced by {replaced_by!r}, which is neither in "
                    "this file nor in the repository; add that tag or correct the name",
                )
            )
            parsed.changes.remove((name, replaced_by))
    _check_hierarchy(parsed, path, set(known), seen)
    parsed.problems.sort(key=lambda problem: problem.line or 0)
    return _finish(parsed, on_error, path, "tags")


def _check_hierarchy(parsed: Parsed, path: Path, known: set[str], lines: dict[str, int | None]) -> None:
    """Parents must exist (in the file or among ``known``): a line naming another is a problem and
    is left out; a cycle refuses the file. ``lines``: each tag's line."""
    names = {t.name for t in parsed.records}
    kept = []
    for tag in parsed.records:
        if tag.parent is not None and tag.parent not in names and tag.parent not in known:
            parsed.problems.append(
                Problem(
                    str(path),
                    lines[tag.name],
                    f"tag {tag.name!r} names the parent {tag.parent!r}, which is neither in this file nor in "
                    "the repository; add that tag or correct the parent",
                )
            )
            continue
        kept.append(tag)
    parsed.records = kept
    parent = {t.name: t.parent for t in kept if t.parent is not None}
    done: set[str] = set()
    for start in parent:
        trail: list[str] = []
        node: str | None = start
        while node is not None and node not in done and node not in trail:
            trail.append(node)
            node = parent.get(node)
        if node is not None and node in trail:
            cycle = trail[trail.index(node) :] + [node]
            numbers = [str(lines[n]) for n in cycle[:-1] if lines.get(n) is not None]
            where = f" (lines {', '.join(numbers)})" if numbers else ""
            raise LoadError(
                f"the hierarchy has a cycle: {' → '.join(cycle)}{where}; a tag cannot be its own ancestor. "
                "Correct the parents; nothing was loaded",
                str(path),
            )
        done.update(trail)


def read_samples(path: str | Path, on_error: OnError = "stop") -> Parsed:
    """Read annotated samples from JSONL (``text``, ``tags``, optional ``id``, ``incorrect_tags``)."""
    path = Path(path)
    parsed = Parsed()
    seen: dict[str, int] = {}
    for number, line in _decoded_lines(path, parsed):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("each line must be a JSON object")
            text = obj.get("text")
            if not isinstance(text, str) or not clean_text(text):
                raise ValueError("'text' is missing or empty")
            text = clean_text(valid_unicode(text, "'text'"))
            tags = _as_list(obj.get("tags"), "tags")
            incorrect = tuple(t for t in _as_list(obj.get("incorrect_tags"), "incorrect_tags") if t not in tags)
            if not tags and not incorrect:
                raise ValueError("no 'tags' (and no 'incorrect_tags'): an annotated sample needs at least one")
            raw_id = obj.get("id")
            if isinstance(raw_id, (dict, list, bool)):
                raise ValueError("'id' must be a string or a number")
            sample_id = clean_text(valid_unicode(str(raw_id), "'id'")) if raw_id not in (None, "") else content_id(text)
            if not sample_id:
                raise ValueError("'id' is only whitespace or control characters; give a real id or leave it out")
        except ValueError as exc:
            parsed.problems.append(Problem(str(path), number, f"malformed sample ({exc})"))
            continue
        if sample_id in seen:
            parsed.warnings.append(f"{path}:{number}: id {sample_id!r} repeats line {seen[sample_id]}; the later line wins")
            parsed.records = [r for r in parsed.records if r.id != sample_id]
        seen[sample_id] = number
        parsed.records.append(Sample(sample_id, text, tags, incorrect))
    return _finish(parsed, on_error, path, "samples")


def split_passages(text: str, max_chars: int = 800) -> list[str]:
    """Split a document into passages of whole paragraphs, each at most ``max_chars`` if possible."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    passages: list[str] = []
    current = ""
    for para in paragraphs:
        while len(para) > max_chars:  # a single huge paragraph: cut at a sentence or space
            cut = max(para.rfind(". ", 0, max_chars), para.rfind(" ", 0, max_chars))
            cut = cut + 1 if cut > max_chars // 2 else max_chars
            if current:
                passages.append(current)
                current = ""
            passages.append(para[:cut].strip())
            para = para[cut:].strip()
        if current and len(current) + len(para) + 2 > max_chars:
            passages.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        passages.append(current)
    return passages


def read_documents(paths: list[str | Path], on_error: OnError = "stop") -> Parsed:
    """Read domain documents into passages: .txt/.md here, PDF, HTML, DOCX and CSV through
    ``documents.read_file`` (the optional ``docs`` extra). Directories are searched recursively and
    files of other types in them ignored; a file of another type named on its own is refused.

    Every file is read before anything is returned: an unreadable, encrypted or empty file stops
    the load with the file named (``on_error="stop"``) or is listed and left out (``"skip"``).
    A passage's id is ``source#index``; the same file read again gives the same passages.
    """
    from .documents import SUPPORTED, TEXT_SUFFIXES, check_limits, check_passages, read_file, unsupported

    parsed = Parsed()
    files: list[tuple[Path, str]] = []  # (file, source): a file found in a directory is named by its path there
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in SUPPORTED and f.is_file())
            files.extend((f, f.relative_to(p).as_posix()) for f in found)
        elif p.is_file():
            files.append((p, p.name))
        else:
            raise LoadError("file or directory not found", str(p))
    by_source: dict[str, Path] = {}
    for f, source in files:
        earlier = by_source.setdefault(source, f)
        if earlier.resolve() != f.resolve():
            raise LoadError(
                f"both {earlier} and {f} would be stored as {source!r}, and one would replace the other; "
                "load their folder instead, or rename one",
                str(f),
            )
    if not files:
        raise LoadError(
            f"no document files found in the folder (load-docs reads {', '.join(SUPPORTED)}); nothing was loaded",
            str(paths[0]) if paths else None,
        )
    for f, source in dict((source, (f, source)) for f, source in files).values():  # a file named twice is read once
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            shown = str(f).encode("utf-8", "backslashreplace").decode("utf-8")
            parsed.problems.append(
                Problem(shown, None, "the file name is not valid UTF-8 (it would be the passages' source); rename the file")
            )
            continue
        if f.suffix.lower() not in SUPPORTED:
            parsed.problems.append(Problem(str(f), None, unsupported(f)))
            continue
        if f.suffix.lower() in TEXT_SUFFIXES:
            try:
                check_limits(f)
                text = f.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = f.read_bytes()[: exc.start].count(b"\n") + 1
                parsed.problems.append(Problem(str(f), line, f"not valid UTF-8 ({exc.reason}); re-save the file as UTF-8"))
                continue
            except LoadError as exc:
                parsed.problems.append(Problem(str(f), exc.line, exc.reason))
                continue
            chunks = [(passage, None, None) for passage in split_passages(clean_text(text))]
            try:
                check_passages(f, len(chunks))
            except LoadError as exc:
                parsed.problems.append(Problem(str(f), exc.line, exc.reason))
                continue
        else:
            try:
                chunks = [(clean_text(c.text), c.page, c.row) for c in read_file(f)]
            except LoadError as exc:
                parsed.problems.append(Problem(str(f), exc.line, exc.reason))
                continue
        chunks = [c for c in chunks if c[0]]
        if not chunks:
            parsed.problems.append(Problem(str(f), None, "no document text found in the file (it is empty)"))
            continue
        for index, (text, page, row) in enumerate(chunks):
            parsed.records.append(Passage(f"{source}#{index}", source, text, page=page, row=row, index=index))
    if parsed.problems and on_error == "stop":
        first = parsed.problems[0]
        more = f" (and {len(parsed.problems) - 1} more unreadable files)" if len(parsed.problems) > 1 else ""
        raise LoadError(
            f"{first.message}{more}; nothing was loaded. Fix or remove the file, or load with --on-error skip", first.path, first.line
        )
    if not parsed.records:
        raise LoadError("no document text found in the files; nothing was loaded", str(paths[0]) if paths else None)
    return parsed
