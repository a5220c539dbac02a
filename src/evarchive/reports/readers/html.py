"""HTML reports, read with lxml: blocks from the body, in-page footnote links become notes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...citedurls import find_urls, is_web_url
from ...extract import Block, Document, Link, Note, NoteRef
from .common import MARKER_TEXT, Builder, join_blocks

_BLOCK_TAGS = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "td",
               "th", "dt", "dd", "figcaption", "caption", "section", "article", "aside", "header",
               "footer", "nav", "main", "tr", "table", "ul", "ol", "dl", "form", "hr", "address",
               "details", "summary", "body", "figure", "center", "fieldset", "tbody", "thead"}
MAX_HTML_DEPTH = 2048  # libxml2's nesting limit even with huge_tree
_CODE_TAGS = {"code", "pre", "kbd", "samp", "tt", "var"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"}
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
# Page furniture, as readers' modes leave it out: navigation, menus, banners, sharing buttons,
# related-article teasers, bylines, edit links, infoboxes. Named by the element, its ARIA role,
# or a word of its class or id ("site-nav", "mw-editsection", "share_buttons").
_FURNITURE_TAGS = {"nav", "aside", "header", "footer", "form", "button", "dialog"}
_FURNITURE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
_FURNITURE_WORDS = {"nav", "navbar", "navigation", "menu", "breadcrumb", "breadcrumbs", "share", "sharing",
                    "social", "related", "newsletter", "cookie", "cookies", "sidebar", "widget", "masthead",
                    "header", "footer", "toc", "navbox", "catlinks", "printfooter", "editsection", "jump",
                    "infobox", "skip", "subscribe", "comments", "byline", "author", "tags", "teaser",
                    "pagination", "languages", "interlanguage", "banner", "advert", "ads", "promo", "authors",
                    "more", "readmore"}
_NAME_WORDS = re.compile(r"[A-Za-z]+")
_CHARSET = re.compile(rb"(?i)<meta[^>]+charset")


class _HtmlWalker:
    """Turns an lxml HTML tree into blocks; note-reference anchors become markers."""

    def __init__(self, note_targets: dict[Any, str], base: str | None) -> None:
        self.note_targets = note_targets  # anchor element -> note key
        self.base = base
        self.blocks: list[Block] = []
        self.current = Builder.new()

    def flush(self) -> None:
        text = self.current.text().rstrip()
        if text.strip() or self.current.refs:
            for link in self.current.links:
                link.end = min(link.end, len(text))
            code = [(start, min(end, len(text))) for start, end in self.current.code]
            self.blocks.append(Block(text, links=self.current.links, note_refs=self.current.refs, code=code))
        self.current = Builder.new()

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
            tag = element.tag if isinstance(element.tag, str) else None
            if tag is None or tag in _SKIP_TAGS:  # comments and processing instructions are not text
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
        if not MARKER_TEXT.match(a.text_content().strip()):
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
    parser = lxml.html.HTMLParser(huge_tree=True, encoding=_encoding(data))
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
    content = main_content(body if body is not None else root)
    drop_furniture(content)
    walker.walk(content)
    walker.flush()
    title = title_el.text_content().strip() if title_el is not None else None
    return Document("html", walker.blocks, notes, title or None)


def _encoding(data: bytes) -> str | None:
    """UTF-8 for a page that declares no encoding and is valid UTF-8 (libxml2 would read it as
    Latin-1, turning every accent and dash into mojibake); otherwise what the page says."""
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) or _CHARSET.search(data[:4096]):
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


def main_content(body: Any) -> Any:
    """The element holding the page's main text, as readers' modes find it: the one <article>
    with paragraphs of text (teasers of other pages are articles too, but short), else <main>
    (which holds all of them when a page carries several full articles), else the whole body."""
    articles = [a for a in body.iter("article") if len(_paragraph_text(a)) >= 500]
    if len(articles) == 1:
        return articles[0]
    for path in (".//main", ".//*[@role='main']", ".//*[@id='mw-content-text']"):
        found = body.find(path) if "@" not in path else next(iter(body.xpath(path)), None)
        if found is not None and found.text_content().strip():
            return found
    return body


def _paragraph_text(element: Any) -> str:
    return "".join(p.text_content() for p in element.iter("p"))


def drop_furniture(content: Any) -> None:
    """Remove the page furniture inside the main content (the content element itself stays)."""
    doomed = [el for el in content.iterdescendants() if isinstance(el.tag, str) and _is_furniture(el)]
    gone = set(doomed)
    for element in doomed:
        if element.getparent() is not None and not any(up in gone for up in element.iterancestors()):
            element.drop_tree()


def _is_furniture(element: Any) -> bool:
    if element.tag in _FURNITURE_TAGS or (element.get("role") or "").lower() in _FURNITURE_ROLES:
        return True
    names = f"{element.get('class') or ''} {element.get('id') or ''}"
    return any(word.lower() in _FURNITURE_WORDS for word in _NAME_WORDS.findall(names))


def _html_notes(holders: dict[str, Any], markers: dict[Any, str]) -> dict[str, Note]:
    notes = {}
    for key, holder in holders.items():
        walker = _HtmlWalker({}, None)
        walker.walk(holder)
        walker.flush()
        text, links = join_blocks(walker.blocks)
        kind = "endnote" if re.search(r"(?i)edn|endnote", key) else "footnote"
        label = next((m.text_content().strip().strip("[]()") for m, k in markers.items()
                      if k == key), key)
        notes[key] = Note(kind, label, text, links)
    return notes
