"""Domain documents of every common format: PDF, HTML, DOCX, CSV, Markdown and text files the
tests write themselves, read into passages with their source, page and row, stored in a copy of
the small knowledge base (real Chroma, real MiniLM) and retrieved for contents that need them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from knowledge_base import KnowledgeBase, LoadError, Passage, read_documents
from knowledge_base.documents import read_file

PDF_PAGES = [
    "Release notes. This manual describes how the packages in the archive are tagged.",
    "Optical character recognition. Programs that turn scanned images of printed pages into editable, "
    "searchable text are OCR tools; tag them as working with images and with text.",
    "Appendix. Contact the maintainers on the mailing list for questions about the manual.",
]
HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Audio guide</title>
<style>body { font-family: sans-serif; } .secret-style { color: red; }</style>
<script>var trackingPixel = "should-never-be-a-passage";</script>
</head>
<body><nav><a href="/">Home</a></nav>
<h1>Music players</h1><p>Programs that <b>play</b> MP3, Ogg Vorbis and FLAC <i>audio</i> files,
manage playlists and stream internet radio are sound players; tag them with the sound works-with tag.</p>
<ul><li>Playlist</li><li>Equalizer</li></ul>
</body></html>
"""
DOCX_PARAGRAPHS = [
    "Electronic mail",
    "Email clients read, write and file messages over IMAP, POP3 and SMTP; tag them as mail user agents.",
]
CSV_ROWS = [
    ("topic", "rule"),
    ("games", "Puzzle and arcade games such as Tetris clones and sudoku solvers are tagged as games."),
    ("firewall", "Packet filters and firewall front-ends that configure iptables rules are network security tools."),
    ("", ""),
    ("science", "Programs that plot astronomical charts of the night sky and track planets are astronomy software."),
]
MARKDOWN = "# Version control\n\nGit, Subversion and Mercurial clients track the history of source code; tag them as revision control.\n"
TEXT = "Text editors such as Vim and Emacs edit plain text and source code files with syntax highlighting.\n"


def write_pdf(path: Path, pages: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def write_docx(path: Path, paragraphs: list[str], table: list[tuple[str, str]] = ()) -> Path:
    import docx

    document = docx.Document()
    document.add_heading(paragraphs[0], level=1)
    for text in paragraphs[1:]:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=2)
        for r, cells in enumerate(table):
            for c, text in enumerate(cells):
                grid.cell(r, c).text = text
    document.save(str(path))
    return path


def encrypt_pdf(source: Path, target: Path, user_password: str) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(source))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    with open(target, "wb") as fh:
        writer.write(fh)
    return target


def write_library(root: Path) -> Path:
    """One document of each format, in nested folders."""
    (root / "web").mkdir(parents=True)
    (root / "office" / "deep").mkdir(parents=True)
    write_pdf(root / "manual.pdf", PDF_PAGES)
    (root / "web" / "audio.html").write_text(HTML_PAGE, encoding="utf-8")
    write_docx(root / "office" / "mail.docx", DOCX_PARAGRAPHS, table=[("Protocol", "Port"), ("IMAP", "143")])
    (root / "office" / "deep" / "rules.csv").write_text(
        "\n".join(",".join(f'"{c}"' for c in row) for row in CSV_ROWS) + "\n", encoding="utf-8"
    )
    (root / "vcs.md").write_text(MARKDOWN, encoding="utf-8")
    (root / "editors.txt").write_text(TEXT, encoding="utf-8")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff")  # not a document: ignored in a folder
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return write_library(tmp_path_factory.mktemp("library") / "docs")


@pytest.fixture(scope="module")
def docs_kb(library, small_kb_dir, tmp_path_factory) -> KnowledgeBase:
    """A copy of the small knowledge base with the library loaded (module scope: read-only use)."""
    target = tmp_path_factory.mktemp("docs-kb") / "kb"
    shutil.copytree(small_kb_dir, target, ignore=shutil.ignore_patterns(".write.lock"))
    kb = KnowledgeBase(target)
    kb.add_documents(read_documents([library]).records)
    return kb


def by_source(passages: list[Passage]) -> dict[str, list[Passage]]:
    out: dict[str, list[Passage]] = {}
    for p in passages:
        out.setdefault(p.source, []).append(p)
    return out


def stored(kb: KnowledgeBase) -> dict[str, tuple[str, dict]]:
    got = kb.collection("documents").get(include=["documents", "metadatas"])
    return {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


# ---- reading ------------------------------------------------------------------------------


def test_every_format_reads_into_passages_with_source_page_and_row(library):
    parsed = read_documents([library])
    assert parsed.problems == []
    files = by_source(parsed.records)
    assert sorted(files) == ["editors.txt", "manual.pdf", "office/deep/rules.csv", "office/mail.docx", "vcs.md", "web/audio.html"]
    for source, passages in files.items():  # ids are source#index, numbered from 0 within each file
        assert [p.id for p in passages] == [f"{source}#{i}" for i in range(len(passages))]
        assert [p.index for p in passages] == list(range(len(passages)))
        assert all(0 < len(p.text) <= 800 for p in passages)

    pdf = files["manual.pdf"]
    assert [p.page for p in pdf] == [1, 2, 3] and all(p.row is None for p in pdf)
    assert "Optical character recognition" in pdf[1].text and "scanned images" in pdf[1].text

    html = " ".join(p.text for p in files["web/audio.html"])
    assert "Music players\nPrograms that" in html  # a newline between elements, not "Music playersPrograms"
    assert "play MP3" in html.replace("\n", " ")
    for hidden in ("trackingPixel", "should-never-be-a-passage", "secret-style", "font-family"):
        assert hidden not in html  # scripts and styles are not text
    assert all(p.page is None and p.row is None for p in files["web/audio.html"])

    word = " ".join(p.text for p in files["office/mail.docx"])
    assert "Electronic mail" in word and "IMAP, POP3 and SMTP" in word and "143" in word

    rows = files["office/deep/rules.csv"]
    assert [p.row for p in rows] == [1, 2, 4]  # the row of empty cells is left out, the others keep their number
    assert rows[1].text.startswith("topic: firewall\nrule: Packet filters")

    assert [p.text for p in files["vcs.md"]] == [MARKDOWN.strip()]
    assert [(p.text, p.page, p.row) for p in files["editors.txt"]] == [(TEXT.strip(), None, None)]


def test_a_long_page_is_split_into_passages_of_the_page(tmp_path):
    sentence = "Each paragraph of this long page explains another detail of the tagging rules for graphics software. "
    pdf = write_pdf(tmp_path / "long.pdf", ["Short first page.", sentence * 30])
    passages = read_documents([pdf]).records
    assert passages[0].page == 1 and len(passages) >= 4
    assert all(p.page == 2 and len(p.text) <= 800 for p in passages[1:])
    assert " ".join(" ".join(p.text.split()) for p in passages[1:]).count("graphics software") == 30  # nothing lost or doubled


def test_an_owner_locked_pdf_without_a_user_password_loads(tmp_path):
    plain = write_pdf(tmp_path / "plain.pdf", PDF_PAGES)
    locked = encrypt_pdf(plain, tmp_path / "locked.pdf", user_password="")
    assert [p.text for p in read_documents([locked]).records] == [p.text for p in read_documents([plain]).records]


# ---- errors -------------------------------------------------------------------------------


def test_unreadable_files_are_refused_with_the_file_named(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", PDF_PAGES)
    cases = {
        encrypt_pdf(good, tmp_path / "secret.pdf", user_password="s3cret"): "the PDF is encrypted",
        tmp_path / "broken.pdf": "not a readable PDF file",
        tmp_path / "empty.pdf": "the file is empty",
        tmp_path / "blank.pdf": "without a text layer",
        tmp_path / "fake.docx": "not a readable .docx file",
        tmp_path / "header.csv": "no document text found in the CSV file",
        tmp_path / "latin1.csv": "not valid UTF-8",
        tmp_path / "sheet.xlsx": "save it as .csv",
        tmp_path / "old.doc": "save it as .docx",
        tmp_path / "photo.png": "unsupported file type '.png'",
        tmp_path / "nothing.md": "no document text found",
    }
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    (tmp_path / "empty.pdf").write_bytes(b"")
    write_pdf(tmp_path / "blank.pdf", [""])
    (tmp_path / "fake.docx").write_text("not a zip archive", encoding="utf-8")
    (tmp_path / "header.csv").write_text("topic,rule\n", encoding="utf-8")
    (tmp_path / "latin1.csv").write_bytes("topic,rule\ncaf\xe9,r\xe8gle\n".encode("latin-1"))
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "nothing.md").write_text("\n   \n", encoding="utf-8")
    for path, message in cases.items():
        with pytest.raises(LoadError, match=message) as info:
            read_documents([path])
        assert info.value.path == str(path) and str(path) in str(info.value), path
        assert "nothing was loaded" in str(info.value)


def test_one_bad_file_stops_the_load_before_anything_is_written(writable_kb, library, tmp_path):
    from ui.cli import main

    folder = tmp_path / "mixed"
    shutil.copytree(library, folder)
    encrypt_pdf(library / "manual.pdf", folder / "zz-secret.pdf", user_password="s3cret")
    before = stored(writable_kb)
    runner = CliRunner()
    result = runner.invoke(main, ["--kb", str(writable_kb.directory), "kb", "load-docs", str(folder)])
    assert result.exit_code != 0
    assert f"{folder / 'zz-secret.pdf'}: the PDF is encrypted" in result.output and "nothing was loaded" in result.output
    assert stored(KnowledgeBase(writable_kb.directory)) == before  # not one passage of the good files

    result = runner.invoke(main, ["--kb", str(writable_kb.directory), "kb", "load-docs", str(folder), "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert f"skipped {folder / 'zz-secret.pdf'}: the PDF is encrypted" in result.output
    sources = {m["source"] for _, m in stored(KnowledgeBase(writable_kb.directory)).values()}
    assert {"manual.pdf", "web/audio.html", "office/mail.docx", "office/deep/rules.csv", "vcs.md", "editors.txt"} <= sources
    assert "zz-secret.pdf" not in sources


def test_two_files_that_would_share_a_source_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_pdf(tmp_path / "a" / "manual.pdf", ["Alpha."])
    second = write_pdf(tmp_path / "b" / "manual.pdf", ["Beta."])
    with pytest.raises(LoadError, match="would be stored as 'manual.pdf'"):
        read_documents([first, second])
    assert len(read_documents([first, first]).records) == 1  # the same file named twice is read once


def test_without_the_docs_extra_text_still_loads_and_pdf_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain_community.document_loaders", None)  # as if not installed
    (tmp_path / "rules.md").write_text(MARKDOWN, encoding="utf-8")
    pdf = write_pdf(tmp_path / "manual.pdf", PDF_PAGES)
    assert [p.text for p in read_documents([tmp_path / "rules.md"]).records] == [MARKDOWN.strip()]
    with pytest.raises(LoadError, match=r"needs the optional document loaders .*pip install 'llm4tag\[docs\]'") as info:
        read_documents([tmp_path])
    assert info.value.path == str(pdf)


def test_the_loader_library_is_imported_only_to_read_such_a_file_and_warns_nothing(tmp_path):
    pdf = write_pdf(tmp_path / "manual.pdf", PDF_PAGES)
    code = (
        "import sys, warnings\n"
        "import knowledge_base\n"
        "from knowledge_base import read_documents\n"
        "assert not [m for m in sys.modules if m.startswith(('langchain_community', 'langchain_text_splitters', 'pypdf'))]\n"
        "warnings.simplefilter('error')\n"  # any warning while reading, langchain-community's wind-down notice included, fails
        f"passages = read_documents([{str(pdf)!r}]).records\n"
        "assert [p.page for p in passages] == [1, 2, 3]\n"
        "assert 'langchain_community' in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# ---- the knowledge base -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, source, page, row",
    [
        ("ocrfeeder: turns scanned images of printed documents into searchable text", "manual.pdf", 2, None),
        ("A music player for MP3, Ogg and FLAC audio files with playlists and internet radio", "web/audio.html", None, None),
        ("An email client that reads mail over IMAP and sends messages with SMTP", "office/mail.docx", None, None),
        ("A frontend to configure iptables packet filter firewall rules", "office/deep/rules.csv", None, 2),
        ("Planetarium program that shows star charts and planets of the night sky", "office/deep/rules.csv", None, 4),
        ("A graphical client for the Git and Mercurial version control systems", "vcs.md", None, None),
    ],
)
def test_passages_are_retrieved_for_a_content_that_needs_them(docs_kb, content, source, page, row):
    vector, _ = docs_kb.encoder.encode_one(content)
    best = docs_kb.search_documents(vector, 3)[0]
    assert (best.metadata["source"], best.metadata.get("page"), best.metadata.get("row")) == (source, page, row), best
    assert best.id.startswith(f"{source}#") and best.metadata["index"] == int(best.id.rsplit("#", 1)[1])


def test_the_knowledge_node_the_prompt_and_the_page_show_file_and_page(docs_kb):
    from agent.context import Context
    from agent.nodes.knowledge import retrieve_knowledge
    from prompts.fill import format_knowledge
    from ui.render import render_knowledge

    content = "ocrfeeder: turns scanned images of printed documents into searchable text"
    runtime = SimpleNamespace(context=Context(kb_dir=str(docs_kb.directory), max_snippets=3))
    update = retrieve_knowledge({"text": content}, runtime)
    first = update["knowledge"][0]
    assert {k: first[k] for k in ("kind", "source", "id", "page", "index")} == {
        "kind": "document",
        "source": "manual.pdf",
        "id": "manual.pdf#1",
        "page": 2,
        "index": 1,
    }
    assert "scanned images" in first["text"] and first["similarity"] > 0.3
    assert format_knowledge(update["knowledge"]).startswith("[manual.pdf p. 2] Optical character recognition")
    title, body = render_knowledge(update)
    assert title == f"Knowledge · {len(update['knowledge'])} snippets"
    assert "**manual.pdf p. 2** (document, passage 2, similarity" in body


def test_passages_stored_with_a_source_only_still_show(writable_kb):
    """A knowledge base from before pages and rows: its passages have only a source."""
    from agent.nodes.knowledge import document_snippet
    from prompts.fill import format_knowledge
    from ui.render import render_knowledge

    text = "Legacy rule: screen readers and magnifiers are accessibility software."
    vector, _ = writable_kb.encoder.encode_one(text)
    writable_kb.collection("documents").upsert(
        ids=["legacy.md#0"], embeddings=vector[None, :], documents=[text], metadatas=[{"source": "legacy.md"}]
    )
    hit = writable_kb.search_documents(vector, 1)[0]
    snippet = document_snippet(hit)
    assert {k: snippet[k] for k in ("source", "id", "text")} == {"source": "legacy.md", "id": "legacy.md#0", "text": text}
    assert "page" not in snippet and "index" not in snippet
    assert format_knowledge([snippet]) == f"[legacy.md] {text}"
    assert "**legacy.md** (document, similarity" in render_knowledge({"knowledge": [snippet]})[1]
    row = document_snippet(
        SimpleNamespace(id="t.csv#3", text="topic: a", similarity=0.5, metadata={"source": "t.csv", "row": 4, "index": 3})
    )
    assert format_knowledge([row]) == "[t.csv row 4] topic: a"


def test_reloading_the_same_files_changes_nothing(writable_kb, library):
    from ui.cli import main

    first = writable_kb.add_documents(read_documents([library]).records)
    assert first.added > 6 and first.updated == 0
    before = stored(writable_kb)
    journal = (writable_kb.directory / "graph.journal").stat().st_size if (writable_kb.directory / "graph.journal").exists() else 0
    again = writable_kb.add_documents(read_documents([library]).records)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, first.added)
    assert stored(writable_kb) == before
    now = (writable_kb.directory / "graph.journal").stat().st_size if (writable_kb.directory / "graph.journal").exists() else 0
    assert now == journal  # nothing written, not even the "documents changed" mark
    result = CliRunner().invoke(main, ["--kb", str(writable_kb.directory), "kb", "load-docs", str(library)])
    assert result.exit_code == 0, result.output
    assert f"0 added, 0 updated, {first.added} unchanged" in result.output
    assert stored(KnowledgeBase(writable_kb.directory)) == before


def test_a_changed_file_replaces_its_passages_also_when_it_shrinks(writable_kb, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = write_pdf(folder / "manual.pdf", PDF_PAGES)
    (folder / "vcs.md").write_text(MARKDOWN, encoding="utf-8")
    writable_kb.add_documents(read_documents([folder]).records)
    ids = lambda: sorted(i for i, (_, m) in stored(writable_kb).items() if m["source"] == "manual.pdf")  # noqa: E731
    assert ids() == ["manual.pdf#0", "manual.pdf#1", "manual.pdf#2"]
    vcs_before = {i: v for i, v in stored(writable_kb).items() if i.startswith("vcs.md")}

    write_pdf(pdf, [PDF_PAGES[0], "Scanner software. Programs that drive flatbed scanners acquire images through SANE."])
    report = writable_kb.add_documents(read_documents([folder]).records)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 2, 1)  # page 1 and vcs.md as they were
    assert ids() == ["manual.pdf#0", "manual.pdf#1"]
    texts = {i: d for i, (d, _) in stored(writable_kb).items()}
    assert "flatbed scanners" in texts["manual.pdf#1"] and not any("Optical character" in t for t in texts.values())
    assert {i: v for i, v in stored(writable_kb).items() if i.startswith("vcs.md")} == vcs_before
    vector, _ = writable_kb.encoder.encode_one("drive a flatbed scanner to acquire images")
    best = writable_kb.search_documents(vector, 1)[0]
    assert (best.id, best.metadata["page"]) == ("manual.pdf#1", 2)

    write_pdf(pdf, ["Only one page is left."])
    report = writable_kb.add_documents(read_documents([pdf]).records)
    assert (report.added, report.updated, report.removed) == (0, 1, 1)
    assert ids() == ["manual.pdf#0"] and stored(writable_kb)["manual.pdf#0"][0] == "Only one page is left."
    assert writable_kb.stats()["document_passages"] == len(stored(writable_kb))


def test_read_file_is_the_one_place_that_reads_other_formats(library):
    chunks = read_file(library / "manual.pdf")
    assert [(c.page, c.row) for c in chunks] == [(1, None), (2, None), (3, None)]
    with pytest.raises(LoadError, match="unsupported file type"):
        read_file(library / "vcs.md")  # text and Markdown are read by loaders.read_documents itself


def test_load_docs_has_limits_on_bytes_unpacked_size_pages_and_passages(tmp_path, monkeypatch):
    """Issue 31 (9): a 40,000-page PDF ran past 120 s, a 585 KB DOCX of 200 MB XML reached 2.2 GB."""
    import zipfile

    from pypdf import PdfWriter

    monkeypatch.setenv("LLM4TAG_DOC_MAX_BYTES", str(2**20))
    monkeypatch.setenv("LLM4TAG_DOC_MAX_PAGES", "3")
    monkeypatch.setenv("LLM4TAG_DOC_MAX_PASSAGES", "5")
    big = tmp_path / "big.md"
    big.write_text("word " * 300_000, encoding="utf-8")
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document>" + " " * (3 * 2**20) + "</w:document>")
    assert bomb.stat().st_size < 100_000
    pdf = tmp_path / "many.pdf"
    writer = PdfWriter()
    for _ in range(4):
        writer.add_blank_page(width=200, height=200)
    with open(pdf, "wb") as f:
        writer.write(f)
    many = tmp_path / "many.md"
    many.write_text("\n\n".join(f"Paragraph {i}. " + "text " * 150 for i in range(10)), encoding="utf-8")
    for path, said in (
        (big, "over load-docs' limit of 1,048,576; split it, or raise LLM4TAG_DOC_MAX_BYTES"),
        (bomb, "unpacks to"),
        (pdf, "4 pages, over load-docs' limit of 3"),
        (many, "passages, over load-docs' limit of 5"),
    ):
        with pytest.raises(LoadError) as refused:
            read_documents([path])
        assert said in str(refused.value) and path.name in str(refused.value), str(refused.value)
    ok = tmp_path / "ok.md"
    ok.write_text("A short guide to packaging.", encoding="utf-8")
    loaded = read_documents([tmp_path], on_error="skip")
    assert [p.source for p in loaded.records] == ["ok.md"] and len(loaded.problems) == 4


def test_a_file_name_that_is_not_utf8_is_named_and_skipped_not_fatal(tmp_path):
    """Issue 31 (9): one file with a non-UTF-8 name broke the whole folder, no file named, even with skip."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("A guide to package tags.", encoding="utf-8")
    bad = os.path.join(os.fsencode(folder), b"bad\xff.md")
    with open(bad, "wb") as f:
        f.write(b"Some text in a badly named file.")
    loaded = read_documents([folder], on_error="skip")
    assert [p.source for p in loaded.records] == ["good.md"]
    assert len(loaded.problems) == 1 and "not valid UTF-8" in loaded.problems[0].message and "bad" in loaded.problems[0].path
    with pytest.raises(LoadError, match="rename the file"):
        read_documents([folder])
