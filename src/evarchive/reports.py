"""Reports: read them (txt, Markdown, HTML, docx, PDF), import their claims, version and browse them.

Reading turns every format into an :class:`extract.Document` (blocks with hyperlinks and footnote
markers, plus the notes); ``extract.segment`` then finds the claims and their citations. A bad
input is refused with an :class:`InputError` before the catalogue is touched.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EvarchiveError, InputError, shown
from .extract import (Block, Claim, Document, Link, Note, NoteRef, find_non_urls, find_urls, host_is_plausible,
                      is_web_url, segment, trim_url)
from .queries import IS_LATEST_VERSION, find_report, latest_version, not_support_reason, supporting
from .records import member_sha256

# A report larger than this is almost certainly not a report (a log, a dump, a data file); reading
# it whole would only burn memory. PDFs and docx files carry images, so they get a larger cap.
MAX_TEXT_BYTES = 32 * 1024 * 1024
MAX_PACKAGE_BYTES = 256 * 1024 * 1024
# What a docx package may inflate to: all its parts (python-docx holds every one in memory),
# and one XML part (parsed into a tree several times its size). Pictures barely compress, so
# a real package inflates to little more than its own size; its XML is a few MiB.
MAX_DOCX_INFLATED = 512 * 1024 * 1024
MAX_DOCX_XML_PART = 64 * 1024 * 1024
MAX_DOCX_PARTS = 10_000  # Word writes a few dozen, plus one per picture
_SAFE_XML: Any = None
SNIFF_BYTES = 64 * 1024

FORMATS = ("txt", "md", "html", "docx", "pdf")
_EXTENSIONS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".mdown": "md",
               ".html": "html", ".htm": "html", ".xhtml": "html", ".docx": "docx", ".pdf": "pdf"}


# --------------------------------------------------------------------------- files and formats

@dataclass
class ReportFile:
    """A report file read from disk: its bytes' SHA-256 and the parsed document."""

    path: Path
    sha256: str
    size: int
    format: str
    data: bytes


def file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sniff_format(path: Path, head: bytes) -> str:
    """The report's format: magic bytes win over the file name, which wins over content guesses."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    by_name = _EXTENSIONS.get(path.suffix.lower())
    if head.startswith(b"PK\x03\x04"):
        if by_name in (None, "docx"):
            return "docx"
        raise InputError(f"{path}: this is a zip archive, not a {by_name} report")
    if by_name:
        return by_name
    start = head.lstrip()[:200].lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return "html"
    return "txt"


def read_report_file(path: Path | str, max_bytes: int | None = None) -> ReportFile:
    """Open, size-check and hash a report; refuses unreadable and oversized files."""
    path = Path(path)
    try:
        if not path.is_file():
            raise InputError(f"{path}: no such report file" if not path.exists()
                             else f"{path}: not a regular file")
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
        size = path.stat().st_size
    except PermissionError:
        raise InputError(f"{path}: cannot read the report (permission denied)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the report ({exc.strerror})") from None
    fmt = sniff_format(path, head)
    limit = max_bytes or (MAX_PACKAGE_BYTES if fmt in ("docx", "pdf") else MAX_TEXT_BYTES)
    if size > limit:
        raise InputError(f"{path}: {size / 2**20:.1f} MiB is too large for a {fmt} report "
                         f"(limit {limit / 2**20:.0f} MiB); is this really a report?")
    if size == 0:
        raise InputError(f"{path}: the report is empty")
    data = path.read_bytes()
    return ReportFile(path, hashlib.sha256(data).hexdigest(), len(data), fmt, data)


def parse_report(report: ReportFile) -> Document:
    """The document inside a report file, whatever its format."""
    reader = _READERS[report.format]
    document = reader(report.data, report.path)
    if not any(b.text.strip() for b in document.blocks):
        raise InputError(f"{report.path}: the report has no text")
    return document


# --------------------------------------------------------------------------- plain text

def decode_text(data: bytes, path: Path) -> str:
    """Text from bytes: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252.

    Anything with NUL bytes or many control characters is refused as binary: a picture or an
    archive must not be "imported" as a report of mojibake.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return _check_text(data.decode("utf-16"), path)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not readable as UTF-16 text") from None
    if b"\x00" in data[:SNIFF_BYTES]:
        raise InputError(f"{path}: this is a binary file, not a text report")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return _check_text(data.decode(encoding), path)
        except UnicodeDecodeError:
            continue
    raise InputError(f"{path}: this is a binary file, not a text report")


_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _check_text(text: str, path: Path) -> str:
    sample = text[:SNIFF_BYTES]
    if sample and len(_CONTROL_RE.findall(sample)) > max(2, len(sample) // 200):
        raise InputError(f"{path}: this is a binary file, not a text report")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_blocks(text: str, first_line: int = 1) -> list[Block]:
    """Paragraphs of plain text: runs of lines between blank lines.

    A text with no blank line at all has one paragraph a line (exports from some editors).
    """
    lines = text.split("\n")
    one_per_line = not any(not line.strip() for line in lines[:-1])
    blocks: list[Block] = []
    current: list[str] = []
    start = first_line
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            _flush_lines(blocks, current, start)
            current = []
            continue
        if not current:
            start = number
        current.append(line.rstrip())
        if one_per_line:
            _flush_lines(blocks, current, start)
            current = []
    _flush_lines(blocks, current, start)
    return blocks


def _flush_lines(blocks: list[Block], lines: list[str], start: int) -> None:
    if lines:
        blocks.append(Block("\n".join(lines), line=start))


def read_text(data: bytes, path: Path) -> Document:
    text = decode_text(data, path)
    return Document("txt", text_blocks(text), title=None)


# --------------------------------------------------------------------------- Markdown

_FOOTNOTE_DEF = re.compile(r"^ {0,3}\[\^([^\]\s]+)\]:[ \t]?(.*)$")
_FOOTNOTE_REF = re.compile(r"\[\^([^\]\s]+)\]")


def _split_markdown_footnotes(text: str) -> tuple[str, dict[str, str], dict[str, int]]:
    """Pull ``[^label]: text`` definitions (with indented continuation lines) out of the source.

    Their lines are blanked rather than removed so that line numbers still match the file.
    """
    lines = text.split("\n")
    notes: dict[str, str] = {}
    starts: dict[str, int] = {}  # label -> 1-based line of its definition
    label: str | None = None
    for i, line in enumerate(lines):
        match = _FOOTNOTE_DEF.match(line)
        if match:
            label = match.group(1)
            notes[label] = match.group(2)
            starts.setdefault(label, i + 1)
            lines[i] = ""
        elif label is not None and line.startswith(("    ", "\t")) and line.strip():
            notes[label] += "\n" + line.strip()
            lines[i] = ""
        elif line.strip():
            label = None
    return "\n".join(lines), notes, starts


@dataclass
class _Builder:
    """Accumulates one block's text with its links and note markers."""

    parts: list[str]
    links: list[Link]
    refs: list[NoteRef]
    code: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def new(cls) -> _Builder:
        return cls([], [], [])

    @property
    def length(self) -> int:
        return sum(len(p) for p in self.parts)

    def add(self, text: str) -> None:
        if text:
            self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


def _markdown_inline(children: Iterable[Any], notes: dict[str, str]) -> _Builder:
    out = _Builder.new()
    open_links: list[tuple[str, int]] = []
    for token in children:
        if token.type == "text":
            _add_with_note_refs(out, token.content, notes)
        elif token.type == "code_inline":
            start = out.length
            out.add(token.content)
            out.code.append((start, out.length))
        elif token.type in ("softbreak", "hardbreak"):
            out.add("\n")
        elif token.type == "link_open":
            open_links.append((str(token.attrs.get("href", "")), out.length))
        elif token.type == "link_close" and open_links:
            href, start = open_links.pop()
            out.links.append(Link(href, start, out.length))
        elif token.type == "image":
            out.add(token.content)
    return out


def _add_with_note_refs(out: _Builder, text: str, notes: dict[str, str]) -> None:
    pos = 0
    for match in _FOOTNOTE_REF.finditer(text):
        if match.group(1) not in notes:
            continue
        out.add(text[pos:match.start()])
        out.refs.append(NoteRef(f"md:{match.group(1)}", out.length))
        pos = match.end()
    out.add(text[pos:])


def _links_in_raw_html(tokens: list[Any]) -> bool:
    raw = (t.content for t in tokens if t.type == "html_block")
    inline = (c.content for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "html_inline")
    return any("href=" in text for text in (*raw, *inline))


MAX_MARKDOWN_NESTING = 200  # far deeper than any report; deeper still runs into Python's recursion limit


def read_markdown(data: bytes, path: Path) -> Document:
    from markdown_it import MarkdownIt

    source, definitions, note_lines = _split_markdown_footnotes(decode_text(data, path))
    # markdown-it stops reading a document nested deeper than maxNesting (20 in the commonmark
    # preset: ten levels of list) and drops the rest without a word; raised, and refused when hit.
    md = MarkdownIt("commonmark", {"maxNesting": MAX_MARKDOWN_NESTING}).enable("table")
    md.normalizeLink = lambda url: url  # keep the URL as cited: no re-escaping
    md.validateLink = lambda url: True
    try:
        tokens = md.parse(source)
        too_deep = any(token.level >= MAX_MARKDOWN_NESTING - 1 for token in tokens)
    except RecursionError:
        too_deep = True
    if too_deep:
        raise InputError(f"{path}: the Markdown is nested deeper than the Markdown reader can "
                         f"follow (lists and quotes {MAX_MARKDOWN_NESTING // 2} levels deep); "
                         f"nothing was imported")
    if not definitions and _links_in_raw_html(tokens):
        # Markdown whose links and notes are written in HTML (<a href>, <li id="fn1">): read as
        # the HTML it renders to, where HTML's links and footnotes are understood.
        document = read_html(md.render(source).encode("utf-8"), path)
        return Document("md", document.blocks, document.notes, document.title)
    blocks: list[Block] = []
    title = None
    for i, token in enumerate(tokens):
        line = token.map[0] + 1 if token.map else None
        if token.type in ("fence", "code_block"):
            # Code blocks follow the rule for code (extract.cited_in_code): a block holding
            # nothing but a URL cites it; a program's URLs are not citations.
            text = token.content.strip()
            if [u.url for u in find_urls(text)] == [text]:
                blocks.append(Block(text, line=line, code=[(0, len(text))]))
            continue
        if token.type != "inline":
            continue
        built = _markdown_inline(token.children or [], definitions)
        blocks.append(Block(built.text(), line=line, links=built.links, note_refs=built.refs, code=built.code))
        if title is None and i > 0 and tokens[i - 1].type == "heading_open":
            title = built.text().strip() or None
    notes = {}
    for label, text in definitions.items():
        built = _markdown_inline(md.parseInline(text)[0].children or [], {})
        notes[f"md:{label}"] = Note("footnote", label, built.text(), built.links, line=note_lines.get(label))
    return Document("md", blocks, notes, title)


# --------------------------------------------------------------------------- HTML

_BLOCK_TAGS = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "td",
               "th", "dt", "dd", "figcaption", "caption", "section", "article", "aside", "header",
               "footer", "nav", "main", "tr", "table", "ul", "ol", "dl", "form", "hr", "address",
               "details", "summary", "body", "figure", "center", "fieldset", "tbody", "thead"}
MAX_HTML_DEPTH = 2048  # libxml2's nesting limit even with huge_tree
_CODE_TAGS = {"code", "pre", "kbd", "samp", "tt", "var"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"}
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
_MARKER_TEXT = re.compile(r"^[\[(]?\s*(\d{1,4}|[ivxlc]{1,6}|[*\u2020\u2021\u00a7]{1,3})\s*[\])]?$",
                          re.IGNORECASE)


class _HtmlWalker:
    """Turns an lxml HTML tree into blocks; note-reference anchors become markers."""

    def __init__(self, note_targets: dict[Any, str], base: str | None) -> None:
        self.note_targets = note_targets  # anchor element -> note key
        self.base = base
        self.blocks: list[Block] = []
        self.current = _Builder.new()

    def flush(self) -> None:
        text = self.current.text().rstrip()
        if text.strip() or self.current.refs:
            for link in self.current.links:
                link.end = min(link.end, len(text))
            code = [(start, min(end, len(text))) for start, end in self.current.code]
            self.blocks.append(Block(text, links=self.current.links, note_refs=self.current.refs, code=code))
        self.current = _Builder.new()

    def add_text(self, text: str | None, pre: bool) -> None:
        if not text:
            return
        if not pre:
            text = _HTML_SPACE.sub(" ", text)
            if not self.current.parts or self.current.parts[-1].endswith((" ", "\n")):
                text = text.lstrip(" ")
        self.current.add(text)

    def walk(self, top: Any, pre: bool = False) -> None:
        """Depth first with an explicit stack: a report nested two thousand levels deep
        must not run into Python's recursion limit."""
        stack: list[tuple[Any, bool, int | None]] = [(top, pre, None)]  # start: None = entering
        while stack:
            element, pre, start = stack.pop()
            if start is not None:
                self._leave(element, pre, start)
                continue
            tag = element.tag if isinstance(element.tag, str) else ""
            if tag in _SKIP_TAGS:
                self.add_text(element.tail, pre)
                continue
            if element in self.note_targets:
                self.current.refs.append(NoteRef(self.note_targets[element], self.current.length))
                self.add_text(element.tail, pre)
                continue
            if tag in _BLOCK_TAGS:
                self.flush()
            if tag == "br":
                self.current.add("\n")
            stack.append((element, pre, self.current.length))
            inner = pre or tag == "pre"
            self.add_text(element.text, inner)
            stack.extend((child, inner, None) for child in reversed(element))

    def _leave(self, element: Any, pre: bool, start: int) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        href = element.get("href") if tag == "a" else None
        if href and not href.startswith("#"):
            self.current.links.append(Link(self._absolute(href), start, self.current.length))
        if tag in _CODE_TAGS:  # the rule for code: extract.cited_in_code
            self.current.code.append((start, self.current.length))
        if tag in _BLOCK_TAGS:
            self.flush()
        self.add_text(element.tail, pre)

    def _absolute(self, href: str) -> str:
        href = href.strip()
        if self.base and not re.match(r"(?i)^[a-z][a-z0-9+.-]*:", href):
            from urllib.parse import urljoin
            return urljoin(self.base, href)
        return href


def _html_note_targets(root: Any) -> tuple[dict[Any, str], dict[str, Any]]:
    """Footnote markers (short in-page links pointing forward) and the elements they point to.

    A reference like ``<sup><a href="#fn3">3</a></sup>`` points to ``<li id="fn3">``; Word's HTML
    export points ``#_ftn3`` at an ``<a name="_ftn3">`` inside the note's paragraph. Back-links
    from a note to its marker point backwards and are ignored.
    """
    order = {el: i for i, el in enumerate(root.iter())}
    anchors: dict[str, Any] = {}
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        for attr in ("id", "name"):
            if el.get(attr):
                anchors.setdefault(el.get(attr), el)
    markers: dict[Any, str] = {}
    notes: dict[str, Any] = {}
    for a in root.iter("a"):
        href = a.get("href") or ""
        target = anchors.get(href[1:]) if href.startswith("#") else None
        if target is None or order[target] < order[a]:
            continue
        if not _MARKER_TEXT.match(a.text_content().strip()):
            continue
        holder = _note_holder(target)
        if holder.tag in ("body", "html") or any(up is holder for up in a.iterancestors()):
            continue  # not a note: the "target" holds the marker itself
        if not _looks_like_note(holder):
            continue  # e.g. a numbered table of contents pointing at whole chapters
        key = f"html:{href[1:]}"
        markers[a] = key
        notes[key] = holder
    return markers, notes


def _looks_like_note(holder: Any) -> bool:
    """A note is short and cites something; a chapter or section is neither."""
    text = holder.text_content()
    if len(text) > 3000:
        return False
    return bool(find_urls(text)) or any(is_web_url(a.get("href") or "") for a in holder.iter("a"))


def _note_holder(target: Any) -> Any:
    """The block element holding a note: the target itself or its nearest block ancestor."""
    node = target
    while node is not None and node.tag not in _BLOCK_TAGS:
        node = node.getparent()
    return node if node is not None else target


def read_html(data: bytes, path: Path) -> Document:
    import lxml.html
    from lxml import etree

    # huge_tree lifts libxml2's limits (256 levels of nesting, 10 MB text nodes), past
    # which it silently drops the rest of the document: claims would be lost unseen.
    parser = lxml.html.HTMLParser(huge_tree=True)
    try:
        root = lxml.html.document_fromstring(data, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise InputError(f"{path}: not readable as HTML ({exc})") from None
    if any(error.type_name == "ERR_RESOURCE_LIMIT" for error in parser.error_log):
        raise InputError(f"{path}: the HTML is nested deeper than {MAX_HTML_DEPTH} levels, more "
                         f"than the HTML reader can follow; nothing was imported (close the "
                         f"open elements, or save the report again from its editor)")
    title_el = root.find(".//title")
    base_el = root.find(".//base[@href]")
    markers, note_holders = _html_note_targets(root)
    notes = _html_notes(note_holders, markers)
    for holder in set(note_holders.values()):
        holder.drop_tree() if holder.getparent() is not None else None
    walker = _HtmlWalker(markers, base_el.get("href") if base_el is not None else None)
    body = root.find("body")
    walker.walk(body if body is not None else root)
    walker.flush()
    title = title_el.text_content().strip() if title_el is not None else None
    return Document("html", walker.blocks, notes, title or None)


def _html_notes(holders: dict[str, Any], markers: dict[Any, str]) -> dict[str, Note]:
    notes = {}
    for key, holder in holders.items():
        walker = _HtmlWalker({}, None)
        walker.walk(holder)
        walker.flush()
        text, links = _join_blocks(walker.blocks)
        kind = "endnote" if re.search(r"(?i)edn|endnote", key) else "footnote"
        label = next((m.text_content().strip().strip("[]()") for m, k in markers.items()
                      if k == key), key)
        notes[key] = Note(kind, label, text, links)
    return notes


def _join_blocks(blocks: list[Block]) -> tuple[str, list[Link]]:
    text, links = "", []
    for block in blocks:
        if text:
            text += "\n"
        links.extend(Link(item.url, item.start + len(text), item.end + len(text)) for item in block.links)
        text += block.text
    return text, links


# --------------------------------------------------------------------------- docx

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
        self.out = _Builder.new()
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


def _docx_paragraphs(root: Any, rels: dict[str, str]) -> list[_Builder]:
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
            text, links = _join_blocks(blocks)
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


def _number_notes(paragraphs: list[_Builder], notes: dict[str, Note]) -> None:
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


# --------------------------------------------------------------------------- PDF

@dataclass
class _Frag:
    text: str
    x: float
    y: float
    size: float


@dataclass
class _PdfLine:
    page: int
    y: float
    size: float
    x: float
    text: str = ""
    refs: list[tuple[str, int]] | None = None
    spans: list[tuple[_Frag, int, int]] | None = None
    has_words: bool = False


_PAGE_NUMBER = re.compile(r"(?i)^\s*(page\s*)?\d{1,4}(\s*(of|/)\s*\d{1,4})?\s*$")
_NOTE_START = re.compile(r"^\s*[\[(]?(\d{1,3}|[ivxlc]{1,6}|[*\u2020\u2021\u00a7]{1,3})[\].)]?\s+")


def _pdf_fragments(page: Any) -> list[_Frag]:
    """Text pieces with their position and effective font size, in content order."""
    frags: list[_Frag] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: Any, size: float) -> None:
        if not text or not text.strip("\n"):
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        scale = ((tm[2] * cm[0] + tm[3] * cm[2]) ** 2 + (tm[2] * cm[1] + tm[3] * cm[3]) ** 2) ** 0.5
        frags.append(_Frag(text.replace("\n", " "), x, y, size * (scale or 1.0)))

    page.extract_text(visitor_text=visit)
    return frags


def _is_superscript(frag: _Frag, line: _PdfLine) -> bool:
    """A note marker: a short number or symbol in smaller type on a line of larger type.

    Raised text is not required: a text rise (``Ts``, used by many producers) does not show in
    the positions pypdf reports, only the smaller size does.
    """
    raised = frag.y - line.y
    return (frag.size < 0.85 * line.size and -0.1 * line.size <= raised <= 0.8 * line.size
            and bool(_MARKER_TEXT.match(frag.text.strip())))


def _pdf_lines(frags: list[_Frag], page_number: int) -> list[_PdfLine]:
    """Group pieces into lines by baseline; superscript markers join the line they mark."""
    lines: list[_PdfLine] = []
    for frag in frags:
        line = lines[-1] if lines else None
        if line is not None and (abs(frag.y - line.y) <= 0.45 * max(line.size, frag.size)
                                 or _is_superscript(frag, line)):
            # A line's type size is that of its words: not of a space run, not of a marker.
            if frag.text.strip() and (frag.size > line.size or not line.has_words) \
                    and not _MARKER_TEXT.match(frag.text.strip()):
                line.size, line.y, line.has_words = frag.size, frag.y, True
            line.spans.append((frag, 0, 0))
            continue
        words = bool(frag.text.strip()) and not _MARKER_TEXT.match(frag.text.strip())
        lines.append(_PdfLine(page_number, frag.y, frag.size, frag.x, refs=[], spans=[(frag, 0, 0)],
                              has_words=words))
    for line in lines:
        _assemble_line(line)
    # Producers draw in any order (a page footer before the body); read top to bottom.
    lines.sort(key=lambda item: -item.y)
    return [item for item in lines if item.text.strip() or item.refs]


def _assemble_line(line: _PdfLine) -> None:
    text, spans, refs = "", [], []
    for frag, _, _ in line.spans or []:
        if _is_superscript(frag, line):
            refs.append((frag.text.strip().strip("[]()"), len(text.rstrip())))
            continue
        piece = frag.text.lstrip(" ")
        if text and not text.endswith(" ") and frag.text.startswith(" "):
            piece = " " + piece  # one space where pypdf saw a gap, however wide
        spans.append((frag, len(text), len(text) + len(piece)))
        text += piece
    line.text, line.spans, line.refs = text.rstrip(), spans, refs


def _body_size(lines: list[_PdfLine]) -> float:
    weight: dict[float, int] = {}
    for line in lines:
        key = round(line.size * 2) / 2
        weight[key] = weight.get(key, 0) + len(line.text)
    return max(weight, key=lambda k: weight[k]) if weight else 10.0


def _split_footnote_area(lines: list[_PdfLine], body: float) -> tuple[list[_PdfLine], list[_PdfLine]]:
    """Lines at the foot of a page in a smaller type, starting with a note number, are notes."""
    # A page number stands at the head or foot; a number alone inside the text is the rest of
    # a line above (a URL's last piece, a figure).
    edge = {id(item) for item in lines[:2] + lines[-2:]}
    lines = [item for item in lines if id(item) not in edge or not _PAGE_NUMBER.match(item.text) or item.refs]
    cut = len(lines)
    while cut > 0 and lines[cut - 1].size < 0.92 * body:
        cut -= 1
    foot = lines[cut:]
    while foot and not _note_label(foot[0]):
        foot = foot[1:]
        cut += 1
    if len(foot) > 8 and len(foot) > 0.5 * len(lines):
        return lines, []  # a whole column in small type is a section (a reference list), not notes
    return lines[:cut], foot


def _note_label(line: _PdfLine) -> str | None:
    if line.refs and line.refs[0][1] == 0:
        return line.refs[0][0]
    match = _NOTE_START.match(line.text)
    return match.group(1) if match else None


_URL_AT_END = re.compile(r"(?i)https?://\S*$")
_ENTRY_LABEL = re.compile(r"\s*\[[^\]\s]{1,10}\]\s")  # "[12] ", "[Kar15a] ": a reference starts
_URL_PIECE = re.compile(r"[\w\-._~%!$&'()*+=@/?#\[\]]+")


def _url_at_end(text: str) -> str:
    last = text.rsplit(None, 1)[-1] if text.strip() else ""
    match = _URL_AT_END.search(last)
    return match.group(0) if match else ""


def _host_of(url: str) -> str:
    return re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]


def _url_incomplete(url: str) -> bool:
    """A URL that cannot end where the line does: the scheme alone, a host without a dot
    (``http://arxiv.``), or a last character that introduces more (``-``, ``=``, ``?``, ``&``)."""
    host = _host_of(url).rstrip(".-")
    return not host or "." not in host or url[-1] in "-=?&%_"


def _continues_url(previous: str, following: str, long_line: bool) -> bool:
    """True when a line break cut a URL in two (PDF text has no other way to say so)."""
    url = _url_at_end(previous)
    first = following.split(None, 1)[0] if following.strip() else ""
    if re.search(r"(?i)(^|\W)https?:/?$", previous.rstrip(" ")) and re.match(r"/{1,2}\w", first):
        return previous.rstrip(" ").endswith("/") != first.startswith("//")  # "URL http:" + "//arxiv.org/..."
    if not url or not first or not _URL_PIECE.fullmatch(first.rstrip(".,;:)")) or _ENTRY_LABEL.match(following):
        return False
    if _url_incomplete(url):
        # The host or the parameter is unfinished: the next piece is its rest when the join
        # names a host a page could come from (``https://`` + ``www.example.org``).
        return first[0].isalnum() and host_is_plausible(trim_url(url + first)) \
            and "." in _host_of(url + first)
    if not long_line or url[-1] in ",;:!?)":
        return False
    if url[-1] == "." and not (first[0].islower() or first[0].isdigit()) \
            or url[-1] == "." and "/" not in first and following.strip() != first:
        return False  # a full stop ends the sentence, unless more path plainly follows
    if re.fullmatch(r"[A-Z][a-z]+[,.;:]?", first) or first[-1] in ",;:" and "/" not in first:
        return False
    # URL-ish characters in the piece, or a piece alone on its line (a word broken anywhere).
    return bool(re.search(r"[/\-_=&?%#.0-9]", first)) or following.strip() == first


@dataclass
class _PdfBlock:
    page: int
    text: str
    refs: list[tuple[str, int]]
    spans: list[tuple[_Frag, int, int]]
    links: list[Link]
    glued: list[int] = field(default_factory=list)  # where a line break inside a URL was closed up


def _join_lines(lines: list[_PdfLine], page: int) -> _PdfBlock:
    block = _PdfBlock(page, "", [], [], [])
    longest = max((len(item.text) for item in lines), default=0)
    previous: _PdfLine | None = None
    for line in lines:
        if previous is not None:
            # The end of the text so far is enough to hold a URL cut by the break (and
            # looking at the whole paragraph for every line would make long ones slow).
            glue = _continues_url(block.text[-2000:], line.text, len(previous.text) >= 0.8 * longest)
            block.text += "" if glue else "\n"
            if glue:
                block.glued.append(len(block.text))
        base = len(block.text)
        block.text += line.text
        block.refs.extend((label, base + offset) for label, offset in line.refs or [])
        block.spans.extend((f, base + s, base + e) for f, s, e in line.spans or [])
        previous = line
    return block


def _paragraphs(lines: list[_PdfLine], page: int) -> list[_PdfBlock]:
    """Body lines of one page grouped into paragraphs by spacing, type size and short last lines."""
    groups: list[list[_PdfLine]] = []
    longest = max((len(item.text) for item in lines), default=0)
    for line in lines:
        if groups:
            prev = groups[-1][-1]
            gap = prev.y - line.y
            same = (0 < gap <= 1.5 * max(prev.size, line.size)
                    and abs(prev.size - line.size) <= 0.15 * prev.size
                    and not (len(prev.text) < 0.6 * longest and prev.text.rstrip()[-1:] in ".:!?"))
            # A URL left unfinished at a column's foot goes on at the next column's head.
            if same or _url_incomplete_at_end(prev.text) and _continues_url(prev.text, line.text, True):
                groups[-1].append(line)
                continue
        groups.append([line])
    return [_join_lines(g, page) for g in groups]


def _url_incomplete_at_end(text: str) -> bool:
    url = _url_at_end(text)
    return bool(url) and _url_incomplete(url)


def _line_end(line: _PdfLine) -> float:
    """Where a line's text ends, estimated (pypdf gives no glyph widths): an average glyph of
    serif and sans-serif text is about 0.42 em wide."""
    return max((f.x + (e - s) * 0.42 * f.size for f, s, e in line.spans or []), default=line.x)


def _columns(lines: list[_PdfLine]) -> list[list[_PdfLine]]:
    """A page's lines column by column, each top to bottom (a page of one column: one list).

    A column starts where many lines start and the lines of the column to its left end before
    it; an indented list in a single column does not pass that test, as its lines overlap.
    """
    counts: dict[int, int] = {}
    for line in lines:
        counts[round(line.x / 6)] = counts.get(round(line.x / 6), 0) + 1
    frequent = sorted(k * 6 for k, n in counts.items() if n >= max(5, 0.12 * len(lines)))
    starts: list[float] = []
    for x in frequent:
        if not starts:
            starts.append(x)
            continue
        left = [item for item in lines if abs(item.x - starts[-1]) <= 6]
        ending_before = sum(_line_end(item) <= x + 0.1 * (x - starts[-1]) for item in left)
        if x - starts[-1] > 60 and ending_before >= 0.8 * len(left):
            starts.append(x)
    if len(starts) < 2:
        return [lines]
    columns: list[list[_PdfLine]] = [[] for _ in starts]
    for line in lines:
        index = max((i for i, x in enumerate(starts) if x <= line.x + 8), default=0)
        columns[index].append(line)
    return [sorted(c, key=lambda item: -item.y) for c in columns if c]


def _furniture_key(text: str) -> str:
    """The text of a running line with its page number (at its start or end) made any number;
    numbers inside the text (a footnote's page, a URL) keep lines apart."""
    return re.sub(r"^\d+(?= )|(?<= )\d+$|^\d+$", "#", " ".join(text.lower().split()))


def _drop_furniture(pages: list[list[_PdfLine]]) -> dict[str, _PdfLine]:
    """Remove running heads, running feet and page numbers; return the ones that cite a URL.

    Furniture is a line among the two top or two bottom lines of a page whose text (any number
    in it counted as the same) comes back at the top or bottom of a third or more of the pages
    (even and odd pages often carry different heads).
    """
    if len(pages) < 3:
        return {}
    seen: dict[str, int] = {}
    for lines in pages:
        for key in {_furniture_key(item.text) for item in lines[:2] + lines[-2:]}:
            seen[key] = seen.get(key, 0) + 1
    repeated = {k for k, n in seen.items() if n >= max(3, len(pages) / 3) and k.strip("# ")}
    cited: dict[str, _PdfLine] = {}
    for index, lines in enumerate(pages):
        edge = {id(item) for item in lines[:2] + lines[-2:]}
        kept = []
        for item in lines:
            key = _furniture_key(item.text)
            if id(item) in edge and key in repeated:
                if "://" in item.text or "www." in item.text:
                    cited.setdefault(key, item)
                continue
            kept.append(item)
        pages[index] = kept
    return cited


def _furniture_blocks(cited: dict[str, _PdfLine], pages: Any) -> list[_PdfBlock]:
    """A URL in a running head or foot is cited once, by the document, not once per page."""
    blocks = []
    for line in cited.values():
        block = _join_lines([line], line.page)
        _attach_links([block], _pdf_links(pages[line.page - 1]))
        _join_linked_urls(block)
        blocks.append(block)
    return blocks


def _replace(block: _PdfBlock, start: int, end: int, new: str) -> None:
    """Replace ``block.text[start:end]``, moving the offsets of everything after it."""
    shift = len(new) - (end - start)

    def moved(offset: int) -> int:
        return offset + shift if offset >= end else min(offset, start + len(new))

    block.text = block.text[:start] + new + block.text[end:]
    block.refs = [(label, moved(o)) for label, o in block.refs]
    block.spans = [(f, moved(a), moved(b)) for f, a, b in block.spans]
    block.links = [Link(item.url, moved(item.start), max(moved(item.end), moved(item.start))) for item in block.links]
    block.glued = [moved(o) for o in block.glued if not start < o < end]


def _match_through_breaks(text: str, pos: int, url: str, glued: list[int]) -> int | None:
    """Where ``url`` ends when read from ``pos`` in ``text`` over line breaks (and over a hyphen
    the typesetter added before one); None when the text says something else."""
    i = 0
    while i < len(url):
        if pos < len(text) and text[pos] == url[i]:
            pos, i = pos + 1, i + 1
        elif pos < len(text) and text[pos] == " " and url[i] == "_":
            pos, i = pos + 1, i + 1  # an underscore some fonts draw and pypdf reads as a gap
        elif pos < len(text) and text[pos].isspace() and "\n" in text[pos:pos + 3]:
            pos += 1
        elif text.startswith("-\n", pos):
            pos += 2
        elif text.startswith("-", pos) and pos + 1 in glued:
            pos += 1  # the hyphen ended a line that was closed up as a URL's
        else:
            return None
    return pos


def _join_linked_urls(block: _PdfBlock) -> None:
    """A URL printed over several lines under a link annotation is the annotation's URL: the
    annotation, not a guess, says where the line breaks fell inside it. Ligatures inside a URL
    are spelled out (``ﬁ`` is ``fi``); the prose around it is left as printed."""
    _spell_out_ligatures(block)
    for link in list(block.links):
        target = link.url.strip()
        if not is_web_url(target):
            continue
        for match in reversed(list(re.finditer(r"(?i)https?://", block.text))):
            if not link.start - 12 <= match.start() < link.end:
                continue
            end = _match_through_breaks(block.text, match.start(), target, block.glued)
            if end is not None and block.text[match.start():end] != target:
                _replace(block, match.start(), end, target)
                break
    _spell_out_ligatures(block)


def _spell_out_ligatures(block: _PdfBlock) -> None:
    for url in reversed(find_urls(block.text)):
        spelled = "".join(unicodedata.normalize("NFKC", c) if c in _LIGATURES else c for c in url.url)
        if spelled != url.url:
            _replace(block, url.start, url.end, spelled)


_LIGATURES = "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"


def _pdf_links(page: Any) -> list[tuple[str, tuple[float, float, float, float]]]:
    found = []
    for annot in page.get("/Annots") or []:
        try:
            annot = annot.get_object()
            action = annot.get("/A")
            action = action.get_object() if action is not None else None
            if annot.get("/Subtype") != "/Link" or action is None or action.get("/S") != "/URI":
                continue
            x1, y1, x2, y2 = (float(v) for v in annot["/Rect"])
            uri = action["/URI"]
            uri = uri.decode("latin-1") if isinstance(uri, bytes) else str(uri)
            found.append((uri, (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a broken annotation is not a citation
    return found


def _char_positions(block: _PdfBlock) -> list[tuple[int, float, float, float]]:
    """(offset, x, y, size) estimated for each character of the block's text.

    pypdf gives one position per text run (not per glyph) and no glyph widths. A piece whose
    reported x does not advance continues the run; characters get half an em each, squeezed to end
    where the next piece really starts. Close enough to find the words a link rectangle covers.
    """
    chars: list[tuple[int, float, float, float]] = []
    rows: dict[float, list[tuple[_Frag, int, int]]] = {}
    for span in block.spans:
        rows.setdefault(span[0].y, []).append(span)
    for row in rows.values():
        starts, cursor = [], None
        for frag, begin, finish in row:
            x = frag.x if cursor is None or frag.x > starts[-1] else cursor
            starts.append(x)
            cursor = x + (finish - begin) * 0.5 * frag.size
        for i, (frag, begin, finish) in enumerate(row):
            width = 0.5 * frag.size
            if i + 1 < len(row) and starts[i + 1] > starts[i] and finish > begin:
                width = min(width, (starts[i + 1] - starts[i]) / (finish - begin))
            chars.extend((o, starts[i] + (o - begin) * width, frag.y, frag.size) for o in range(begin, finish))
    return chars


def _attach_links(blocks: list[_PdfBlock], links: list[tuple[str, tuple[float, float, float, float]]]) -> None:
    positions: dict[int, list[tuple[int, float, float, float]]] = {}
    for url, (x1, y1, x2, y2) in links:
        best: tuple[int, _PdfBlock | None, list[int]] = (0, None, [])
        for block in blocks:
            if not any(y1 <= f.y + 0.3 * f.size <= y2 for f, _, _ in block.spans):
                continue  # no line of the block at the rectangle's height
            if id(block) not in positions:
                positions[id(block)] = _char_positions(block)
            # A glyph is under the rectangle when its centre is: half an em right, a third of the
            # type size above the baseline.
            inside = [o for o, x, y, size in positions[id(block)]
                      if y1 <= y + 0.3 * size <= y2 and x1 <= x + 0.25 * size <= x2]
            # Widths are estimates: the end of a line in the next column may seem to reach under
            # the rectangle, so the block with the most glyphs under it is the one linked.
            if len(inside) > best[0]:
                best = (len(inside), block, inside)
        count, block, inside = best
        if block is not None:
            start, end = _snap_to_words(block.text, min(inside), max(inside) + 1)
            block.links.append(Link(url, start, end))


def _snap_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end


def _open_pdf(data: bytes, path: Path) -> Any:
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError, PdfReadError
    except ImportError:
        raise InputError("reading PDF reports needs pypdf, a dependency of evarchive that is missing "
                         "here: pip install pypdf") from None
    import io

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InputError(f"{path}: the PDF is encrypted and needs a password; "
                             "save an unprotected copy and import that")
        _ = len(reader.pages)
    except DependencyError as exc:
        raise InputError(f"{path}: the PDF is encrypted in a way that needs an extra package "
                         f"({exc})") from None
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from None
    return reader


def read_pdf(data: bytes, path: Path) -> Document:
    reader = _open_pdf(data, path)
    pages: list[list[_PdfLine]] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            pages.append(_pdf_lines(_pdf_fragments(page), number))
        except Exception as exc:  # pypdf raises many kinds on damaged content streams
            raise InputError(f"{path}: page {number} of the PDF cannot be read "
                             f"({type(exc).__name__}: {exc})") from None
    body_size = _body_size([item for p in pages for item in p])
    furniture = _drop_furniture(pages)
    blocks: list[_PdfBlock] = []
    notes: dict[str, Note] = {}
    for number, (page, lines) in enumerate(zip(reader.pages, pages, strict=True), start=1):
        page_blocks, note_blocks = [], []
        for column in _columns(lines):
            body, foot = _split_footnote_area(column, body_size)
            page_blocks += _paragraphs(body, number)
            note_blocks += _pdf_notes(foot, number)
        _attach_links(page_blocks + [b for _, b in note_blocks], _pdf_links(page))
        for block in page_blocks + [b for _, b in note_blocks]:
            _join_linked_urls(block)
        blocks.extend(page_blocks)
        for label, block in note_blocks:
            notes[f"pdf:{number}:{label}"] = Note("footnote", label, block.text, block.links, number)
    blocks.extend(_furniture_blocks(furniture, reader.pages))
    title = None
    try:
        title = (reader.metadata or {}).get("/Title") or None
    except Exception:
        title = None
    return Document("pdf", [_pdf_block(b, notes) for b in blocks], notes,
                    str(title) if title else None)


def _pdf_notes(lines: list[_PdfLine], page: int) -> list[tuple[str, _PdfBlock]]:
    groups: list[tuple[str, list[_PdfLine]]] = []
    for line in lines:
        label = _note_label(line)
        if label is not None:
            if line.refs and line.refs[0][1] == 0:
                line.refs = line.refs[1:]
            else:
                cut = _NOTE_START.match(line.text).end()  # type: ignore[union-attr]
                line.text = line.text[cut:]
                line.spans = [(f, max(0, s - cut), max(0, e - cut)) for f, s, e in line.spans or []]
            groups.append((label, [line]))
        elif groups:
            groups[-1][1].append(line)
    return [(label, _join_lines(g, page)) for label, g in groups]


def _pdf_block(block: _PdfBlock, notes: dict[str, Note]) -> Block:
    refs = []
    for label, offset in block.refs:
        key = _find_note(notes, block.page, label)
        # A marker with no footnote on its page may be an endnote in body type: extract.py looks.
        refs.append(NoteRef(key or f"num:{label}", offset))
    return Block(block.text, page=block.page, links=block.links, note_refs=refs)


def _find_note(notes: dict[str, Note], page: int, label: str) -> str | None:
    """The note a marker on ``page`` refers to: same page first, then the nearest later page."""
    if f"pdf:{page}:{label}" in notes:
        return f"pdf:{page}:{label}"
    later = [n.page for k, n in notes.items() if n.label == label and (n.page or 0) > page]
    return f"pdf:{min(later)}:{label}" if later else None


# --------------------------------------------------------------------------- readers table

Reader = Callable[[bytes, Path], Document]
_READERS: dict[str, Reader] = {
    "txt": read_text,
    "md": read_markdown,
    "html": read_html,
    "docx": read_docx,
    "pdf": read_pdf,
}


def urls_in_document(document: Document) -> list[str]:
    """Every URL a document mentions (bare or linked), for quick checks and messages."""
    found = []
    for block in document.blocks:
        found.extend(u.url for u in find_urls(block.text))
        found.extend(item.url for item in block.links)
    for note in document.notes.values():
        found.extend(u.url for u in find_urls(note.text))
        found.extend(item.url for item in note.links)
    return found


# --------------------------------------------------------------------------- import

@dataclass
class ImportResult:
    """What one import did; ``status`` is 'new' (first version), 'updated' or 'unchanged'."""

    status: str
    report_id: int
    title: str
    version: int
    version_id: int
    sha256: str
    path: str
    format: str
    claims: int
    citations: int
    sources: int
    sources_archived: int
    sources_new: int
    skipped_urls: list[dict[str, Any]]  # url, reason, paragraph, page, line
    changes: dict[str, list[dict[str, Any]]] | None = None
    previous_version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _find_version(db: Any, sha256: str) -> dict[str, Any] | None:
    from .catalogue import one

    return one(db, "SELECT v.*, r.title FROM report_versions v JOIN reports r ON r.id = v.report_id "
                   "WHERE v.sha256 = ?", [sha256])


def _unchanged(db: Any, found: dict[str, Any]) -> ImportResult:
    stats = _source_stats(db, found["id"])
    return ImportResult("unchanged", found["report_id"], found["title"], found["version"],
                        found["id"], found["sha256"], found["path"], found["format"],
                        found["claims"], found["citations"], found["sources"],
                        stats["archived"], 0, [])


def _source_stats(db: Any, version_id: int) -> dict[str, int]:
    from .catalogue import one

    row = one(db, """
        SELECT COUNT(DISTINCT c.source_id) AS sources,
               COUNT(DISTINCT CASE WHEN EXISTS (SELECT 1 FROM captures k WHERE k.source_id = c.source_id
                                                AND """ + supporting("k") + """) THEN c.source_id END) AS archived
        FROM citations c WHERE c.version_id = ?""", [version_id])
    return {"sources": int(row["sources"] or 0), "archived": int(row["archived"] or 0)} if row else \
        {"sources": 0, "archived": 0}


def _position(paragraph: int, page: int | None, line: int | None) -> dict[str, Any]:
    return {"paragraph": paragraph, "page": page, "line": line}


def _check_urls(document: Document, claims: list[Claim]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Normalised form of every citable URL, and every cited string that cannot be captured
    (refused scheme, bad host, IDNA failure, no possible host), each with where it stands."""
    from .urls import normalise_url

    normalised: dict[str, str] = {}
    skipped: list[dict[str, Any]] = []
    for claim in claims:
        for citation in claim.citations:
            url = citation.url
            if url in normalised:
                continue
            try:
                normalised[url] = normalise_url(url)
            except EvarchiveError as exc:
                skipped.append({"url": url, "reason": exc.message,
                                **_position(citation.paragraph, citation.page, claim.line)})
    for block in document.blocks:
        for span in find_non_urls(block.text):
            skipped.append({"url": span.url, "reason": "not a URL: no host a page could come from",
                            **_position(block.paragraph, block.page, block.line)})
    return normalised, skipped


def _report_row(db: Any, title: str | None, path: str) -> dict[str, Any] | None:
    from .catalogue import one

    if title:
        return one(db, "SELECT * FROM reports WHERE title = ? ORDER BY id LIMIT 1", [title])
    # Without a title: the report whose latest import came from this path (its first version may
    # have come from elsewhere under the same --title).
    return one(db, "SELECT r.* FROM reports r JOIN report_versions v ON v.report_id = r.id "
                   "WHERE v.path = ? OR r.path = ? ORDER BY v.id DESC LIMIT 1", [path, path])


def _ensure_sources(db: Any, normalised: dict[str, str]) -> tuple[dict[str, int], int]:
    """Source ids by normalised URL, creating the missing ones; returns how many were new."""
    from .catalogue import insert, utc_now

    wanted = list(dict.fromkeys(normalised.values()))  # first-cited order: ids follow the report
    ids: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for row in db.execute(f"SELECT id, normalised FROM sources WHERE normalised IN ({marks})", chunk):
            ids[row[1]] = int(row[0])
    first_spelling = {}
    for url, norm in normalised.items():
        first_spelling.setdefault(norm, url)  # the URL as first cited in this report
    now = utc_now()
    new = 0
    for norm in wanted:
        if norm not in ids:
            ids[norm] = insert(db, "sources", {"url": first_spelling[norm], "normalised": norm,
                                               "added_at": now})
            new += 1
    return ids, new


def _claims_digest(claims: list[Claim], normalised: dict[str, str]) -> str:
    """One hash over every claim and its citations, for the custody log entry."""
    from .catalogue import to_json

    body = [[c.sha256, c.paragraph, c.offset,
             [[x.url, x.via, x.paragraph, x.offset] for x in c.citations if x.url in normalised]]
            for c in claims]
    return hashlib.sha256(to_json(body).encode("utf-8")).hexdigest()


def _claim_rows_digest(claims: list[Claim], normalised: dict[str, str], source_ids: dict[str, int]) -> str:
    """One hash over what an exported bundle shows of each claim beyond its text and citations:
    its number, page and line, and the source each citation names (which links it to exhibits)."""
    from .catalogue import to_json

    body = [[ordinal, c.page, c.line, [source_ids[normalised[x.url]] for x in c.citations]]
            for ordinal, c in enumerate(claims, start=1)]
    return hashlib.sha256(to_json(body).encode("utf-8")).hexdigest()


def import_report(db: Any, path: Path | str, title: str | None = None,
                  max_bytes: int | None = None, prepared: PreparedReport | None = None) -> ImportResult:
    """Import a report file: one transaction, nothing written when anything is wrong.

    The same file (same SHA-256) imported again changes nothing. A changed file under the same
    title (or, without a title, from the same path) becomes the report's next version, and the
    result carries what changed since the previous one. ``prepared`` (from :func:`check_report`)
    spares parsing the file twice, when it is still the file that was checked.
    """
    report_file = read_report_file(path, max_bytes)
    found = _find_version(db, report_file.sha256)
    if found:
        return _unchanged(db, found)
    if prepared is not None and prepared.sha256 == report_file.sha256:
        document, claims, normalised, skipped = prepared.parts
    else:
        document, claims, normalised, skipped = _prepare(report_file)
    return _store(db, report_file, document, claims, normalised, skipped, title)


@dataclass
class PreparedReport:
    """A report read and segmented, not yet stored: its file's SHA-256 and what was found in it."""

    sha256: str
    parts: tuple[Document, list[Claim], dict[str, str], list[dict[str, Any]]]


def _prepare(report_file: ReportFile) -> tuple[Document, list[Claim], dict[str, str], list[dict[str, Any]]]:
    """Parse and segment a report; refuses one that cites nothing capturable."""
    document = parse_report(report_file)
    claims = segment(document)
    normalised, skipped = _check_urls(document, claims)
    if not normalised:
        why = f" ({len(skipped)} URLs cannot be captured)" if skipped else ""
        raise InputError(f"{report_file.path}: the report cites no http(s) URLs{why}")
    return document, _drop_uncitable(claims, normalised), normalised, skipped


def check_report(path: Path | str, max_bytes: int | None = None) -> PreparedReport:
    """Raise InputError if the report cannot be imported (without touching any catalogue); what
    was read, for :func:`import_report` to store without reading it again."""
    report_file = read_report_file(path, max_bytes)
    return PreparedReport(report_file.sha256, _prepare(report_file))


def _drop_uncitable(claims: list[Claim], normalised: dict[str, str]) -> list[Claim]:
    kept = []
    for claim in claims:
        claim.citations = [c for c in claim.citations if c.url in normalised]
        if claim.citations:
            kept.append(claim)
    return kept


def _store(db: Any, report_file: ReportFile, document: Document, claims: list[Claim],
           normalised: dict[str, str], skipped: list[dict[str, Any]], title: str | None) -> ImportResult:
    from . import custody
    from .catalogue import insert, transaction, utc_now

    path = shown(report_file.path.resolve())  # the report's identity, and shown to people
    with transaction(db):
        found = _find_version(db, report_file.sha256)  # another process may have just imported it
        if found:
            return _unchanged(db, found)
        report = _report_row(db, title, path)
        if report is None:
            name = title or document.title or report_file.path.stem
            report = {"id": insert(db, "reports", {"title": name, "path": path, "created_at": utc_now()}),
                      "title": name}
        previous = latest_version(db, report["id"])
        source_ids, new_sources = _ensure_sources(db, normalised)
        citations = sum(len(c.citations) for c in claims)
        distinct = len({normalised[x.url] for c in claims for x in c.citations})
        version = (previous["version"] + 1) if previous else 1
        version_id = insert(db, "report_versions", {
            "report_id": report["id"], "version": version, "sha256": report_file.sha256,
            "path": path, "format": report_file.format, "size": report_file.size,
            "imported_at": utc_now(), "claims": len(claims), "citations": citations,
            "sources": distinct})
        _insert_claims(db, report["id"], version_id, claims, normalised, source_ids)
        custody.append(db, "report-imported", f"report {report['id']} version {version}", {
            "report_id": report["id"], "title": report["title"], "version": version,
            "sha256": report_file.sha256, "path": path, "format": report_file.format,
            "size": report_file.size, "claims": len(claims), "citations": citations,
            "sources": distinct, "claims_sha256": _claims_digest(claims, normalised),
            "claim_rows_sha256": _claim_rows_digest(claims, normalised, source_ids)})
        stats = _source_stats(db, version_id)
        changes = diff_versions(db, previous["id"], version_id) if previous else None
    return ImportResult("updated" if previous else "new", report["id"], report["title"], version,
                        version_id, report_file.sha256, path, report_file.format, len(claims),
                        citations, distinct, stats["archived"], new_sources, skipped, changes,
                        previous["version"] if previous else None)


def _insert_claims(db: Any, report_id: int, version_id: int, claims: list[Claim],
                   normalised: dict[str, str], source_ids: dict[str, int]) -> None:
    cursor = db.conn.cursor()
    rows = []
    for ordinal, claim in enumerate(claims, start=1):
        cursor.execute(
            "INSERT INTO claims (version_id, report_id, ordinal, text, sha256, scope, paragraph, page, line,"
            " offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (version_id, report_id, ordinal, claim.text, claim.sha256, claim.scope, claim.paragraph,
             claim.page, claim.line, claim.offset))
        claim_id = cursor.lastrowid
        for number, c in enumerate(claim.citations, start=1):
            rows.append((claim_id, version_id, source_ids[normalised[c.url]], number, c.url, c.via,
                         c.paragraph, c.page, c.offset, c.note))
    cursor.executemany(
        "INSERT INTO citations (claim_id, version_id, source_id, ordinal, url, via, paragraph, page,"
        " offset, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


# --------------------------------------------------------------------------- versions and diffs

def _version_claims(db: Any, version_id: int) -> list[dict[str, Any]]:
    claims = {row["id"]: {**row, "citations": []} for row in db.query(
        "SELECT id, ordinal, text, sha256, paragraph, page, line FROM claims WHERE version_id = ? "
        "ORDER BY ordinal", [version_id])}
    for row in db.query(
            "SELECT c.claim_id, c.url, s.normalised FROM citations c JOIN sources s ON s.id = c.source_id "
            "WHERE c.version_id = ? ORDER BY c.claim_id, c.ordinal", [version_id]):
        claims[row["claim_id"]]["citations"].append((row["normalised"], row["url"]))
    return list(claims.values())


def _similar(a: str, b: str) -> float:
    import difflib

    # Words, not characters: as telling for "the same claim, edited", and far cheaper on long text.
    matcher = difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False)
    if matcher.real_quick_ratio() < 0.5 or matcher.quick_ratio() < 0.5:
        return 0.0
    return matcher.ratio()


def _pair_claims(old: list[dict[str, Any]], new: list[dict[str, Any]]
                 ) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Align two versions' claims: pairs (same or edited), removed and added claims.

    Identical claim texts pair first, wherever they moved. The rest pair as edits when a new claim
    near the old one's place is still mostly the same text; the window keeps this linear.
    """
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for claim in old:
        by_hash.setdefault(claim["sha256"], []).append(claim)
    pairs, rest_new = [], []
    for claim in new:
        same = by_hash.get(claim["sha256"])
        if same:
            pairs.append((same.pop(0), claim))
        else:
            rest_new.append(claim)
    rest_old = [c for group in by_hash.values() for c in group]
    rest_old.sort(key=lambda c: c["ordinal"])
    removed, used = [], set()
    cursor = 0
    for claim in rest_old:
        window = [n for n in rest_new[cursor:cursor + _EDIT_WINDOW] if id(n) not in used]
        scored = [(_similar(claim["text"], n["text"]), n) for n in window]
        best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        if best[1] is not None and best[0] >= 0.6:
            pairs.append((claim, best[1]))
            used.add(id(best[1]))
            cursor = rest_new.index(best[1]) + 1
        else:
            removed.append(claim)
    added = [n for n in rest_new if id(n) not in used]
    return pairs, removed, added


_EDIT_WINDOW = 20


def _claim_summary(claim: dict[str, Any]) -> dict[str, Any]:
    return {"paragraph": claim["paragraph"], "page": claim["page"], "line": claim["line"],
            "text": claim["text"]}


def diff_versions(db: Any, old_version_id: int, new_version_id: int) -> dict[str, list[dict[str, Any]]]:
    """What changed between two versions: claims and citations added, removed and edited."""
    old, new = _version_claims(db, old_version_id), _version_claims(db, new_version_id)
    pairs, removed, added = _pair_claims(old, new)
    changes: dict[str, list[dict[str, Any]]] = {
        "claims_added": [_claim_summary(c) for c in added],
        "claims_removed": [_claim_summary(c) for c in removed],
        "claims_edited": [{"old": _claim_summary(o), "new": _claim_summary(n)}
                          for o, n in pairs if o["sha256"] != n["sha256"]],
        "citations_added": [], "citations_removed": [], "citations_edited": []}
    for claim in added:
        changes["citations_added"].extend({"claim": _claim_summary(claim), "url": u} for _, u in claim["citations"])
    for claim in removed:
        changes["citations_removed"].extend({"claim": _claim_summary(claim), "url": u} for _, u in claim["citations"])
    for o, n in pairs:
        _diff_citations(o, n, changes)
    return changes


def _diff_citations(old: dict[str, Any], new: dict[str, Any], changes: dict[str, list[dict[str, Any]]]) -> None:
    """Citations of one claim matched by normalised URL; a new spelling of the same URL is an edit."""
    remaining = list(old["citations"])
    claim = _claim_summary(new)
    for norm, url in new["citations"]:
        match = next((c for c in remaining if c == (norm, url)), None) or \
            next((c for c in remaining if c[0] == norm), None)
        if match is None:
            changes["citations_added"].append({"claim": claim, "url": url})
            continue
        remaining.remove(match)
        if match[1] != url:
            changes["citations_edited"].append({"claim": claim, "old_url": match[1], "url": url})
    changes["citations_removed"].extend({"claim": claim, "url": url} for _, url in remaining)


# --------------------------------------------------------------------------- browsing

def list_reports(db: Any, warcs_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every report with its latest version, and how many of its claims are preserved (with
    ``warcs_dir``: have a capture whose bytes are intact)."""
    rows = list(db.query("""
        SELECT r.id, r.title, r.path, v.id AS version_id, v.version, v.sha256, v.format,
               v.imported_at, v.claims, v.citations, v.sources,
               (SELECT COUNT(*) FROM report_versions x WHERE x.report_id = r.id) AS versions
        FROM reports r JOIN report_versions v ON v.report_id = r.id
        WHERE """ + IS_LATEST_VERSION + """
        ORDER BY r.id"""))
    for row in rows:
        claims = claims_of_version(db, row["version_id"], warcs_dir)
        row["claims_preserved"] = sum(c["preserved"] for c in claims)
        row["sources_archived"] = _source_stats(db, row["version_id"])["archived"]
    return rows


def claims_of_version(db: Any, version_id: int, warcs_dir: Path | None = None) -> list[dict[str, Any]]:
    """Claims of one version, each with its cited sources and whether each is preserved.

    With ``warcs_dir``, preserved means an intact capture: a good capture whose records still hold
    the bytes the catalogue vouches for (``capture_id`` is the newest such capture; ``damaged``
    says the source has good captures but none intact). Without it, any good capture counts.
    """
    claims = {row["id"]: {**row, "sources": [], "preserved": False} for row in db.query(
        "SELECT id, ordinal, text, sha256, scope, paragraph, page, line, offset FROM claims "
        "WHERE version_id = ? ORDER BY ordinal", [version_id])}
    rows = list(db.query("""
            SELECT c.claim_id, c.url, c.via, c.note, c.source_id,
                   (SELECT k.id FROM captures k WHERE k.source_id = c.source_id AND """ + supporting("k") + """
                     ORDER BY k.id DESC LIMIT 1) AS capture_id,
                   (SELECT k.id FROM captures k WHERE k.source_id = c.source_id AND k.status = 'ok'
                     ORDER BY k.id DESC LIMIT 1) AS last_ok_id
            FROM citations c WHERE c.version_id = ? ORDER BY c.claim_id, c.ordinal""", [version_id]))
    intact = intact_captures(db, warcs_dir, {r["source_id"] for r in rows}) if warcs_dir else None
    for row in rows:
        claim = claims[row["claim_id"]]
        capture_id = intact[row["source_id"]] if intact is not None else row["capture_id"]
        preserved = capture_id is not None
        claim["sources"].append({"url": row["url"], "source_id": row["source_id"], "via": row["via"],
                                 "note": row["note"], "capture_id": capture_id, "preserved": preserved,
                                 "damaged": row["capture_id"] is not None and not preserved,
                                 "not_the_page": _not_the_page(db, row) if not preserved else None})
        claim["preserved"] = claim["preserved"] or preserved
    return list(claims.values())


def _not_the_page(db: Any, citation: dict[str, Any]) -> str | None:
    """Why the source's latest successful capture does not support a claim (a soft 404, a wall),
    when it has such a capture and none that supports."""
    from .catalogue import one

    if citation["capture_id"] is not None or citation["last_ok_id"] is None:
        return None
    capture = one(db, "SELECT * FROM captures WHERE id = ?", [citation["last_ok_id"]])
    return not_support_reason(capture) if capture else None


def intact_captures(db: Any, warcs_dir: Path, source_ids: Iterable[int]) -> dict[int, int | None]:
    """Per source, its newest good capture whose records are all intact on disk (a revisit also
    needs its original's), or None. Reads and hashes the records' exact bytes: a WARC file that
    was deleted, truncated or altered since the capture no longer preserves anything."""
    wanted = list(dict.fromkeys(source_ids))
    by_source: dict[int, list[dict[str, Any]]] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        for row in db.query(
                f"SELECT id, source_id, refers_to_capture_id FROM captures WHERE {supporting()} "
                f"AND source_id IN ({', '.join('?' for _ in chunk)}) ORDER BY id DESC", chunk):
            by_source.setdefault(row["source_id"], []).append(row)
    checker = _RecordChecker(db, warcs_dir)
    try:
        return {sid: next((c["id"] for c in by_source.get(sid, []) if checker.capture_intact(c)), None)
                for sid in wanted}
    finally:
        checker.close()


class _RecordChecker:
    """Hashes catalogued WARC records at their offsets, once per capture, one handle per file."""

    def __init__(self, db: Any, warcs_dir: Path) -> None:
        self.db, self.warcs_dir = db, warcs_dir
        self.files: dict[str, Any] = {}
        self.known: dict[int, bool] = {}

    def capture_intact(self, capture: dict[str, Any]) -> bool:
        return self._records_intact(capture["id"]) and (
            capture["refers_to_capture_id"] is None or self._records_intact(capture["refers_to_capture_id"]))

    def _records_intact(self, capture_id: int) -> bool:
        if capture_id not in self.known:
            records = list(self.db.query(
                "SELECT warc_file, offset, length, member_sha256 FROM capture_records WHERE capture_id = ?",
                [capture_id]))
            self.known[capture_id] = bool(records) and all(self._member_intact(r) for r in records)
        return self.known[capture_id]

    def _member_intact(self, record: dict[str, Any]) -> bool:
        name = record["warc_file"]
        if name not in self.files:
            try:
                self.files[name] = open(self.warcs_dir / name, "rb")  # noqa: SIM115 - closed in close()
            except OSError:
                self.files[name] = None
        fh = self.files[name]
        if fh is None or record["member_sha256"] is None:
            return False
        return member_sha256(fh, record["offset"], record["length"]) == record["member_sha256"]

    def close(self) -> None:
        for fh in self.files.values():
            if fh is not None:
                fh.close()


def report_claims(db: Any, ref: str | None = None, warcs_dir: Path | None = None) -> list[dict[str, Any]]:
    """Claims of the latest version of one report (or of every report), with report fields;
    ``warcs_dir`` as for :func:`claims_of_version`."""
    reports = [find_report(db, ref)] if ref else list(db.query("SELECT * FROM reports ORDER BY id"))
    out = []
    for report in reports:
        latest = latest_version(db, report["id"])
        if latest is None:
            continue
        for claim in claims_of_version(db, latest["id"], warcs_dir):
            out.append({"report_id": report["id"], "report": report["title"],
                        "version": latest["version"], **claim})
    return out


def claims_citing(db: Any, source_id: int) -> list[dict[str, Any]]:
    """Claims (latest version of each report) that cite a source, for ``evarchive show``."""
    return list(db.query("""
        SELECT r.id AS report_id, r.title AS report, v.version, k.id AS claim_id, k.paragraph, k.page,
               k.line, k.text, c.url AS cited_as, c.via, c.note
        FROM citations c JOIN claims k ON k.id = c.claim_id
        JOIN report_versions v ON v.id = c.version_id JOIN reports r ON r.id = v.report_id
        WHERE c.source_id = ? AND """ + IS_LATEST_VERSION + """
        ORDER BY r.id, k.ordinal""", [source_id]))


def sources_to_capture(db: Any, version_id: int, warcs_dir: Path | None = None) -> list[str]:
    """URLs (as first cited) of the version's sources that have no good capture yet, or (with
    ``warcs_dir``) no intact one: a capture whose WARC bytes were lost is captured anew."""
    rows = list(db.query("""
        SELECT s.id, s.url, EXISTS (SELECT 1 FROM captures k WHERE k.source_id = s.id AND """ + supporting("k") + """)
               AS captured
        FROM sources s WHERE s.id IN (SELECT source_id FROM citations WHERE version_id = ?)
        ORDER BY s.id""", [version_id]))
    intact = intact_captures(db, warcs_dir, [r["id"] for r in rows if r["captured"]]) if warcs_dir else {}
    return [r["url"] for r in rows if not r["captured"] or (warcs_dir and intact[r["id"]] is None)]
