"""A PDF page's layout from pypdf's positioned text pieces: lines (with superscript note
markers), columns, paragraphs, the footnote area, and running heads and feet (furniture)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...citedurls import find_urls, is_web_url

from ...extract import Link
from .common import MARKER_TEXT
from .pdf_links import continues_url, url_incomplete_at_end


@dataclass
class Frag:
    text: str
    x: float
    y: float
    size: float


@dataclass
class PdfLine:
    page: int
    y: float
    size: float
    x: float
    text: str = ""
    refs: list[tuple[str, int]] | None = None
    spans: list[tuple[Frag, int, int]] | None = None
    has_words: bool = False
    raw: list[Frag] = field(default_factory=list)  # every piece drawn on the line, markers too

    def take(self, frag: Frag) -> None:
        # A line's type size is that of its words: not of a space run, not of a marker.
        if frag.text.strip() and (frag.size > self.size or not self.has_words) \
                and not MARKER_TEXT.match(frag.text.strip()):
            self.size, self.y, self.has_words = frag.size, frag.y, True
        self.raw.append(frag)


_PAGE_NUMBER = re.compile(r"(?i)^\s*(page\s*)?\d{1,4}(\s*(of|/)\s*\d{1,4})?\s*$")
NOTE_START = re.compile(r"^\s*[\[(]?(\d{1,3}|[ivxlc]{1,6}|[*\u2020\u2021\u00a7]{1,3})[\].)]?\s+")


def pdf_fragments(page: Any) -> list[Frag]:
    """Text pieces with their position and effective font size, in content order."""
    frags: list[Frag] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: Any, size: float) -> None:
        if not text or not text.strip("\n"):
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        scale = ((tm[2] * cm[0] + tm[3] * cm[2]) ** 2 + (tm[2] * cm[1] + tm[3] * cm[3]) ** 2) ** 0.5
        frags.append(Frag(text.replace("\n", " "), x, y, size * (scale or 1.0)))

    page.extract_text(visitor_text=visit)
    return frags


def _is_superscript(frag: Frag, line: PdfLine) -> bool:
    """A note marker: a short number or symbol in smaller type on a line of larger type.

    Raised text is not required: a text rise (``Ts``, used by many producers) does not show in
    the positions pypdf reports, only the smaller size does.
    """
    raised = frag.y - line.y
    return (frag.size < 0.85 * line.size and -0.1 * line.size <= raised <= 0.8 * line.size
            and bool(MARKER_TEXT.match(frag.text.strip())))


def pdf_lines(frags: list[Frag], page_number: int) -> list[PdfLine]:
    """Group pieces into lines by baseline; superscript markers join the line they mark."""
    lines: list[PdfLine] = []
    for frag in frags:
        line = lines[-1] if lines else None
        if line is not None and (abs(frag.y - line.y) <= 0.45 * max(line.size, frag.size)
                                 or _is_superscript(frag, line)):
            line.take(frag)
            continue
        lines.append(_new_line(frag, page_number))
    for line in lines:
        _assemble_line(line)
    # Producers draw in any order (a page footer before the body); read top to bottom.
    lines.sort(key=lambda item: -item.y)
    return [item for item in lines if item.text.strip() or item.refs]


def _new_line(frag: Frag, page_number: int) -> PdfLine:
    line = PdfLine(page_number, frag.y, frag.size, frag.x)
    line.take(frag)
    return line


def _assemble_line(line: PdfLine) -> None:
    text, spans, refs = "", [], []
    for frag in line.raw:
        if _is_superscript(frag, line):
            refs.append((frag.text.strip().strip("[]()"), len(text.rstrip())))
            continue
        piece = frag.text.lstrip(" ")
        if text and not text.endswith(" ") and frag.text.startswith(" "):
            piece = " " + piece  # one space where pypdf saw a gap, however wide
        spans.append((frag, len(text), len(text) + len(piece)))
        text += piece
    line.text, line.spans, line.refs = text.rstrip(), spans, refs


def body_type_size(lines: list[PdfLine]) -> float:
    weight: dict[float, int] = {}
    for line in lines:
        key = round(line.size * 2) / 2
        weight[key] = weight.get(key, 0) + len(line.text)
    return max(weight, key=lambda k: weight[k]) if weight else 10.0


def split_footnote_area(lines: list[PdfLine], body: float) -> tuple[list[PdfLine], list[PdfLine]]:
    """Lines at the foot of a page in a smaller type, starting with a note number, are notes."""
    # A page number stands at the head or foot; a number alone inside the text is the rest of
    # a line above (a URL's last piece, a figure).
    edge = {id(item) for item in lines[:2] + lines[-2:]}
    lines = [item for item in lines if id(item) not in edge or not _PAGE_NUMBER.match(item.text) or item.refs]
    cut = len(lines)
    while cut > 0 and lines[cut - 1].size < 0.92 * body:
        cut -= 1
    foot = lines[cut:]
    while foot and not note_label(foot[0]):
        foot = foot[1:]
        cut += 1
    if len(foot) > 8 and len(foot) > 0.5 * len(lines):
        return lines, []  # a whole column in small type is a section (a reference list), not notes
    return lines[:cut], foot


def note_label(line: PdfLine) -> str | None:
    if line.refs and line.refs[0][1] == 0:
        return line.refs[0][0]
    match = NOTE_START.match(line.text)
    return match.group(1) if match else None


@dataclass
class PdfBlock:
    page: int
    text: str
    refs: list[tuple[str, int]]
    spans: list[tuple[Frag, int, int]]
    links: list[Link]
    glued: list[int] = field(default_factory=list)  # where a line break inside a URL was closed up
    # (offset, page) where text carried over from a later page starts: a paragraph, a reference
    # entry or a URL that a page break cut goes on at the head of the next page.
    later_pages: list[tuple[int, int]] = field(default_factory=list)

    def page_at(self, offset: int) -> int:
        return max((page for start, page in self.later_pages if start <= offset), default=self.page)


def join_lines(lines: list[PdfLine], page: int) -> PdfBlock:
    block = PdfBlock(page, "", [], [], [])
    longest = max((len(item.text) for item in lines), default=0)
    previous: PdfLine | None = None
    for line in lines:
        if previous is not None:
            # The end of the text so far is enough to hold a URL cut by the break (and
            # looking at the whole paragraph for every line would make long ones slow).
            glue = continues_url(block.text[-2000:], line.text, len(previous.text) >= 0.8 * longest)
            block.text += "" if glue else "\n"
            if glue:
                block.glued.append(len(block.text))
        base = len(block.text)
        block.text += line.text
        block.refs.extend((label, base + offset) for label, offset in line.refs or [])
        block.spans.extend((f, base + s, base + e) for f, s, e in line.spans or [])
        previous = line
    return block


_ENTRY_START = re.compile(r"\s*(\[[^\]\s]{1,10}\]|\d{1,3}[.)])\s")  # "[12] ", "[Kar15a] ", "12. "


def glue_over_page_break(before: PdfBlock, after: PdfBlock) -> str | None:
    """How the first paragraph of a page goes on from the last one of the page before, if it does:
    "" when the page break cut a URL, "\n" when it cut a reference entry before its URL (the entry's
    URL is printed at the head of the next page); None when the next page starts afresh."""
    if not before.spans or not after.spans:
        return None
    size_before, size_after = before.spans[-1][0].size, after.spans[0][0].size
    if abs(size_before - size_after) > 0.15 * size_before:
        return None
    # The end of the page is enough to hold the entry a break cut (and looking at a whole
    # reference list at every page break would make a long one slow).
    tail = before.text[-4000:]
    lines = tail.split("\n")
    following = after.text[:4000].split("\n")
    long_line = len(lines[-1]) >= 0.8 * max(len(line) for line in lines)
    if continues_url(tail[-2000:], following[0], long_line):
        return ""
    entry = next((i for i in range(len(lines) - 1, -1, -1) if _ENTRY_START.match(lines[i])), None)
    head = next((i for i, line in enumerate(following) if _ENTRY_START.match(line)), len(following))
    if entry is None or head == 0:
        return None
    entry_start = len(before.text) - len("\n".join(lines[entry:]))
    head_end = len("\n".join(following[:head]))
    if _cites_between(before, entry_start, len(before.text)):
        return None  # the entry already has its URL: what follows is not its rest
    return "\n" if _cites_between(after, 0, head_end) else None


def _cites_between(block: PdfBlock, start: int, end: int) -> bool:
    return bool(find_urls(block.text[start:end])) or any(
        start <= link.start < end and is_web_url(link.url) for link in block.links)


def append_block(block: PdfBlock, more: PdfBlock, glue: str) -> None:
    """Carry ``more`` (the head of the next page) over into ``block``, moving its offsets."""
    block.text += glue
    if not glue:
        block.glued.append(len(block.text))
    base = len(block.text)
    block.text += more.text
    block.refs.extend((label, base + offset) for label, offset in more.refs)
    block.spans.extend((f, base + s, base + e) for f, s, e in more.spans)
    block.links.extend(Link(item.url, base + item.start, base + item.end) for item in more.links)
    block.glued.extend(base + offset for offset in more.glued)
    block.later_pages.append((base, more.page))
    block.later_pages.extend((base + offset, page) for offset, page in more.later_pages)


def group_paragraphs(lines: list[PdfLine], page: int) -> list[PdfBlock]:
    """Body lines of one page grouped into paragraphs by spacing, type size and short last lines."""
    groups: list[list[PdfLine]] = []
    longest = max((len(item.text) for item in lines), default=0)
    for line in lines:
        if groups:
            prev = groups[-1][-1]
            gap = prev.y - line.y
            same = (0 < gap <= 1.5 * max(prev.size, line.size)
                    and abs(prev.size - line.size) <= 0.15 * prev.size
                    and not (len(prev.text) < 0.6 * longest and prev.text.rstrip()[-1:] in ".:!?"))
            # A URL left unfinished at a column's foot goes on at the next column's head.
            if same or url_incomplete_at_end(prev.text) and continues_url(prev.text, line.text, True):
                groups[-1].append(line)
                continue
        groups.append([line])
    return [join_lines(g, page) for g in groups]



def _line_end(line: PdfLine) -> float:
    """Where a line's text ends, estimated (pypdf gives no glyph widths): an average glyph of
    serif and sans-serif text is about 0.42 em wide."""
    return max((f.x + (e - s) * 0.42 * f.size for f, s, e in line.spans or []), default=line.x)


def page_columns(lines: list[PdfLine]) -> list[list[PdfLine]]:
    """A page's lines column by column, each top to bottom (a page of one column: one list).

    A column starts where many lines start and the lines of the column to its left end before
    it; an indented list in a single column does not pass that test, as its lines overlap.
    Some producers draw a page row by row across its columns, so that one baseline holds a
    line of each column: such rows are cut where a column starts, when what that gives reads
    as columns of prose (a table drawn row by row stays a table, read row by row).
    """
    inner = _inner_column_starts(lines)
    if inner:
        pieces = [piece for line in lines for piece in _cut_at(line, inner)]
        columns = _columns_of(pieces)
        if len(columns) > 1 and all(_reads_as_prose(column) for column in columns):
            return columns
    return _columns_of(lines)


def _inner_column_starts(lines: list[PdfLine]) -> list[float]:
    """Where, inside rows, a piece starts at the same place on many rows (3 in 10 or more):
    the left edge of a column drawn on the same baselines as the one to its left. Words of
    justified text start anywhere; a column's lines start at one x."""
    rows_at: dict[int, int] = {}
    for line in lines:
        for key in {round(f.x / 3) for f in line.raw[1:] if f.x > line.x + 60 and f.text.strip()}:
            rows_at[key] = rows_at.get(key, 0) + 1
    return sorted(k * 3 for k, n in rows_at.items() if n >= max(5, 0.3 * len(lines)))


def _cut_at(line: PdfLine, starts: list[float]) -> list[PdfLine]:
    """A row cut into one line per column, at the pieces that start a column."""
    groups: list[list[Frag]] = [[]]
    for frag in line.raw:
        if groups[-1] and frag.x > groups[-1][0].x + 60 and any(abs(frag.x - x) <= 2 for x in starts):
            groups.append([])
        groups[-1].append(frag)
    if len(groups) == 1:
        return [line]
    pieces = []
    for group in groups:
        piece = _new_line(group[0], line.page)
        for frag in group[1:]:
            piece.take(frag)
        _assemble_line(piece)
        if piece.text.strip() or piece.refs:
            pieces.append(piece)
    return pieces


def _reads_as_prose(column: list[PdfLine]) -> bool:
    """Lines of running text go on from one to the next: most start in lower case (a table's
    cells each start afresh, with a capital or a number)."""
    starts = [line.text.lstrip()[:1] for line in column[1:]]
    return len(starts) >= 3 and sum(not s.isupper() and not s.isdigit() for s in starts) >= 0.5 * len(starts)


def _columns_of(lines: list[PdfLine]) -> list[list[PdfLine]]:
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
    columns: list[list[PdfLine]] = [[] for _ in starts]
    for line in lines:
        index = max((i for i, x in enumerate(starts) if x <= line.x + 8), default=0)
        columns[index].append(line)
    return [sorted(c, key=lambda item: -item.y) for c in columns if c]


def _furniture_key(text: str) -> str:
    """The text of a running line with its page number (at its start or end) made any number;
    numbers inside the text (a footnote's page, a URL) keep lines apart."""
    return re.sub(r"^\d+(?= )|(?<= )\d+$|^\d+$", "#", " ".join(text.lower().split()))


def drop_furniture(pages: list[list[PdfLine]]) -> dict[str, PdfLine]:
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
    cited: dict[str, PdfLine] = {}
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
