"""What the readers share: a block being built (text, links, note markers, code spans), the
shape of a footnote marker, and notes joined from several paragraphs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...extract import Block, Link, NoteRef


@dataclass
class Builder:
    """Accumulates one block's text with its links and note markers."""

    parts: list[str]
    links: list[Link]
    refs: list[NoteRef]
    code: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def new(cls) -> Builder:
        return cls([], [], [])

    @property
    def length(self) -> int:
        return sum(len(p) for p in self.parts)

    def add(self, text: str) -> None:
        if text:
            self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


MARKER_TEXT = re.compile(r"^[\[(]?\s*(\d{1,4}|[ivxlc]{1,6}|[*\u2020\u2021\u00a7]{1,3})\s*[\])]?$",
                          re.IGNORECASE)


def join_blocks(blocks: list[Block]) -> tuple[str, list[Link]]:
    text, links = "", []
    for block in blocks:
        if text:
            text += "\n"
        links.extend(Link(item.url, item.start + len(text), item.end + len(text)) for item in block.links)
        text += block.text
    return text, links
