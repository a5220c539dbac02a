"""URLs in PDF text: whether a line break cut one in two, and link annotations (which say where
a URL really ends, and which words carry it)."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any

from ...citedurls import find_urls, host_is_plausible, is_web_url, trim_url

from ...extract import Link

if TYPE_CHECKING:
    from .pdf_layout import Frag, PdfBlock


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


def continues_url(previous: str, following: str, long_line: bool) -> bool:
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




def url_incomplete_at_end(text: str) -> bool:
    url = _url_at_end(text)
    return bool(url) and _url_incomplete(url)


def _replace(block: PdfBlock, start: int, end: int, new: str) -> None:
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


def join_linked_urls(block: PdfBlock) -> None:
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


def _spell_out_ligatures(block: PdfBlock) -> None:
    for url in reversed(find_urls(block.text)):
        spelled = "".join(unicodedata.normalize("NFKC", c) if c in _LIGATURES else c for c in url.url)
        if spelled != url.url:
            _replace(block, url.start, url.end, spelled)


_LIGATURES = "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"


def link_annotations(page: Any) -> list[tuple[str, tuple[float, float, float, float]]]:
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


def _char_positions(block: PdfBlock) -> list[tuple[int, float, float, float]]:
    """(offset, x, y, size) estimated for each character of the block's text.

    pypdf gives one position per text run (not per glyph) and no glyph widths. A piece whose
    reported x does not advance continues the run; characters get half an em each, squeezed to end
    where the next piece really starts. Close enough to find the words a link rectangle covers.
    """
    chars: list[tuple[int, float, float, float]] = []
    rows: dict[float, list[tuple[Frag, int, int]]] = {}
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


def attach_links(blocks: list[PdfBlock], links: list[tuple[str, tuple[float, float, float, float]]]) -> None:
    positions: dict[int, list[tuple[int, float, float, float]]] = {}
    for url, (x1, y1, x2, y2) in links:
        best: tuple[int, PdfBlock | None, list[int]] = (0, None, [])
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
