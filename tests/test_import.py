"""Reading reports in every format, importing them, versions, bad input, and the browsing commands.

Real files (docx and PDF are generated here with python-docx and pypdf), a real SQLite catalogue,
and the real CLI entry point.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from evarchive import cli
from evarchive.archive import Archive
from evarchive.errors import InputError
from evarchive.extract import segment
from evarchive.reports import import_report, parse_report, read_report_file

DATA = Path(__file__).parent / "data"
SEED = DATA / "seed_report.txt"


def claims_of(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(claim text with white space collapsed, [(url, via)]) for a report file."""
    claims = segment(parse_report(read_report_file(path)))
    return [(" ".join(c.text.split()), [(x.url, x.via) for x in c.citations]) for c in claims]


def run(*args: str) -> int:
    return cli.main([str(a) for a in args])


def snapshot(archive_dir: Path) -> dict[str, Any]:
    """Row counts of every table and the custody log head: equal snapshots, untouched catalogue."""
    archive = Archive.open(archive_dir)
    try:
        counts = {t: archive.db.execute(f"SELECT COUNT(*) FROM [{t}]").fetchone()[0]
                  for t in archive.db.table_names()}
        head = archive.db.execute("SELECT MAX(seq), MAX(entry_hash) FROM custody_log").fetchone()
        return {"counts": counts, "head": head}
    finally:
        archive.close()


# --------------------------------------------------------------------------- document makers

def make_docx(path: Path) -> Path:
    """A Word report with a bare URL, a hyperlink, a field-code link, a table, a footnote and an endnote."""
    import docx
    from docx.opc.constants import CONTENT_TYPE as CT
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    document = docx.Document()
    document.core_properties.title = "Word report"
    document.add_heading("Findings", level=1)
    document.add_paragraph("A bare claim cites https://example.org/docx-bare.")

    p = document.add_paragraph("Officials confirmed the figures. The ministry ")
    rid = p.part.relate_to("https://example.org/docx-statement", RT.HYPERLINK, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), rid)
    run_el = OxmlElement("w:r")
    text = OxmlElement("w:t")
    text.text = "said so"
    run_el.append(text)
    link.append(run_el)
    p._p.append(link)
    p.add_run(" in a statement.")

    p = document.add_paragraph("Expulsions rose sharply.")
    _note_reference(p, "footnoteReference", "1")
    p.add_run(" Nobody appealed.")
    _note_reference(p, "endnoteReference", "1")

    p = document.add_paragraph("The field-coded source is ")
    for kind, content in (("begin", None), ("instr", ' HYPERLINK "https://example.org/docx-field" \\o "tip" '),
                          ("separate", None), ("text", "this page"), ("end", None)):
        r = p.add_run()
        if kind == "instr":
            instr = OxmlElement("w:instrText")
            instr.text = content
            r._r.append(instr)
        elif kind == "text":
            r.text = content
        else:
            char = OxmlElement("w:fldChar")
            char.set(qn("w:fldCharType"), kind)
            r._r.append(char)
    p.add_run(".")

    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "A table cell claim."
    table.cell(0, 1).text = "https://example.org/docx-cell"

    document.add_paragraph("Own-line claim.")
    document.add_paragraph("https://example.org/docx-own-line")

    for reltype, name, ctype, tag in ((RT.FOOTNOTES, "footnotes", CT.WML_FOOTNOTES, "footnote"),
                                      (RT.ENDNOTES, "endnotes", CT.WML_ENDNOTES, "endnote")):
        part = Part(PackURI(f"/word/{name}.xml"), ctype, b"", document.part.package)
        note_rid = part.relate_to(f"https://example.org/docx-{tag}-link", RT.HYPERLINK, is_external=True)
        part._blob = _notes_xml(tag, note_rid)
        document.part.relate_to(part, reltype)
    document.save(str(path))
    return path


def _note_reference(paragraph: Any, tag: str, note_id: str) -> None:
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    r = paragraph.add_run()
    ref = OxmlElement(f"w:{tag}")
    ref.set(qn("w:id"), note_id)
    r._r.append(ref)


def _notes_xml(tag: str, rid: str) -> bytes:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    r = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<w:{tag}s xmlns:w="{w}" xmlns:r="{r}">'
            f'<w:{tag} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{tag}>'
            f'<w:{tag} w:type="continuationSeparator" w:id="0">'
            f'<w:p><w:r><w:continuationSeparator/></w:r></w:p></w:{tag}>'
            f'<w:{tag} w:id="1"><w:p><w:r>'
            f'<w:t xml:space="preserve">See https://example.org/docx-{tag}-bare and </w:t></w:r>'
            f'<w:hyperlink r:id="{rid}"><w:r><w:t>the report</w:t></w:r></w:hyperlink></w:p></w:{tag}>'
            f'</w:{tag}s>').encode()


def _pdf_escape(text: str) -> bytes:
    return text.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(path: Path, pages: list[list[tuple[float, float, float, str]] | bytes],
             links: list[tuple[int, tuple[float, float, float, float], str]] = (),
             user_password: str | None = None) -> Path:
    """A PDF with Helvetica text pieces ``(x, y, size, text)`` (or a raw content stream) per page,
    and URI link annotations."""
    from pypdf import PdfWriter
    from pypdf.annotations import Link as LinkAnnotation
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"), NameObject("/Encoding"): NameObject("/WinAnsiEncoding")}))
    for items in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(items if isinstance(items, bytes) else b"".join(
            b"BT /F1 %.1f Tf 1 0 0 1 %.1f %.1f Tm (%s) Tj ET\n" % (size, x, y, _pdf_escape(text))
            for x, y, size, text in items))
        page[NameObject("/Contents")] = writer._add_object(stream)
    for page_index, rect, url in links:
        writer.add_annotation(page_number=page_index, annotation=LinkAnnotation(rect=rect, url=url))
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    writer.write(str(path))
    return path


PDF_PAGES = [
    [
        (72, 740, 16, "PDF report"),
        (72, 700, 11, "In 2024, 224 people were expelled from the country."),
        (330, 704, 7, "1"),
        (336, 700, 11, " The ministry"),
        (72, 686, 11, "confirmed the figure "),
        (180, 686, 11, "in a statement."),
        (72, 650, 11, "Officials cited https://example.org/reports/2024/a-very-long-path-name-"),
        (72, 636, 11, "that-wraps/onto-the-next-line.html as their source."),
        (72, 600, 11, "Another claim stands here."),
        (72, 570, 11, "https://example.org/pdf-own-line"),
        (72, 93, 6, "1"),
        (78, 90, 8, "https://example.org/pdf-footnote-one"),
    ],
    [
        (72, 700, 11, "Second page claim with a note."),
        (240, 704, 7, "2"),
        (72, 90, 8, "2 See https://example.org/pdf-footnote-two."),
        (300, 40, 8, "2"),
    ],
]
PDF_LINKS = [(0, (175, 683, 260, 697), "https://example.org/pdf-statement")]


HTML_REPORT = """<!DOCTYPE html>
<html><head><title>HTML report</title><script>var u = "https://evil.example/script";</script></head>
<body>
<h1>Findings</h1>
<p>First claim is here. The ministry <a href="https://example.org/html-statement">said so</a> in writing.</p>
<p>Second claim with a note.<sup><a href="#fn1" id="ref1">1</a></sup> Unrelated sentence.</p>
<p>Third claim.<br>https://example.org/html-br-line<br>
   <a href="https://example.org/html-linked-line">https://example.org/html-linked-line</a></p>
<p><a href="/relative">relative</a> and <a href="mailto:x@example.org">mail</a> only.</p>
<ol class="footnotes"><li id="fn1">See <a href="https://example.org/html-fn-one">Delfi</a>.
  <a href="#ref1">&#8617;</a></li></ol>
</body></html>
"""

MARKDOWN_REPORT = """# Markdown report

The ministry [said so](https://example.org/md-statement) in writing. Another sentence.

A claim with a footnote.[^1] And more text.

Own-line claim paragraph.

<https://example.org/md-autolink>

https://example.org/md-bare%20space

[^1]: See [Delfi](https://example.org/md-note) and https://example.org/md-note-2.
"""


# --------------------------------------------------------------------------- readers

def test_docx_body_links_fields_tables_footnotes_and_endnotes(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx")
    document = parse_report(read_report_file(path))
    assert document.format == "docx" and document.title == "Word report"
    assert claims_of(path) == [
        ("A bare claim cites https://example.org/docx-bare.", [("https://example.org/docx-bare", "inline")]),
        ("The ministry said so in a statement.", [("https://example.org/docx-statement", "link")]),
        ("Expulsions rose sharply.", [("https://example.org/docx-footnote-bare", "footnote"),
                                      ("https://example.org/docx-footnote-link", "footnote")]),
        ("Nobody appealed.", [("https://example.org/docx-endnote-bare", "endnote"),
                              ("https://example.org/docx-endnote-link", "endnote")]),
        ("The field-coded source is this page.", [("https://example.org/docx-field", "link")]),
        ("A table cell claim.", [("https://example.org/docx-cell", "line")]),
        ("Own-line claim.", [("https://example.org/docx-own-line", "line")]),
    ]


def test_pdf_footnotes_link_annotations_and_wrapped_urls(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "report.pdf", PDF_PAGES, PDF_LINKS)
    claims = segment(parse_report(read_report_file(path)))
    found = [(" ".join(c.text.split()), c.page, [(x.url, x.via, x.note) for x in c.citations]) for c in claims]
    assert found == [
        ("In 2024, 224 people were expelled from the country.", 1,
         [("https://example.org/pdf-footnote-one", "footnote", "1")]),
        ("The ministry confirmed the figure in a statement.", 1,
         [("https://example.org/pdf-statement", "link", None)]),
        ("Officials cited https://example.org/reports/2024/a-very-long-path-name-that-wraps/onto-the-next-line.html"
         " as their source.", 1,
         [("https://example.org/reports/2024/a-very-long-path-name-that-wraps/onto-the-next-line.html", "inline",
           None)]),
        ("Another claim stands here.", 1, [("https://example.org/pdf-own-line", "line", None)]),
        ("Second page claim with a note.", 2, [("https://example.org/pdf-footnote-two", "footnote", "2")]),
    ]


# How a typesetting library (here: the shape of reportlab's output) draws a page: the footer
# first, then each paragraph as one text object whose lines follow with T*, superscripts raised
# with a text rise (Ts) that text extraction does not report, a link annotation per line.
TYPESET_PAGE = b"""BT /F1 8 Tf 1 0 0 1 72 60 Tm (1 Delfi, https://example.org/typeset-footnote) Tj ET
BT /F1 8 Tf 1 0 0 1 290 30 Tm (1) Tj ET
q 1 0 0 1 78 687.9 cm
BT 1 0 0 1 0 38 Tm 12 TL /F1 10 Tf (As of April 1, 2024, 62,884 citizens of Belarus legally reside in Lithuania.) Tj
/F1 8 Tf 5 Ts (1) Tj /F1 10 Tf 0 Ts ( The Lithuanian Migration) Tj T*
(Department recognizes the deportation of Belarusians back to Belarus, including those who) Tj T*
(participated in the 2020 protests and who face torture upon their return, as ) Tj (LRT) Tj T*
(reported) Tj ( last year.) Tj T* ET Q
q 1 0 0 1 78 633.9 cm
BT 1 0 0 1 0 26 Tm /F1 10 Tf 12 TL (A claim citing https://example.org/typeset/a-url-broken-in-the-middle-of-a-wo) Tj T*
(rd) Tj T* ET Q
"""


def test_pdf_as_typesetting_libraries_write_it(tmp_path: Path) -> None:
    links = [(0, (410, 699.9, 430, 711.9), "https://example.org/typeset-link"),
             (0, (78, 687.9, 115, 699.9), "https://example.org/typeset-link")]
    path = make_pdf(tmp_path / "typeset.pdf", [TYPESET_PAGE], links)
    assert claims_of(path) == [
        ("As of April 1, 2024, 62,884 citizens of Belarus legally reside in Lithuania.",
         [("https://example.org/typeset-footnote", "footnote")]),
        ("The Lithuanian Migration Department recognizes the deportation of Belarusians back to Belarus, including "
         "those who participated in the 2020 protests and who face torture upon their return, as LRT reported last "
         "year.", [("https://example.org/typeset-link", "link")]),
        ("A claim citing https://example.org/typeset/a-url-broken-in-the-middle-of-a-word",
         [("https://example.org/typeset/a-url-broken-in-the-middle-of-a-word", "inline")]),
    ]


WRITER_CLAIMS = [
    ("In 2024, 224 Belarusians were recognized as a threat to national security.",
     [("https://www.delfi.lt/a-1", "footnote"), ("https://www.delfi.lt/b-2", "footnote")]),
    ("Nobody appealed in time.", [("https://example.org/endnote", None)]),
    ("The ministry said so in a statement.", [("https://example.org/statement", "link")]),
    ("On 17 April 2024, the committee adopted amendments to the draft law, where Belarusians who travel more "
     "than once every three months will be accused, as reported at https://www.delfi.lt/ru/news/politics/"
     "komitet-seyma-odobril-predlozhenie-po-ogranicheniyu-poezdok-rossiyan-i-belarusov-na-rodinu-96361875 by the "
     "press.", [("https://www.delfi.lt/ru/news/politics/komitet-seyma-odobril-predlozhenie-po-ogranicheniyu-poezdok-"
                 "rossiyan-i-belarusov-na-rodinu-96361875", "inline")]),
    ("Own-line claim paragraph.", [("https://example.org/own-line", "line"),
                                   ("https://rus.lsm.lv/statja/grazhdanin-belarusi\u2013uspelzapechatlet-17-obyektov.a466902",
                                    "line")]),
]


@pytest.mark.parametrize("name", ["writer_report.docx", "writer_report.pdf", "writer_report.html"])
def test_files_written_by_a_word_processor(name: str) -> None:
    found = claims_of(DATA / name)
    # The endnote is an endnote in docx and HTML; in the PDF it is a note at the top of the next page.
    expected = [(text, [(u, via or ("footnote" if name.endswith("pdf") else "endnote")) for u, via in cites])
                for text, cites in WRITER_CLAIMS]
    assert found == expected


def test_pdf_with_an_owner_password_only_is_readable(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "owner.pdf", PDF_PAGES, PDF_LINKS, user_password="")
    assert len(claims_of(path)) == 5


def test_html_links_footnotes_line_breaks_and_no_scripts(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(HTML_REPORT, encoding="utf-8")
    document = parse_report(read_report_file(path))
    assert document.title == "HTML report"
    assert claims_of(path) == [
        ("The ministry said so in writing.", [("https://example.org/html-statement", "link")]),
        ("Second claim with a note.", [("https://example.org/html-fn-one", "footnote")]),
        ("Third claim.", [("https://example.org/html-br-line", "line"),
                          ("https://example.org/html-linked-line", "line")]),
    ]


def test_markdown_links_footnotes_autolinks_and_escapes_kept(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    path.write_text(MARKDOWN_REPORT, encoding="utf-8")
    document = parse_report(read_report_file(path))
    assert document.title == "Markdown report"
    assert claims_of(path) == [
        ("The ministry said so in writing.", [("https://example.org/md-statement", "link")]),
        ("A claim with a footnote.", [("https://example.org/md-note", "footnote"),
                                      ("https://example.org/md-note-2", "footnote")]),
        ("Own-line claim paragraph.", [("https://example.org/md-autolink", "line"),
                                       ("https://example.org/md-bare%20space", "line")]),
    ]


NUMBERED_NOTES = """Expulsions rose sharply.[1] Nobody appealed.[2]

Courts refused appeals.\u00b3 The rest is uncited.

Notes

[1] Delfi, 12 May 2024, https://example.org/n1
[2] https://example.org/n2
3. LRT report:
   https://example.org/n3
"""


def test_numbered_endnotes_in_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(NUMBERED_NOTES, encoding="utf-8")
    assert claims_of(path) == [
        ("Expulsions rose sharply.[1]", [("https://example.org/n1", "endnote")]),
        ("Nobody appealed.[2]", [("https://example.org/n2", "endnote")]),
        ("Courts refused appeals.\u00b3", [("https://example.org/n3", "endnote")]),
    ]


def test_pdf_endnotes_in_body_type(tmp_path: Path) -> None:
    pages = [[(72, 700, 11, "A claim with an endnote."), (200, 704, 7, "7"), (206, 700, 11, " More text.")],
             [(72, 700, 11, "Notes"), (72, 670, 11, "7 Interview record, https://example.org/pdf-endnote")]]
    path = make_pdf(tmp_path / "endnotes.pdf", pages)
    assert claims_of(path) == [("A claim with an endnote.", [("https://example.org/pdf-endnote", "endnote")])]


def test_text_encodings(tmp_path: Path) -> None:
    body = "Čia teiginys \u2013 claim.\n\nhttps://example.org/\u010dia\n"
    for encoding, prefix in (("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16", b"")):
        path = tmp_path / f"r-{encoding}-{len(prefix)}.txt"
        path.write_bytes(prefix + body.encode(encoding))
        assert claims_of(path) == [("Čia teiginys \u2013 claim.", [("https://example.org/\u010dia", "line")])]
    legacy = tmp_path / "cp1252.txt"
    legacy.write_bytes("Caf\u00e9 claim \u2013 here.\r\n\r\nhttps://example.org/x\r\n".encode("cp1252"))
    assert claims_of(legacy) == [("Caf\u00e9 claim \u2013 here.", [("https://example.org/x", "line")])]


# --------------------------------------------------------------------------- import

def test_import_seed(tmp_path: Path) -> None:
    archive = Archive.open(tmp_path / "archive")
    result = import_report(archive.db, SEED)
    assert (result.status, result.version, result.claims, result.citations, result.sources,
            result.sources_new, result.sources_archived) == ("new", 1, 24, 31, 30, 30, 0)
    db = archive.db
    assert db.execute("SELECT COUNT(*) FROM sources").fetchone()[0] == 30
    assert db.execute("SELECT COUNT(*) FROM citations").fetchone()[0] == 31
    row = db.execute("SELECT c.text, c.paragraph, c.line FROM claims c JOIN citations x ON x.claim_id = c.id "
                     "WHERE x.url = 'https://spring96.org/ru/news/115071'").fetchone()
    assert row[0].startswith("In Belarus, all those who participated") and row[2] == 249
    cited = db.execute("SELECT url FROM citations WHERE url LIKE '%zerkalo.io/life/57715%'").fetchone()[0]
    assert cited == "https://news.zerkalo.io/life/57715.html"
    entry = db.execute("SELECT details FROM custody_log WHERE event = 'report-imported'").fetchone()
    details = json.loads(entry[0])
    assert details["sha256"] == result.sha256 and details["citations"] == 31


def test_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    archive_dir = tmp_path / "archive"
    assert run("import", SEED, "--archive", archive_dir) == 0
    before = snapshot(archive_dir)
    copy = tmp_path / "elsewhere.txt"
    shutil.copy(SEED, copy)
    assert run("import", SEED, "--archive", archive_dir) == 0
    assert run("import", copy, "--archive", archive_dir, "--title", "another title") == 0
    assert snapshot(archive_dir) == before


def test_quiet_import_of_an_unchanged_file_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive_dir = tmp_path / "archive"
    assert run("import", SEED, "--archive", archive_dir, "--quiet") == 0
    assert run("import", SEED, "--archive", archive_dir, "--quiet") == 0
    assert capsys.readouterr() == ("", "")  # a nightly cron import mails nothing
    assert run("import", SEED, "--archive", archive_dir) == 0
    assert "unchanged: this file is already imported" in capsys.readouterr().err


def edited_seed(path: Path) -> Path:
    text = SEED.read_text(encoding="utf-8")
    text = text.replace("As of April 1, 2024,\u00a062,884", "As of April 1, 2024,\u00a062,885")
    text = text.replace("https://nashaniva.com/ru/338903\n", "")
    text = text.replace("https://devby.io/news/migratsiya-biznesa", "HTTPS://DEVBY.IO/news/migratsiya-biznesa")
    text += "\n\nA new closing claim.\n\nhttps://example.org/new-source\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_changed_version_keeps_the_old_and_reports_the_changes(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    archive_dir = tmp_path / "archive"
    report = tmp_path / "report.txt"
    shutil.copy(SEED, report)
    assert run("import", report, "--archive", archive_dir) == 0
    edited_seed(report)
    capsys.readouterr()
    assert run("import", report, "--archive", archive_dir, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["version"], result["previous_version"]) == ("updated", 2, 1)
    changes = result["changes"]
    assert [c["new"]["text"][:27] for c in changes["claims_edited"]] == ["As of April 1, 2024,\u00a062,885"]
    assert [c["text"] for c in changes["claims_added"]] == ["A new closing claim."]
    assert changes["claims_removed"] == []
    assert [c["url"] for c in changes["citations_added"]] == ["https://example.org/new-source"]
    assert [c["url"] for c in changes["citations_removed"]] == ["https://nashaniva.com/ru/338903"]
    assert [(c["old_url"], c["url"]) for c in changes["citations_edited"]] == [
        ("https://devby.io/news/migratsiya-biznesa", "HTTPS://DEVBY.IO/news/migratsiya-biznesa")]
    archive = Archive.open(archive_dir)
    versions = archive.db.execute("SELECT version, claims, citations FROM report_versions ORDER BY version").fetchall()
    assert versions == [(1, 24, 31), (2, 25, 31)]
    assert archive.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1
    assert run("reports", "--archive", archive_dir, "--json") == 0


def test_title_groups_versions_from_different_paths(tmp_path: Path) -> None:
    archive_dir = tmp_path / "archive"
    assert run("import", SEED, "--archive", archive_dir, "--title", "Our House 2024") == 0
    other = edited_seed(tmp_path / "renamed.txt")
    assert run("import", other, "--archive", archive_dir, "--title", "Our House 2024") == 0
    archive = Archive.open(archive_dir)
    rows = archive.db.execute("SELECT r.title, v.version FROM report_versions v JOIN reports r ON r.id = v.report_id "
                              "ORDER BY v.id").fetchall()
    assert rows == [("Our House 2024", 1), ("Our House 2024", 2)]
    # Edited again where version 2 came from, imported without --title: the same report.
    other.write_text(other.read_text(encoding="utf-8") + "\nA later claim.\n\nhttps://example.org/later\n",
                     encoding="utf-8")
    assert run("import", other, "--archive", archive_dir) == 0
    rows = archive.db.execute("SELECT r.title, v.version FROM report_versions v JOIN reports r ON r.id = v.report_id "
                              "ORDER BY v.id").fetchall()
    assert rows[-1] == ("Our House 2024", 3) and archive.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1


def test_human_output_of_a_changed_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive_dir = tmp_path / "archive"
    report = tmp_path / "report.txt"
    shutil.copy(SEED, report)
    run("import", report, "--archive", archive_dir)
    edited_seed(report)
    capsys.readouterr()
    assert run("import", report, "--archive", archive_dir) == 0
    printed = capsys.readouterr().out
    assert ("changes since version 1: 1 claim added, 0 claims removed, 1 claim edited, 1 citation added, "
            "1 citation removed, 1 citation edited") in " ".join(printed.split())
    assert "https://nashaniva.com/ru/338903" in printed


# --------------------------------------------------------------------------- bad input

def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes, expect: str) -> None:
        path = tmp_path / name
        path.write_bytes(data)
        cases[name] = (path, expect)

    add("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "binary")
    add("noise.txt", bytes(range(1, 32)) * 100, "binary")
    add("empty.txt", b"", "empty")
    add("blank.md", b"   \n\n\t\n", "no text")
    add("nourls.txt", b"A report with claims but no links at all.\n\nSecond paragraph.\n", "no http")
    add("refused.txt", b"Only refused schemes: ftp://example.org/x and mailto:a@example.org\n", "no http")
    add("broken.docx", b"PK\x03\x04 this is not really a zip archive", "not a readable .docx")
    with zipfile.ZipFile(tmp_path / "nodocument.docx", "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    cases["nodocument.docx"] = (tmp_path / "nodocument.docx", "not a readable .docx")
    add("fake.pdf", b"%PDF-1.7\n garbage without objects", "PDF")
    add("zip.txt", b"PK\x03\x04" + b"\x00" * 100, "zip archive")
    cases["encrypted.pdf"] = (make_pdf(tmp_path / "encrypted.pdf", PDF_PAGES, PDF_LINKS, user_password="secret"),
                              "needs a password")
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as fh:
        fh.truncate(100 * 1024 * 1024)  # sparse: costs no disk and no time
    cases["huge.txt"] = (huge, "too large")
    cases["directory"] = (tmp_path, "not a regular file")
    cases["missing.txt"] = (tmp_path / "missing.txt", "no such report")
    return cases


def test_bad_input_gets_a_message_exit_2_and_leaves_the_catalogue_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive_dir = tmp_path / "archive"
    assert run("import", SEED, "--archive", archive_dir) == 0
    before = snapshot(archive_dir)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, (path, expect) in _bad_inputs(inputs).items():
        capsys.readouterr()
        assert run("import", path, "--archive", archive_dir) == 2, name
        message = " ".join(capsys.readouterr().err.split())
        assert expect in message, (name, message)
        assert snapshot(archive_dir) == before, name


def test_bad_input_does_not_create_an_archive(tmp_path: Path) -> None:
    report = tmp_path / "nourls.txt"
    report.write_text("No links here.\n", encoding="utf-8")
    for command in ("import", "archive"):
        assert run(command, report, "--archive", tmp_path / "archive") == 2
        assert not (tmp_path / "archive").exists()


def test_html_table_of_contents_is_not_a_footnote(tmp_path: Path) -> None:
    path = tmp_path / "toc.html"
    chapter = "Long chapter text. " * 200
    path.write_text(f"""<html><body><p>Contents: <a href="#ch1">1</a></p>
        <section id="ch1"><h2>Chapter</h2><p>{chapter}</p><p>A claim.</p><p>https://example.org/toc</p></section>
        </body></html>""", encoding="utf-8")
    assert claims_of(path) == [("A claim.", [("https://example.org/toc", "line")])]


def test_library_raises_input_error(tmp_path: Path) -> None:
    archive = Archive.open(tmp_path / "archive")
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputError):
        import_report(archive.db, path)


# --------------------------------------------------------------------------- browsing

def test_reports_claims_and_show_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive_dir = tmp_path / "archive"
    assert run("import", SEED, "--archive", archive_dir, "--title", "seed") == 0
    docx_path = make_docx(tmp_path / "word.docx")
    assert run("import", docx_path, "--archive", archive_dir) == 0
    capsys.readouterr()

    assert run("reports", "--archive", archive_dir, "--json") == 0
    reports = json.loads(capsys.readouterr().out)
    assert [(r["title"], r["claims"], r["citations"], r["sources"], r["claims_preserved"]) for r in reports] == [
        ("seed", 24, 31, 30, 0), ("Word report", 7, 9, 9, 0)]

    assert run("claims", "--report", "seed", "--archive", archive_dir, "--json") == 0
    claims = json.loads(capsys.readouterr().out)
    assert len(claims) == 24 and sum(len(c["sources"]) for c in claims) == 31
    assert all(not s["preserved"] for c in claims for s in c["sources"])

    assert run("claims", "--archive", archive_dir, "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 31

    assert run("show", "https://nashaniva.com/ru/338903", "--archive", archive_dir, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(c["report"], c["paragraph"]) for c in shown["claims"]] == [("seed", 76)]
    assert shown["claims"][0]["text"].startswith("The absence of any proofs of territorial claims")

    assert run("claims", "--report", "no such report", "--archive", archive_dir) == 2


def test_browsing_a_missing_archive_is_a_usage_error_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-archive"
    for command in (["reports"], ["claims"], ["claims", "--report", "seed"], ["sources"],
                    ["show", "https://spring96.org/ru/news/115071"]):
        assert run(*command, "--archive", missing, "--json") == 2, command
        captured = capsys.readouterr()
        assert captured.out == "" and f"no archive at {missing}" in " ".join(captured.err.split())
    assert not missing.exists()
    assert run("import", SEED, "--archive", missing, "--quiet") == 0  # import creates it
    assert run("reports", "--archive", missing, "--json") == 0


def test_tables_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    archive_dir = tmp_path / "archive"
    assert run("import", SEED, "--archive", archive_dir) == 0
    assert "sources new to the catalogue" in capsys.readouterr().out
    expected = {("reports",): ["seed_report", "1 of 1"],
                ("claims",): ["24 claims, 0 preserved", "As of April 1, 2024, 62,884 citizens of Belarus"],
                ("show", "https://spring96.org/ru/news/115071"): ["claims citing this source", "1: seed_report",
                                                                  "In Belarus, all those who participated"]}
    for command, lines in expected.items():
        assert run(*command, "--archive", archive_dir) == 0
        printed = capsys.readouterr().out
        assert [line for line in lines if line not in printed] == []


def test_square_brackets_in_claims_titles_and_urls_are_printed_as_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """'[sic]' must never vanish from a quoted claim (nor '[/b]' crash the table): the tables print
    report text, never interpret it as markup."""
    monkeypatch.setenv("COLUMNS", "400")
    archive_dir = tmp_path / "archive"
    report = tmp_path / "brackets.txt"
    quote = "The minister said the figures were [sic] correct, [/b] [red]twice[/red]."
    url = "https://example.org/wiki/Minsk_[city]"
    report.write_text(f"{quote}\n\n{url}\n", encoding="utf-8")
    title = "Report [draft]"
    assert run("import", report, "--archive", archive_dir, "--title", title) == 0
    assert f"report 1: {title}" in capsys.readouterr().out
    for command in (["claims"], ["show", url]):
        assert run(*command, "--archive", archive_dir) == 0, command
        printed = capsys.readouterr().out
        assert quote in printed and url in printed, command
    assert run("reports", "--archive", archive_dir) == 0
    assert title in capsys.readouterr().out
    report.write_text(f"{quote}\n\n{url}\n\nAdded [sic].\n\nhttps://example.org/x\n", encoding="utf-8")
    assert run("import", report, "--archive", archive_dir, "--title", title) == 0
    assert "Added [sic]." in capsys.readouterr().out


def test_two_processes_importing_at_once(tmp_path: Path) -> None:
    """Imports serialise on the catalogue; the same file imported twice at once is one version."""
    import subprocess
    import sys

    archive_dir = tmp_path / "archive"
    Archive.open(archive_dir).close()
    other = edited_seed(tmp_path / "other.txt")
    commands = [[sys.executable, "-m", "evarchive.cli", "import", str(path), "--archive", str(archive_dir), "--json"]
                for path in (SEED, SEED, other)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["status"] for r in results[:2]) == ["new", "unchanged"]
    archive = Archive.open(archive_dir)
    assert archive.db.execute("SELECT COUNT(*) FROM report_versions").fetchone()[0] == 2
    assert archive.db.execute("SELECT COUNT(*) FROM custody_log WHERE event = 'report-imported'").fetchone()[0] == 2


def test_every_skipped_url_is_reported_with_where_it_stands(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.txt"
    report.write_text("The first claim is sound.\nhttps://example.org/ok\n\n"
                      "The second cites a host IDNA refuses: https://\u2603.com/page and more.\n\n"
                      "The third cites what is not a URL at all: https://.example.org/a.\n", encoding="utf-8")
    assert run("import", report, "--archive", tmp_path / "a", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert [(s["url"], s["paragraph"], s["line"]) for s in result["skipped_urls"]] == [
        ("https://\u2603.com/page", 2, 4), ("https://.example.org/a", 3, 6)]
    assert "IDNA" in result["skipped_urls"][0]["reason"]
    assert result["skipped_urls"][1]["reason"] == "not a URL: no host a page could come from"
    assert result["citations"] == 1


def test_an_unchanged_reimport_reports_the_same_skipped_urls(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.txt"
    report.write_text("The first claim is sound.\nhttps://example.org/ok\n\n"
                      "The second cites a host IDNA refuses: https://\u2603.com/page and more.\n\n"
                      "The third cites a bad host: https://-bad.example/x\n",
                      encoding="utf-8")
    assert run("import", report, "--archive", tmp_path / "a", "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert run("import", report, "--archive", tmp_path / "a", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert (first["status"], again["status"]) == ("new", "unchanged")
    assert [(s["url"], s["paragraph"], s["line"]) for s in first["skipped_urls"]] == [
        ("https://\u2603.com/page", 2, 4), ("https://-bad.example/x", 3, 6)]
    assert again["skipped_urls"] == first["skipped_urls"]
    # And to people, as on the first import.
    assert run("import", report, "--archive", tmp_path / "a") == 0
    assert "skipped \u00b62 (line 4): https://\u2603.com/page" in capsys.readouterr().err


def test_skipped_urls_are_shown_to_people_with_their_position(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.txt"
    report.write_text("A claim.\nhttps://example.org/ok\n\nAnother: https://-bad.example/x\n", encoding="utf-8")
    assert run("import", report, "--archive", tmp_path / "a") == 0
    assert "skipped \u00b62 (line 4): https://-bad.example/x: not a URL" in capsys.readouterr().err


FURNISHED_PAGE = """<!DOCTYPE html>
<html><head><title>Press release</title></head><body>
<a class="skip-link" href="https://press.example/#content">Skip to content</a>
<header class="site-header"><nav><ul>
  <li><a href="https://press.example/news">news</a></li><li><a href="https://press.example/about">About</a></li>
</ul></nav></header>
<div class="menu-toggle"><a href="https://press.example/menu">Toggle menu</a></div>
<main>
  <div class="social-share"><a href="https://twitter.example/intent?u=x">Share</a></div>
  <article>
    <h1>Access restored <span class="mw-editsection"><a href="https://press.example/edit">edit</a></span></h1>
    <p class="byline">By <a class="author" href="https://press.example/author/staff">Staff</a></p>
    <!--[if IE 9]><video style="display: none;"><![endif]-->
    <p>The court published its ruling on Monday, as <a href="https://court.example/ruling.pdf">the full text</a>
       shows. The block had lasted more than two and a half years, and students lost access to it just days
       before their exams, as <a href="https://news.example/2017/ban.html">reported at the time</a>.</p>
    <table class="infobox"><tr><td><a href="https://press.example/infobox-link">Facts</a></td></tr></table>
    <p>Volunteers shared messages of support for months. The foundation thanked everyone who helped.</p>
  </article>
  <aside class="related"><article><h3><a href="https://press.example/older">An older story</a></h3>
    <a class="more" href="https://press.example/older">Read more</a></article></aside>
</main>
<footer><ul class="languages"><li><a href="https://tr.press.example/">T\u00fcrk\u00e7e</a></li></ul>
  <a href="https://social.example/press">Follow</a></footer>
</body></html>
"""


def test_html_page_furniture_is_not_claims(tmp_path: Path) -> None:
    # Menus, skip links, sharing buttons, bylines, edit links, infoboxes, related stories, language
    # links and footers are furniture: only the article's own citations are claims.
    path = tmp_path / "page.html"
    path.write_text(FURNISHED_PAGE, encoding="utf-8")
    assert claims_of(path) == [
        ("The court published its ruling on Monday, as the full text shows.",
         [("https://court.example/ruling.pdf", "link")]),
        ("The block had lasted more than two and a half years, and students lost access to it just days before "
         "their exams, as reported at the time.", [("https://news.example/2017/ban.html", "link")]),
    ]


def test_html_without_a_declared_encoding_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><body><p>The agency\u2019s \u201cScorecard\u201d is online at "
                    "https://scorecard.example\u2014jointly with others.</p></body></html>", encoding="utf-8")
    assert claims_of(path) == [
        ("The agency\u2019s \u201cScorecard\u201d is online at https://scorecard.example\u2014jointly with others.",
         [("https://scorecard.example", "inline")])]


def test_markdown_read_as_its_html_keeps_its_characters(tmp_path: Path) -> None:
    path = tmp_path / "policy.md"
    path.write_text("The agency\u2019s policy is public.<sup><a href=\"#fn1\" id=\"fnr1\">1</a></sup>\n\n"
                    "<ol><li id=\"fn1\"><sup>1</sup> See <a href=\"https://gov.example\">https://gov.example</a>"
                    "\u2014jointly with <a href=\"https://gov.example/b\">https://gov.example/b</a>."
                    "<a href=\"#fnr1\">&#8617;</a></li></ol>\n", encoding="utf-8")
    assert claims_of(path) == [
        ("The agency\u2019s policy is public.", [("https://gov.example", "footnote"),
                                                ("https://gov.example/b", "footnote")])]


def test_a_bar_of_links_after_a_reference_cites_for_the_reference(tmp_path: Path) -> None:
    # Pasted from a journal's web page: each reference ends with its navigation links.
    path = tmp_path / "refs.html"
    path.write_text("<html><body><p>L. P. Hanrahan, \u201cSerum PCB levels,\u201d Environmental Research, vol. 80, "
                    "1999. <a href=\"https://doi.example/10.1006/enrs\">View at Publisher</a> \u00b7 "
                    "<a href=\"https://scholar.example/?q=enrs\">View at Google Scholar</a></p></body></html>",
                    encoding="utf-8")
    reference = ("L. P. Hanrahan, \u201cSerum PCB levels,\u201d Environmental Research, vol. 80, 1999. "
                 "View at Publisher \u00b7 View at Google Scholar")
    assert claims_of(path) == [(reference, [("https://doi.example/10.1006/enrs", "link"),
                                            ("https://scholar.example/?q=enrs", "link")])]


def test_a_list_item_run_into_the_sentence_before_is_its_own_sentence(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    path.write_text("The average source is over 75,000 words long. \u2022 Unlike other datasets, ours is "
                    "[written by experts](https://example.org/experts).\n", encoding="utf-8")
    assert claims_of(path) == [("\u2022 Unlike other datasets, ours is written by experts.",
                                [("https://example.org/experts", "link")])]


def test_a_marker_is_not_linked_to_the_reference_list_of_a_later_paper(tmp_path: Path) -> None:
    # A dossier of two papers, each with its own list: the first paper's entry 4 cites no URL, so
    # its marker cites nothing; the second paper's entry 4 is not the first paper's.
    path = tmp_path / "dossier.txt"
    path.write_text("Survival was poorer for women diagnosed postpartum [4].\n\n"
                    "References\n\n"
                    "4. Azim HA (2012) Prognosis of pregnancy-associated breast cancer. Cancer Treat Rev 38:834\n\n"
                    "Melanoma risk rose with plasma PCB levels [4].\n\n"
                    "References\n\n"
                    "4. Gallagher RP (2011) Plasma PCBs and melanoma. https://pubmed.example/21520043\n",
                    encoding="utf-8")
    assert claims_of(path) == [
        ("Melanoma risk rose with plasma PCB levels [4].", [("https://pubmed.example/21520043", "endnote")])]


def test_a_bibliography_entry_is_the_claim_of_its_identifier_links(tmp_path: Path) -> None:
    path = tmp_path / "sources.html"
    path.write_text("<html><body><ul><li>Donne-Gouss\u00e9, C. (2002). Phylogenetic analyses of ducks. "
                    "<a href=\"https://pubmed.example/12099792\">PMID 12099792</a>.</li></ul></body></html>",
                    encoding="utf-8")
    assert claims_of(path) == [("Donne-Gouss\u00e9, C. (2002). Phylogenetic analyses of ducks. PMID 12099792.",
                                [("https://pubmed.example/12099792", "link")])]


def test_sentences_of_a_script_without_case_are_claims_of_their_own(tmp_path: Path) -> None:
    first = ("\u064a\u0638\u0644 \u062f\u0648\u0631 \u0627\u0644\u0648\u0627\u0644\u062f\u064a\u0646 "
             "\u0647\u0627\u0645\u0627\u064b.")
    second = "\u0648\u062a\u0634\u062f\u062f \u0627\u0644\u0644\u062c\u0646\u0629 \u0639\u0644\u0649 \u0630\u0644\u0643"
    path = tmp_path / "r.md"
    path.write_text(f"{first} {second}[^1].\n\n[^1]: https://un.example/A/HRC/32/32\n", encoding="utf-8")
    assert claims_of(path) == [(f"{second}.", [("https://un.example/A/HRC/32/32", "footnote")])]


def test_a_scheme_less_www_url_is_cited_as_written_and_captured_over_http(tmp_path: Path) -> None:
    report = tmp_path / "r.txt"
    report.write_text("The committee said so (see www.ohchr.org/EN/Pages/Home.aspx?id=1).\n\n"
                      "The same page is cited again: http://www.ohchr.org/EN/Pages/Home.aspx?id=1\n\n"
                      "Mail info@www.example.org or edit www.config.js: neither is a citation.\n",
                      encoding="utf-8")
    archive = Archive.open(tmp_path / "a")
    result = import_report(archive.db, report)
    assert (result.citations, result.sources, result.skipped_urls) == (2, 1, [])
    cited = [r[0] for r in archive.db.execute("SELECT url FROM citations ORDER BY id")]
    assert cited == ["www.ohchr.org/EN/Pages/Home.aspx?id=1", "http://www.ohchr.org/EN/Pages/Home.aspx?id=1"]
    source = archive.db.execute("SELECT url FROM sources").fetchone()[0]
    assert source == "http://www.ohchr.org/EN/Pages/Home.aspx?id=1"


def test_an_archived_copy_printed_with_a_space_after_its_timestamp_is_one_citation(tmp_path: Path) -> None:
    cited = "https://web.archive.org/web/20161030025331/ http://cftni.org/about/advisory-council/"
    report = tmp_path / "r.md"
    report.write_text(f"The council was listed.[^1]\n\n[^1]: Advisory council, available at {cited}; Simes 302.\n",
                      encoding="utf-8")
    archive = Archive.open(tmp_path / "a")
    result = import_report(archive.db, report)
    assert (result.citations, result.sources, result.skipped_urls) == (1, 1, [])
    assert archive.db.execute("SELECT url FROM citations").fetchone()[0] == cited
    source = archive.db.execute("SELECT url FROM sources").fetchone()[0]
    assert source == "https://web.archive.org/web/20161030025331/http://cftni.org/about/advisory-council/"
