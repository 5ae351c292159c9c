"""Domain documents in the formats people keep them in: PDF, HTML, Word (.docx) and CSV.

``read_file`` is the one place that knows the loader library: langchain-community's document
loaders (PyPDFLoader, BSHTMLLoader, Docx2txtLoader, CSVLoader; never the Unstructured loaders,
which fetch models at run time) and langchain-text-splitters' RecursiveCharacterTextSplitter.
They are the optional ``docs`` extra (``pip install 'llm4tag[docs]'``), imported only when such a
file is read, never at ``import knowledge_base``; swapping the library means changing this
function alone. Plain text and Markdown do not come through here: ``loaders.read_documents``
reads them itself, so their passages are the same whether or not the extra is installed.

Every failure is a ``LoadError`` naming the file: an unsupported type, an encrypted, damaged or
empty file, a file with no text in it, or the extra not installed.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import LoadError

KINDS = {".pdf": "PDF", ".html": "HTML", ".htm": "HTML", ".docx": "Word", ".csv": "CSV"}
TEXT_SUFFIXES = (".md", ".markdown", ".txt")
SUPPORTED = TEXT_SUFFIXES + tuple(KINDS)
EXTRA = "pip install 'llm4tag[docs]'"
_SAVE_AS = {".doc": ".docx", ".rtf": ".docx", ".odt": ".docx", ".xls": ".csv", ".xlsx": ".csv", ".ods": ".csv"}
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


@dataclass(frozen=True)
class Chunk:
    """One passage of a file as read: its text and where it sits."""

    text: str
    page: int | None = None  # PDF page, from 1
    row: int | None = None  # CSV data row, from 1 (the header line is not a row)


CSV_FIELD_BYTES = 64 * 2**20  # the largest CSV cell read (the csv module's own limit, 128 KiB, refuses a long description)


def allow_large_csv_fields() -> None:
    """Raise the csv module's per-field limit (process-wide) to ``CSV_FIELD_BYTES`` before a CSV is read."""
    import csv

    if csv.field_size_limit() < CSV_FIELD_BYTES:
        csv.field_size_limit(CSV_FIELD_BYTES)


def unsupported(path: Path) -> str:
    """Why ``path`` cannot be loaded as a document, in words."""
    suffix = path.suffix.lower()
    kinds = ", ".join(SUPPORTED)
    if suffix in _SAVE_AS:
        return f"{suffix} files are not supported; save it as {_SAVE_AS[suffix]} (load-docs reads {kinds})"
    return f"unsupported file type {suffix or '(no extension)'!r}; load-docs reads {kinds}"


def _tidy(text: str) -> str:
    """Trim every line, collapse runs of spaces and of blank lines (an HTML page read with a newline
    between its elements, a PDF page's layout), so the splitter sees paragraphs."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def check_limits(path: Path) -> None:
    """Refuse, before reading it, a file beyond ``load-docs``' limits (``LLM4TAG_DOC_MAX_BYTES``,
    ``LLM4TAG_DOC_MAX_PAGES``): its size, what a .docx unpacks to (a zip bomb), a PDF's pages."""
    from .settings import settings

    limits = settings()
    size = path.stat().st_size
    if size > limits.doc_max_bytes:
        raise LoadError(
            f"the file is {size:,} bytes, over load-docs' limit of {limits.doc_max_bytes:,}; split it, or raise LLM4TAG_DOC_MAX_BYTES",
            str(path),
        )
    suffix = path.suffix.lower()
    if suffix == ".docx":
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError):
            return  # the loader names what is wrong with it
        if unpacked > limits.doc_max_bytes:
            raise LoadError(
                f"the .docx unpacks to {unpacked:,} bytes, over load-docs' limit of {limits.doc_max_bytes:,} "
                "(a file this large is not a normal document); raise LLM4TAG_DOC_MAX_BYTES if it is",
                str(path),
            )
    elif suffix == ".pdf":
        try:
            from pypdf import PdfReader

            pages = len(PdfReader(path, strict=False).pages)
        except Exception:  # noqa: BLE001 - encrypted or damaged: the loader names what is wrong with it
            return
        if pages > limits.doc_max_pages:
            raise LoadError(
                f"the PDF has {pages:,} pages, over load-docs' limit of {limits.doc_max_pages:,}; split it, or raise LLM4TAG_DOC_MAX_PAGES",
                str(path),
            )


def check_passages(path: Path, count: int) -> None:
    from .settings import settings

    limit = settings().doc_max_passages
    if count > limit:
        raise LoadError(
            f"the file gives {count:,} passages, over load-docs' limit of {limit:,}; split it, or raise LLM4TAG_DOC_MAX_PASSAGES", str(path)
        )


def read_file(path: str | Path, max_chars: int = 800) -> list[Chunk]:
    """The passages of a PDF, HTML, DOCX or CSV file, each at most ``max_chars`` characters: a PDF
    page by page, a CSV row by row (``column: value`` lines), an HTML page or a Word file whole."""
    path = Path(path)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise LoadError(unsupported(path), str(path))
    try:
        with warnings.catch_warnings():
            # langchain-community announces on import that it is being wound down (a DeprecationWarning);
            # the loaders used here are plain file readers, and the notice would only confuse a person
            warnings.filterwarnings("ignore", message=r"`?langchain-community`? is being sunset", category=DeprecationWarning)
            from langchain_community.document_loaders import BSHTMLLoader, CSVLoader, Docx2txtLoader, PyPDFLoader
            from langchain_text_splitters import RecursiveCharacterTextSplitter
        if path.stat().st_size == 0:
            raise LoadError("the file is empty (0 bytes): no document text found", str(path))
        check_limits(path)
        if kind == "PDF":
            loader = PyPDFLoader(str(path), mode="page")
        elif kind == "HTML":
            loader = BSHTMLLoader(str(path), open_encoding="utf-8", bs_kwargs={"features": "html.parser"}, get_text_separator="\n")
        elif kind == "Word":
            loader = Docx2txtLoader(str(path))
        else:
            allow_large_csv_fields()
            loader = CSVLoader(str(path), encoding="utf-8-sig")
    except ImportError as exc:  # the extra, or the one package a loader needs (pypdf, bs4, docx2txt), is missing
        raise LoadError(_missing(kind, exc), str(path)) from None
    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # pypdf logs a warning for every small flaw it repairs; a real failure raises
    try:
        documents = loader.load()
    except ImportError as exc:
        raise LoadError(_missing(kind, exc), str(path)) from None
    except Exception as exc:  # noqa: BLE001 — each library fails its own way on a bad file; all are named here
        raise LoadError(_why_unreadable(kind, exc), str(path)) from None
    finally:
        pypdf_log.setLevel(level)
    splitter = RecursiveCharacterTextSplitter(chunk_size=max_chars, chunk_overlap=0)
    chunks: list[Chunk] = []
    for doc in documents:
        text = _tidy(doc.page_content)
        if kind == "CSV" and not re.sub(r"(?m)^[^:\n]*:", "", text).strip():
            continue  # a row of empty cells
        page = doc.metadata.get("page") if kind == "PDF" else None
        row = doc.metadata.get("row") if kind == "CSV" else None
        for piece in splitter.split_text(text):
            if piece.strip():
                chunks.append(Chunk(piece.strip(), None if page is None else int(page) + 1, None if row is None else int(row) + 1))
    check_passages(path, len(chunks))
    if not chunks:
        pages = f"{len(documents)} page{'s' if len(documents) != 1 else ''}"
        hint = {
            "PDF": f" ({pages} without a text layer: a scanned PDF needs OCR first)" if documents else "",
            "CSV": " (only a header, or rows of empty cells)",
        }.get(kind, "")
        raise LoadError(f"no document text found in the {kind} file{hint}", str(path))
    return chunks


def _missing(kind: str, exc: ImportError) -> str:
    return f"reading {kind} files needs the optional document loaders ({exc.name or exc} is not installed): {EXTRA}"


def _why_unreadable(kind: str, exc: Exception) -> str:
    name = type(exc).__name__
    detail = str(exc).strip() or name
    if kind == "PDF" and ("NotDecrypted" in name or "Password" in name or "encrypted" in detail.lower()):
        return "the PDF is encrypted (password-protected); remove the password (e.g. qpdf --decrypt) and load it again"
    if kind == "PDF" and "Dependency" in name:  # AES encryption without the cryptography package
        return f"the PDF is encrypted and cannot be opened ({detail})"
    if isinstance(exc, UnicodeDecodeError) or isinstance(exc.__cause__, UnicodeDecodeError):
        return "not valid UTF-8; re-save the file as UTF-8"
    if kind == "Word" and name in ("BadZipFile", "KeyError"):
        return "not a readable .docx file (damaged, or not a Word document)"
    return f"not a readable {kind} file (damaged, or not {kind} at all: {name}: {detail[:200]})"
