"""PDF reports, read with pypdf: page by page, column by column, furniture and footnotes apart.

The layout (lines, columns, paragraphs, running heads) is worked out in :mod:`.pdf_layout`; URLs
cut by line breaks and link annotations are handled in :mod:`.pdf_links`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import InputError
from ...extract import Block, Document, Note, NoteRef
from .pdf_layout import (NOTE_START, PdfBlock, PdfLine, append_block, body_type_size, drop_furniture,
                         glue_over_page_break, group_paragraphs, join_lines, note_label, page_columns,
                         pdf_fragments, pdf_lines, split_footnote_area)
from .pdf_links import attach_links, join_linked_urls, link_annotations


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
    pages: list[list[PdfLine]] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            pages.append(pdf_lines(pdf_fragments(page), number))
        except Exception as exc:  # pypdf raises many kinds on damaged content streams
            raise InputError(f"{path}: page {number} of the PDF cannot be read "
                             f"({type(exc).__name__}: {exc})") from None
    body_size = body_type_size([item for p in pages for item in p])
    furniture = drop_furniture(pages)
    blocks: list[PdfBlock] = []
    notes: dict[str, Note] = {}
    for number, (page, lines) in enumerate(zip(reader.pages, pages, strict=True), start=1):
        page_blocks, note_blocks = [], []
        for column in page_columns(lines):
            body, foot = split_footnote_area(column, body_size)
            page_blocks += group_paragraphs(body, number)
            note_blocks += _pdf_notes(foot, number)
        attach_links(page_blocks + [b for _, b in note_blocks], link_annotations(page))
        for _, block in note_blocks:
            join_linked_urls(block)
        glue = glue_over_page_break(blocks[-1], page_blocks[0]) if blocks and page_blocks else None
        if glue is not None:
            append_block(blocks[-1], page_blocks.pop(0), glue)
        blocks.extend(page_blocks)
        for label, block in note_blocks:
            notes[f"pdf:{number}:{label}"] = Note("footnote", label, block.text, block.links, number)
    for block in blocks:  # once whole: a URL cut by a page break is joined like one cut by a line break
        join_linked_urls(block)
    blocks.extend(_furniture_blocks(furniture, reader.pages))
    title = None
    try:
        title = (reader.metadata or {}).get("/Title") or None
    except Exception:
        title = None
    return Document("pdf", [_pdf_block(b, notes) for b in blocks], notes,
                    str(title) if title else None)


def _pdf_notes(lines: list[PdfLine], page: int) -> list[tuple[str, PdfBlock]]:
    groups: list[tuple[str, list[PdfLine]]] = []
    for line in lines:
        label = note_label(line)
        if label is not None:
            if line.refs and line.refs[0][1] == 0:
                line.refs = line.refs[1:]
            else:
                cut = NOTE_START.match(line.text).end()  # type: ignore[union-attr]
                line.text = line.text[cut:]
                line.spans = [(f, max(0, s - cut), max(0, e - cut)) for f, s, e in line.spans or []]
            groups.append((label, [line]))
        elif groups:
            groups[-1][1].append(line)
    return [(label, join_lines(g, page)) for label, g in groups]


def _pdf_block(block: PdfBlock, notes: dict[str, Note]) -> Block:
    refs = []
    for label, offset in block.refs:
        key = _find_note(notes, block.page_at(offset), label)
        # A marker with no footnote on its page may be an endnote in body type: extract.py looks.
        refs.append(NoteRef(key or f"num:{label}", offset))
    return Block(block.text, page=block.page, links=block.links, note_refs=refs)


def _find_note(notes: dict[str, Note], page: int, label: str) -> str | None:
    """The note a marker on ``page`` refers to: same page first, then the nearest later page."""
    if f"pdf:{page}:{label}" in notes:
        return f"pdf:{page}:{label}"
    later = [n.page for k, n in notes.items() if n.label == label and (n.page or 0) > page]
    return f"pdf:{min(later)}:{label}" if later else None


def _furniture_blocks(cited: dict[str, PdfLine], pages: Any) -> list[PdfBlock]:
    """A URL in a running head or foot is cited once, by the document, not once per page."""
    blocks = []
    for line in cited.values():
        block = join_lines([line], line.page)
        attach_links([block], link_annotations(pages[line.page - 1]))
        join_linked_urls(block)
        blocks.append(block)
    return blocks
