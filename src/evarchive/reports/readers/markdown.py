"""Markdown reports (CommonMark with tables and ``[^label]`` footnotes), read with markdown-it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...citedurls import find_urls
from ...extract import Block, Document, Link, Note, NoteRef
from .common import Builder
from .html import read_html
from .text import decode_text

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


def _markdown_inline(children: Iterable[Any], notes: dict[str, str]) -> Builder:
    out = Builder.new()
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


def _add_with_note_refs(out: Builder, text: str, notes: dict[str, str]) -> None:
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
