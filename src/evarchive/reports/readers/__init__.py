"""One reader per report format, each turning a file's bytes into an :class:`extract.Document`
(blocks with hyperlinks and footnote markers, plus the notes). Readers load their parsing
library (markdown-it, lxml, python-docx, pypdf) on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...citedurls import find_urls

from ...extract import Document
from .docx import hyperlink_field_target, read_docx
from .html import read_html
from .markdown import read_markdown
from .pdf import read_pdf
from .text import decode_text, read_text, text_blocks

__all__ = ["READERS", "Reader", "decode_text", "hyperlink_field_target", "read_docx", "read_html",
           "read_markdown", "read_pdf", "read_text", "text_blocks", "urls_in_document"]


Reader = Callable[[bytes, Path], Document]
READERS: dict[str, Reader] = {
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
