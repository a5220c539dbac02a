"""Plain-text reports: decoding (UTF-8, UTF-16, Windows-1252) and paragraphs between blank lines."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import InputError
from ...extract import Block, Document

SNIFF_BYTES = 64 * 1024


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
