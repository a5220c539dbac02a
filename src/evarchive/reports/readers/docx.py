"""Word (.docx) reports: paragraphs with hyperlinks (relationships and field codes), footnotes
and endnotes; a package that would inflate past the limits is refused before it is opened."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...extract import Block, Document, Link, Note, NoteRef
from .common import Builder, join_blocks

# What a docx package may inflate to: all its parts (python-docx holds every one in memory),
# and one XML part (parsed into a tree several times its size). Pictures barely compress, so
# a real package inflates to little more than its own size; its XML is a few MiB.
MAX_DOCX_INFLATED = 512 * 1024 * 1024
MAX_DOCX_XML_PART = 64 * 1024 * 1024
MAX_DOCX_PARTS = 10_000  # Word writes a few dozen, plus one per picture
_SAFE_XML: Any = None


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_RT_FOOTNOTES = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/footnotes"
_RT_ENDNOTES = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/endnotes"
_DOCX_SKIP = {_W + "rPr", _W + "pPr", _W + "del", _W + "moveFrom", _W + "delText", _W + "p",
              _W + "sectPr", _W + "proofErr", _W + "bookmarkStart", _W + "bookmarkEnd"}
_DOCX_CHARS = {_W + "tab": "\t", _W + "br": "\n", _W + "cr": "\n", _W + "noBreakHyphen": "-"}
_NOTE_REFS = {_W + "footnoteReference": "fn", _W + "endnoteReference": "en"}


def hyperlink_field_target(instr: str) -> str | None:
    """The URL of a ``HYPERLINK "url" \\o "tip"`` field code (None for in-document bookmarks)."""
    match = re.match(r"\s*HYPERLINK\s+(.*)$", instr, re.DOTALL)
    if not match:
        return None
    tokens = re.findall(r'\\[a-zA-Z]\s+"[^"]*"|\\[a-zA-Z]|"[^"]*"|\S+', match.group(1))
    for token in tokens:
        if token.startswith("\\"):
            if token.startswith("\\l"):
                return None  # \l "bookmark": a link inside the document
            continue
        return token.strip('"')
    return None


class _DocxParagraph:
    """Text of one w:p with its hyperlinks (relationship or field code) and note references."""

    def __init__(self, rels: dict[str, str]) -> None:
        self.rels = rels
        self.out = Builder.new()
        self.fields: list[dict[str, Any]] = []

    def walk(self, element: Any) -> None:
        tag = element.tag
        if tag == _W + "t":
            if not any(f["start"] is None for f in self.fields):
                self.out.add(element.text or "")
        elif tag in _DOCX_CHARS:
            self.out.add(_DOCX_CHARS[tag])
        elif tag in _NOTE_REFS:
            self.out.refs.append(NoteRef(f"{_NOTE_REFS[tag]}:{element.get(_W + 'id')}",
                                         self.out.length))
        elif tag == _W + "fldChar":
            self._field_char(element.get(_W + "fldCharType"))
        elif tag == _W + "instrText" and self.fields:
            self.fields[-1]["instr"] += element.text or ""
        elif tag == _W + "hyperlink":
            self._hyperlink(element)
        elif tag == _W + "fldSimple":
            start = self.out.length
            self._children(element)
            target = hyperlink_field_target(element.get(_W + "instr") or "")
            if target:
                self.out.links.append(Link(target, start, self.out.length))
        elif tag not in _DOCX_SKIP:
            self._children(element)

    def _children(self, element: Any) -> None:
        for child in element:
            self.walk(child)

    def _hyperlink(self, element: Any) -> None:
        start = self.out.length
        self._children(element)
        target = self.rels.get(element.get(_R + "id") or "")
        if target:
            anchor = element.get(_W + "anchor")
            url = f"{target}#{anchor}" if anchor and "#" not in target else target
            self.out.links.append(Link(url, start, self.out.length))

    def _field_char(self, kind: str | None) -> None:
        # Complex fields: begin, instruction text, separate, visible result, end.
        if kind == "begin":
            self.fields.append({"instr": "", "start": None})
        elif kind == "separate" and self.fields:
            self.fields[-1]["start"] = self.out.length
        elif kind == "end" and self.fields:
            field = self.fields.pop()
            target = hyperlink_field_target(field["instr"])
            if target and field["start"] is not None:
                self.out.links.append(Link(target, field["start"], self.out.length))


def _external_rels(part: Any) -> dict[str, str]:
    return {rid: rel.target_ref for rid, rel in part.rels.items() if rel.is_external}


def _docx_paragraphs(root: Any, rels: dict[str, str]) -> list[Builder]:
    built = []
    for paragraph in root.iter(_W + "p"):
        walker = _DocxParagraph(rels)
        for child in paragraph:
            walker.walk(child)
        built.append(walker.out)
    return built


def _docx_notes(document_part: Any) -> dict[str, Note]:
    from lxml import etree

    global _SAFE_XML
    if _SAFE_XML is None:  # as python-docx parses the other parts: entities never expanded
        _SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True)

    notes: dict[str, Note] = {}
    for reltype, prefix, kind in ((_RT_FOOTNOTES, "fn", "footnote"), (_RT_ENDNOTES, "en", "endnote")):
        part = next((r.target_part for r in document_part.rels.values()
                     if r.reltype == reltype and not r.is_external), None)
        if part is None:
            continue
        root = etree.fromstring(part.blob, _SAFE_XML)
        rels = _external_rels(part)
        for number, element in enumerate(root.iter(_W + kind), start=1):
            if element.get(_W + "type") in ("separator", "continuationSeparator", "continuationNotice"):
                continue
            blocks = [Block(b.text(), links=b.links) for b in _docx_paragraphs(element, rels)]
            text, links = join_blocks(blocks)
            note_id = element.get(_W + "id")
            notes[f"{prefix}:{note_id}"] = Note(kind, note_id or str(number), text.strip(), links)
    return notes


def _refuse_inflating_package(data: bytes, path: Path) -> None:
    """Refuse a package whose parts inflate past the limits (a 2 MB zip can hold gigabytes),
    judged from the sizes the zip declares before anything is inflated. A part that lies
    about its size cannot get past them either: zipfile stops reading it at the declared
    size (and then fails its CRC check)."""
    import io
    import struct
    import zipfile

    # The number of parts first, from the zip's end record: zipfile builds an object for every
    # part, and a 256 MiB package can list millions of them.
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - (1 << 16) - 22))
    if end >= 0 and len(data) >= end + 12:
        count = struct.unpack_from("<H", data, end + 10)[0]
        if count > MAX_DOCX_PARTS:
            raise InputError(f"{path}: the document has {count:,} parts, more than the "
                             f"{MAX_DOCX_PARTS:,} a report may have (a zip bomb?); nothing was "
                             f"imported")
    try:
        parts = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError):
        return  # not a zip at all: python-docx says the file is malformed
    total = 0
    for part in parts:
        total += part.file_size
        if part.filename.lower().endswith((".xml", ".rels")) and part.file_size > MAX_DOCX_XML_PART:
            raise InputError(f"{path}: the document inflates past the limit: its part "
                             f"{part.filename} inflates to {part.file_size / 2**20:,.0f} MiB, more "
                             f"than the {MAX_DOCX_XML_PART >> 20} MiB a report's XML part may "
                             f"have (a zip bomb?); nothing was imported")
    if total > MAX_DOCX_INFLATED:
        raise InputError(f"{path}: the document inflates past the limit: its parts inflate to "
                         f"{total / 2**20:,.0f} MiB, more than {MAX_DOCX_INFLATED >> 20} MiB "
                         f"(a zip bomb?); nothing was imported")


def read_docx(data: bytes, path: Path) -> Document:
    try:
        import docx
    except ImportError:
        raise InputError("reading .docx reports needs python-docx, a dependency of evarchive that is "
                         "missing here: pip install python-docx") from None
    import io

    _refuse_inflating_package(data, path)
    try:
        package = docx.Document(io.BytesIO(data))
        rels = _external_rels(package.part)
        paragraphs = _docx_paragraphs(package.element.body, rels)
        notes = _docx_notes(package.part)
        title = package.core_properties.title or None
    except Exception as exc:  # any failure inside the package means the file is malformed
        raise InputError(f"{path}: not a readable .docx file (malformed, encrypted or not Word): "
                         f"{type(exc).__name__}: {exc}") from None
    _number_notes(paragraphs, notes)
    blocks = [Block(b.text(), links=b.links, note_refs=b.refs) for b in paragraphs]
    return Document("docx", blocks, notes, title)


def _number_notes(paragraphs: list[Builder], notes: dict[str, Note]) -> None:
    """Label notes as Word prints them: footnotes and endnotes each numbered in order of reference."""
    counters = {"fn": 0, "en": 0}
    for paragraph in paragraphs:
        for ref in paragraph.refs:
            note = notes.get(ref.key)
            prefix = ref.key.split(":")[0]
            if note is not None and not note.label.startswith("#"):
                counters[prefix] += 1
                note.label = f"#{counters[prefix]}"
    for note in notes.values():
        note.label = note.label.lstrip("#")
