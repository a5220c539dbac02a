"""Link each URL a report cites (found by ``citedurls``) to the claim it supports.

The readers in ``reports/readers/`` turn every format into the same shape, a :class:`Document`: body
blocks (paragraphs) with their text, hyperlinks (visible-text span + target) and footnote markers,
plus the footnote/endnote texts. Everything here works on that shape only, so plain text,
Markdown, HTML, docx and PDF reports follow one set of rules:

- a block or line that holds nothing but citations supports the text segment before it (several
  such lines can follow one paragraph);
- a bare URL at the end of a paragraph supports the whole paragraph;
- a URL, hyperlink or footnote marker inside a paragraph supports the sentence it stands in.

URLs are kept exactly as cited (percent-escapes, non-ASCII characters and all); only punctuation
that belongs to the surrounding prose is trimmed.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .citedurls import UrlSpan, capture_url, find_urls, is_schemeless, is_web_url
from .errors import InputError
from .urls import normalise_url

# --------------------------------------------------------------------------- document model

@dataclass
class Link:
    """A hyperlink: its target, and the span of its visible text in the block's text."""

    url: str
    start: int
    end: int


@dataclass
class NoteRef:
    """A footnote or endnote marker at ``offset`` in a block's text."""

    key: str
    offset: int


@dataclass
class Block:
    """One paragraph-like unit of a report (a paragraph, list item, heading, table cell)."""

    text: str
    page: int | None = None
    line: int | None = None
    links: list[Link] = field(default_factory=list)
    note_refs: list[NoteRef] = field(default_factory=list)
    paragraph: int = 0  # 1-based position among the body blocks; set by Document
    code: list[tuple[int, int]] = field(default_factory=list)  # spans set in code (see cited_in_code)


@dataclass
class Note:
    """A footnote or endnote: ``kind`` is 'footnote' or 'endnote', ``label`` as printed."""

    kind: str
    label: str
    text: str
    links: list[Link] = field(default_factory=list)
    page: int | None = None
    line: int | None = None  # where the note's text starts, for text formats


@dataclass
class Document:
    format: str
    blocks: list[Block]
    notes: dict[str, Note] = field(default_factory=dict)
    title: str | None = None

    def __post_init__(self) -> None:
        self.blocks = [b for b in self.blocks if b.text.strip() or b.links or b.note_refs]
        for number, block in enumerate(self.blocks, start=1):
            block.paragraph = number


# --------------------------------------------------------------------------- claims

@dataclass
class Citation:
    """One place a report cites a URL: ``url`` verbatim, ``via`` how it was cited."""

    url: str
    # 'line' | 'inline' (a URL in the text) | 'link' (a hyperlink's target) | 'link-target' (the
    # target of a hyperlink whose text shows another URL) | 'footnote' | 'endnote'
    via: str
    paragraph: int
    offset: int
    page: int | None = None
    note: str | None = None  # the footnote/endnote label, for citations made through one


@dataclass
class Claim:
    """A statement in the report and the citations that support it."""

    text: str
    paragraph: int
    offset: int
    scope: str  # 'paragraph' or 'sentence'
    page: int | None = None
    line: int | None = None
    citations: list[Citation] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class _Cite:
    """A citation found inside a block, before it is assigned to a claim."""

    url: str
    start: int
    end: int
    via: str
    note: str | None = None


# Links pasted from a journal's web page that move around that page or site rather than cite
# anything (the link-only furniture the HTML reader drops with the page's navigation): the label of
# a reference entry linking back to where it is cited ("1" -> "...#back-bib1", Wikipedia's
# "^" -> "#cite_ref-3"), and an author's name linking to the site's search for that author.
_BACK_FRAGMENT_RE = re.compile(r"(?i)^(?:back(?:ref)?(?:[-_]|\d|$)|cite[-_]ref)|[-_]back(?:ref)?\d*$")
_BACK_LABEL_MAX = 4  # "1", "12a", "^", "↑": a label, not a sentence
_AUTHOR_SEARCH_RE = re.compile(r"(?i)(?:^|&)[^=&]*=authors?(?:&|$)|(?:^|&)(?:author|au)=|\[(?:author|au)\]")


def is_navigation_link(url: str, shown: str) -> bool:
    """True for a back-link from a reference entry or a link from an author's name to a search."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    if parts.fragment and _BACK_FRAGMENT_RE.search(parts.fragment) and len(shown.strip()) <= _BACK_LABEL_MAX:
        return True
    query = unquote(parts.query)
    searches = "search" in (parts.path + query).lower() or "term=" in query.lower()
    return (searches and bool(_AUTHOR_SEARCH_RE.search(query))
            and not find_urls(shown))


def _dedupe_links(text: str, bare: list[UrlSpan], links: list[Link]) -> list[_Cite]:
    """Bare URLs and hyperlinks of one text, without counting a linked URL twice.

    When a hyperlink's visible text is itself a URL, the visible URL is the citation (it is what a
    reader of the printed report sees); its target is counted too, as ``link-target``, when it
    names another source.
    """
    cites = [_Cite(u.url, u.start, u.end, "inline") for u in bare]
    for link in _merge_links(text, links):
        if not is_web_url(link.url):
            continue  # mailto:, relative and internal links cite nothing we can capture
        if is_navigation_link(link.url, text[link.start:link.end]):
            continue
        shown = [u for u in bare if u.start < link.end and link.start < u.end]
        if not shown:
            cites.append(_Cite(link.url.strip(), link.start, link.end, "link"))
        elif not any(_same_source(u.url, link.url.strip()) for u in shown):
            # The text shows one URL and the link leads to another (an archived copy, or the
            # original behind an archive link): the reader follows the target, so both count.
            cites.append(_Cite(link.url.strip(), link.start, link.end, "link-target"))
    cites = [c for c in cites if not _names_the_site_of_another(c, cites)]
    cites.sort(key=lambda c: (c.start, c.end))
    return cites


def _host_of(url: str) -> str:
    return re.split(r"[/?#:]", url.split("://", 1)[-1], maxsplit=1)[0].lower()


def _names_the_site_of_another(cite: _Cite, cites: list[_Cite]) -> bool:
    """``"Pacific Black Duck". www.wiresnr.org``: a scheme-less bare host printed beside a link to
    a page of that site names the publication (a citation style's "website" field), not a source."""
    if not is_schemeless(cite.url) or _host_of(cite.url) != cite.url.lower().rstrip("/"):
        return False
    return any(other is not cite and not is_schemeless(other.url) and _host_of(other.url) == _host_of(cite.url)
               for other in cites)


def _same_source(a: str, b: str) -> bool:
    try:
        return normalise_url(capture_url(a)) == normalise_url(capture_url(b))
    except InputError:
        return a == b


def _merge_links(text: str, links: list[Link]) -> list[Link]:
    """One link split over several lines or runs (PDF annotations, Word runs) is one citation.

    Pieces of one link are close together and no sentence ends between them (PDF positions are
    estimates, so a word may fall between two pieces of one link).
    """
    merged: list[Link] = []
    for link in sorted(links, key=lambda item: (item.start, item.end)):
        last = merged[-1] if merged else None
        gap = text[last.end:link.start] if last is not None else ""
        if last is not None and last.url == link.url and len(gap) <= 20 and not re.search(r"[.!?]\s", gap):
            last.end = max(last.end, link.end)
        else:
            merged.append(Link(link.url, link.start, link.end))
    return merged


def note_citations(note: Note) -> list[_Cite]:
    return _dedupe_links(note.text, find_urls(note.text), note.links)


def cited_in_code(text: str, span: UrlSpan, code: list[tuple[int, int]]) -> bool:
    """The rule for code, inline or block, in every format: code is quoted material, so a URL in
    it is a citation only when the code holds nothing but that URL (`` `https://x` ``); a URL
    inside a program or a command (``fetch("https://x")``) is part of the code, not evidence."""
    for start, end in code:
        if start <= span.start < end:
            return text[start:end].strip() == span.url
    return True


def block_citations(block: Block, notes: dict[str, Note]) -> list[_Cite]:
    bare = [u for u in find_urls(block.text) if cited_in_code(block.text, u, block.code)]
    cites = _dedupe_links(block.text, bare, block.links)
    for ref in block.note_refs:
        note = notes.get(ref.key)
        if note is None:
            continue
        for c in note_citations(note):
            cites.append(_Cite(c.url, ref.offset, ref.offset, note.kind, note.label))
    cites.sort(key=lambda c: (c.start, c.end))
    return cites


# A line that, apart from its URLs, says only "Source:", "See", "Link" and the like is a citation
# line, not a claim.
_LABEL_WORDS = {"see", "cf", "source", "sources", "via", "link", "links", "url", "ref", "refs",
                "reference", "references", "available", "at", "online", "also", "and", "here",
                # the identifiers a bibliography entry ends with ("PMID 12099792", "doi:10.1/x")
                "doi", "pmid", "pmc", "isbn", "issn", "lccn", "oclc", "bibcode", "arxiv", "jstor", "hdl", "s2cid"}
_WORD_RE = re.compile(r"\w+")


def _is_citation_line(text: str, start: int, end: int, cites: list[_Cite]) -> bool:
    inside = [c for c in cites if start <= c.start and c.end <= end and c.end > c.start]
    if not inside:
        return False
    rest, pos = [], start
    for c in inside:
        rest.append(text[pos:c.start])
        pos = max(pos, c.end)
    rest.append(text[pos:end])
    words = _WORD_RE.findall(" ".join(rest))
    if not words:
        return True
    # "[12] https://..." and "Source: https://..." are reference lines, not statements.
    return len(words) <= 3 and all(w.lower() in _LABEL_WORDS or (w.isdigit() and len(w) <= 3)
                                   for w in words)


@dataclass
class _Segment:
    start: int
    end: int
    citation_only: bool


def _segments(text: str, cites: list[_Cite]) -> list[_Segment]:
    """Split a block into runs of prose lines and lines that hold only citations."""
    segments: list[_Segment] = []
    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        if not line.strip():
            continue
        cite_only = _is_citation_line(text, start, end, cites)
        if segments and not cite_only and not segments[-1].citation_only:
            segments[-1].end = end  # a hard-wrapped paragraph continues
        else:
            segments.append(_Segment(start, end, cite_only))
    return segments


# --------------------------------------------------------------------------- sentences

_SUPERSCRIPT_DIGITS = "\u00b9\u00b2\u00b3\u2070\u2074\u2075\u2076\u2077\u2078\u2079"
_SENTENCE_END = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(?:\[\d{1,3}\]|[" + _SUPERSCRIPT_DIGITS + r"]+)*\s+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "no", "nos", "art", "arts", "vs", "etc",
                  "e.g", "i.e", "eg", "ie", "inc", "ltd", "jr", "sr", "gen", "col", "lt", "sgt",
                  "rep", "sen", "gov", "p", "pp", "vol", "cf", "fig", "para", "ch", "sec", "approx",
                  "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
                  "dec", "u.s", "u.k", "u.n", "op", "cit", "ibid", "al"}
_OPENERS = "\"'\u201c\u2018\u00ab([\u2013\u2014-"
_BULLETS = "\u2022\u2023\u2043\u25aa\u25e6"  # a list item run into the text before it ("words. \u2022 Unlike")


def _starts_sentence(text: str, pos: int) -> bool:
    if pos < len(text) and text[pos] in _BULLETS:
        pos += 1
        while pos < len(text) and text[pos].isspace():
            pos += 1
    while pos < len(text) and text[pos] in _OPENERS:
        pos += 1
    if pos >= len(text):
        return False
    ch = text[pos]
    # Scripts without case (Arabic, Hebrew, Devanagari...) start a sentence with any letter.
    return ch.isupper() or ch.isdigit() or (ch.isalpha() and not ch.islower())


def sentence_starts(text: str, start: int, end: int, urls: list[_Cite]) -> list[int]:
    """Offsets where sentences begin in ``text[start:end]`` (the first is ``start``)."""
    starts = [start]
    for match in _SENTENCE_END.finditer(text, start, end):
        dot = match.start()
        if any(u.start <= dot < u.end for u in urls):
            continue  # a full stop inside a URL
        word = re.search(r"([\w.]+)$", text[start:dot])
        token = word.group(1).lower() if word else ""
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
            continue  # "Art. 3", "e.g. the", initials such as "A. Lukashenko"
        if match.end() < end and _starts_sentence(text, match.end()):
            starts.append(match.end())
    # A bare URL standing between two sentences ("... fantasies. https://x The next ...") ends the
    # sentence before it: the next sentence starts after the URL.
    for url in urls:
        after = re.match(r"\s+", text[url.end:end])
        before = text[start:url.start].rstrip()
        if url.via == "inline" and after and before[-1:] in ".!?\u2026" \
                and _starts_sentence(text, url.end + after.end()):
            starts.append(url.end + after.end())
    return sorted(set(starts))


def _sentence_at(starts: list[int], end: int, pos: int) -> tuple[int, int]:
    begin = max(s for s in starts if s <= pos) if pos >= starts[0] else starts[0]
    later = [s for s in starts if s > begin]
    return begin, later[0] if later else end


def _is_trailing(text: str, cite: _Cite, seg: _Segment, cites: list[_Cite]) -> bool:
    """True when only punctuation and other bare URLs follow ``cite`` to the segment's end."""
    pos = cite.end
    for other in cites:
        if other.start >= pos and other.end <= seg.end and other.via == "inline":
            if _WORD_RE.search(text[pos:other.start]):
                return False
            pos = other.end
    return not _WORD_RE.search(text[pos:seg.end])


# --------------------------------------------------------------------------- numbered notes

# "[3]" or a superscript "³" glued to the text it marks; the note is a later line "[3] ... URL",
# "3. ... URL" or "³ ... URL" (endnotes in plain text, PDF endnotes set in body type).
# A bibliography label is a number ("[12]") or an author-year key ("[Kar15a]", "[SPB+14]", "[Red]");
# in the text it follows a word, with or without a space ("shown in [12]", "through [Kar15a]").
_LABEL = r"\d{1,3}|[A-Za-z]{1,6}\+?(?:\d{2})?[a-z]?"
# Several labels in one pair of brackets ("[38, 49, 54]", "[HS97; Mit97]") cite each of them.
_MARKER_RE = re.compile(r"(?:(?<=\S)|(?<=\S ))\[((?:" + _LABEL + r")(?:[,;]\s?(?:" + _LABEL + r"))*)\]|["
                        + _SUPERSCRIPT_DIGITS + r"]+")
_ENTRY_RE = re.compile(r"\s*(?:\[(" + _LABEL + r")\]|(\d{1,3})[.)]?|([" + _SUPERSCRIPT_DIGITS + r"]+))\s+")
_TO_DIGITS = str.maketrans(_SUPERSCRIPT_DIGITS, "1230456789")


@dataclass
class _Entry:
    block: int
    start: int  # where the entry's line starts in the block text
    body: int  # where its text starts, after the label
    end: int
    used: bool = False


def _entries(document: Document) -> dict[str, list[_Entry]]:
    """Numbered lines that cite a URL, by label, in document order (candidate endnotes)."""
    found: dict[str, list[_Entry]] = {}
    for index, block in enumerate(document.blocks):
        current: tuple[str, _Entry] | None = None
        pos = 0
        for line in block.text.split("\n"):
            match = _ENTRY_RE.match(line)
            if match:
                label = (match.group(1) or match.group(2) or match.group(3)).translate(_TO_DIGITS)
                current = (label, _Entry(index, pos, pos + match.end(), pos + len(line)))
                found.setdefault(label, []).append(current[1])
            elif current is not None:
                current[1].end = pos + len(line)  # a note's continuation line
            pos += len(line) + 1
    for label in list(found):
        found[label] = [e for e in found[label] if _cites(document.blocks[e.block], e.body, e.end)]
    return {k: v for k, v in found.items() if v}


def _cites(block: Block, start: int, end: int) -> bool:
    text = block.text[start:end]
    return bool(find_urls(text)) or any(start <= item.start < end and is_web_url(item.url) for item in block.links)


def _markers(document: Document) -> list[tuple[int, int, str]]:
    """(block, offset, label) of every numbered marker: in the text, or left by a reader (PDF)."""
    found = []
    for index, block in enumerate(document.blocks):
        urls = find_urls(block.text)
        for match in _MARKER_RE.finditer(block.text):
            if not any(u.start <= match.start() < u.end for u in urls):
                labels = re.split(r"[,;]\s?", match.group(1) or match.group(0))
                found.extend((index, match.start(), label.translate(_TO_DIGITS)) for label in labels)
        found.extend((index, r.offset, r.key[4:]) for r in block.note_refs if r.key.startswith("num:"))
    return found


_LIST_HEADING = re.compile(r"(?i)^\W*(references?|bibliography|works cited|literature cited|sources|notes|"
                           r"endnotes|footnotes|literatur|quellen|bibliographie|r\u00e9f\u00e9rences)\W*$")


def _list_headings(document: Document) -> list[int]:
    return [i for i, block in enumerate(document.blocks) if _LIST_HEADING.match(block.text.strip())]


def _within_first_list(headings: list[int], marker_block: int, entry_block: int) -> bool:
    """A marker refers to the first reference list after it: an entry under a later "References"
    heading belongs to another paper of the document (a dossier of papers, each with its list)."""
    first = bisect.bisect_right(headings, marker_block)
    return first + 1 >= len(headings) or entry_block < headings[first + 1]


def resolve_numbered_notes(document: Document) -> None:
    """Turn numbered endnote lines that some marker refers to into notes, and markers into refs."""
    entries = _entries(document)
    markers = _markers(document) if entries else []
    headings = _list_headings(document) if entries else []
    for block in document.blocks:
        block.note_refs = [r for r in block.note_refs if not r.key.startswith("num:")]
    for index, offset, label in markers:
        entry = next((e for e in entries.get(label, [])
                      if (e.block, e.start) > (index, offset)), None)
        if entry is not None and not _within_first_list(headings, index, entry.block):
            continue
        if entry is None:
            continue
        key = f"num:{entry.block}:{entry.start}"
        if not entry.used:
            block = document.blocks[entry.block]
            links = [Link(item.url, item.start - entry.body, item.end - entry.body) for item in block.links
                     if entry.body <= item.start < entry.end]
            document.notes[key] = Note("endnote", label, block.text[entry.body:entry.end], links, block.page)
            entry.used = True
        document.blocks[index].note_refs.append(NoteRef(key, offset))
    for index, block in enumerate(document.blocks):
        spans = [(e.start, e.end) for group in entries.values() for e in group if e.used and e.block == index]
        if spans:
            _cut_spans(block, spans)


def _cut_spans(block: Block, spans: list[tuple[int, int]]) -> None:
    """Remove note lines from a block (they now live in ``Document.notes``), shifting offsets."""
    spans = sorted(spans)
    pieces, pos = [], 0
    for start, end in spans:
        pieces.append((pos, start))
        pos = min(len(block.text), end + 1)
    pieces.append((pos, len(block.text)))

    def moved(offset: int) -> int | None:
        shift = 0
        for start, end in pieces:
            if start <= offset <= end:
                return offset - start + shift
            shift += end - start
        return None

    block.text = "".join(block.text[s:e] for s, e in pieces)
    block.links = [Link(item.url, a, b) for item in block.links
                   if (a := moved(item.start)) is not None and (b := moved(item.end)) is not None]
    block.note_refs = [NoteRef(r.key, o) for r in block.note_refs if (o := moved(r.offset)) is not None]


# --------------------------------------------------------------------------- segmentation

class _Claims:
    """Claims in document order, one per distinct (paragraph, offset, text)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[int, int, str], Claim] = {}

    def get(self, block: Block, start: int, end: int, scope: str) -> Claim:
        raw = block.text[start:end]
        lead = len(raw) - len(raw.lstrip())
        text = raw.strip()
        key = (block.paragraph, start + lead, text)
        claim = self.by_key.get(key)
        if claim is None:
            line = None
            if block.line is not None:
                line = block.line + block.text.count("\n", 0, start + lead)
            claim = Claim(text, block.paragraph, start + lead, scope, block.page, line)
            self.by_key[key] = claim
        return claim


def _cite_record(block: Block, cite: _Cite, via: str) -> Citation:
    return Citation(cite.url, via, block.paragraph, cite.start, block.page, cite.note)


_LINK_BAR_MAX = 400  # a sentence of only links is short: longer ones are not looked at


def _cites_between(cites: list[_Cite], starts: list[int], begin: int, end: int) -> list[_Cite]:
    """The citations that start in ``[begin, end]`` (``cites`` sorted by start, ``starts`` theirs)."""
    return cites[bisect.bisect_left(starts, begin):bisect.bisect_right(starts, end)]


def segment(document: Document) -> list[Claim]:
    """Every claim of the document that cites at least one URL, with its citations."""
    resolve_numbered_notes(document)
    claims = _Claims()
    previous: tuple[Block, _Segment] | None = None
    for block in document.blocks:
        cites = block_citations(block, document.notes)
        if not cites:
            if block.text.strip():
                previous = (block, _Segment(0, len(block.text), False))
            continue
        starts_cache: dict[int, list[int]] = {}
        cite_starts = [c.start for c in cites]
        for seg in _segments(block.text, cites):
            inside = [c for c in cites if seg.start <= c.start <= seg.end]
            if seg.citation_only:
                owner_block, owner_seg = previous or (block, seg)
                claim = claims.get(owner_block, owner_seg.start, owner_seg.end, "paragraph")
                claim.citations.extend(
                    _cite_record(block, c, "line" if c.via == "inline" else c.via) for c in inside)
                continue
            previous = (block, seg)
            for cite in inside:
                if cite.via == "inline" and _is_trailing(block.text, cite, seg, cites):
                    claim = claims.get(block, seg.start, seg.end, "paragraph")
                else:
                    starts = starts_cache.setdefault(
                        seg.start, sentence_starts(block.text, seg.start, seg.end, cites))
                    begin, finish = _sentence_at(starts, seg.end, cite.start)
                    if finish - begin <= _LINK_BAR_MAX and _is_citation_line(
                            block.text, begin, finish, _cites_between(cites, cite_starts, begin, finish)):
                        # A "sentence" of nothing but links ("View at Publisher · PubMed" after a
                        # reference) says nothing: its links cite for the paragraph they end.
                        begin, finish = seg.start, seg.end
                    whole = begin == seg.start and finish == seg.end
                    claim = claims.get(block, begin, finish, "paragraph" if whole else "sentence")
                claim.citations.append(_cite_record(block, cite, cite.via))
    return list(claims.by_key.values()) + _unreferenced_notes(document)


def _unreferenced_notes(document: Document) -> list[Claim]:
    """A note that cites URLs but that no marker in the body refers to (a lost marker, as in OCR
    text where "[^140]" became " 140") is a claim of its own, placed after the body in note order:
    its URLs never vanish unseen, and its text says what they support."""
    referenced = {r.key for block in document.blocks for r in block.note_refs}
    claims = []
    for key, note in document.notes.items():
        cites = [] if key in referenced else note_citations(note)
        if cites and note.text.strip():
            paragraph = len(document.blocks) + len(claims) + 1
            claim = Claim(note.text.strip(), paragraph, 0, "note", note.page, note.line)
            claim.citations = [Citation(c.url, note.kind, paragraph, c.start, note.page, note.label) for c in cites]
            claims.append(claim)
    return claims


def iter_citations(claims: list[Claim]) -> Iterator[tuple[Claim, Citation]]:
    for claim in claims:
        for citation in claim.citations:
            yield claim, citation
