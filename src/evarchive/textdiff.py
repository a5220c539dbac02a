"""Main text of an HTML page, a similarity figure between two versions, and a diff.

Why this exists: a cited page "changing" is only interesting when what a
reader reads changed. Menus, cookie banners, "most read" lists, timestamps in
footers and ads change on every request, so the comparison is made on the
page's *main text* (the article), never on raw bytes.

Parser choice: selectolax's Lexbor backend. It is an HTML5-conformant parser
(it recovers from broken markup the way browsers do, which the stdlib
``html.parser`` does not, and understands ``<main>``/``<article>`` which
libxml2's HTML4 parser in lxml only tolerates), it is well maintained, ships
wheels, and parses a typical article page in well under a millisecond, which
matters when a nightly check compares a thousand pages.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Bump when extraction changes: cached baseline texts made by an older
# extractor must not be compared with texts made by a newer one.
EXTRACTOR_VERSION = 1

# Elements that never carry the article's text.
_ALWAYS_DROP = (
    "script, style, noscript, template, svg, canvas, iframe, object, embed, "
    "button, select, input, textarea, dialog, "
    "[hidden], [aria-hidden=true], [role=navigation], [role=search], "
    "[role=dialog], [role=alertdialog], [role=complementary], [role=banner], "
    "[role=contentinfo]"
)
# Page-level boilerplate. <header>/<footer> inside an <article> are the
# article's own header (title, byline) and are kept: see _drop_boilerplate.
_PAGE_CHROME = ("nav", "aside", "header", "footer", "menu")
# class/id words that mark boilerplate blocks on sites without semantic tags.
_CHROME_WORDS = re.compile(
    r"(?:^|[\s_-])(?:nav|navbar|navigation|menu|breadcrumbs?|sidebar|"
    r"cookies?|consent|gdpr|banner|advert|advertisement|ads?|promo|sponsored|"
    r"newsletter|subscribe|share|sharing|social|related|recommended|"
    r"most-?read|popular|trending|comments?|masthead|site-?header|"
    r"site-?footer|footer|header|skip-?link|paywall|modal|popup|outbrain|taboola)"
    r"(?:$|[\s_-])",
    re.IGNORECASE,
)
# Chrome words that, inside an article, name the article's own parts.
_PAGE_ONLY = re.compile(r"header|footer|masthead", re.IGNORECASE)
_BLOCKS = (
    "p, h1, h2, h3, h4, h5, h6, li, dt, dd, blockquote, pre, figcaption, "
    "caption, td, th, tr, div, section, article, table, ul, ol, dl, br, hr, "
    "address, details, summary"
)
_WS = re.compile(r"\s+")
# Word tokens; CJK ideographs and kana are tokens one character each, since
# those scripts put no spaces between words.
_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE
)
_SHINGLE = 3


@dataclass(frozen=True)
class PageText:
    """What a reader reads on a page: title, first heading, main text."""

    title: str = ""
    h1: str = ""
    paragraphs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)

    @property
    def words(self) -> int:
        return len(tokens(self.text))


def decode_body(body: bytes, content_type: str | None = None,
                content_encoding: str | None = None) -> str:
    """Bytes as received -> text: undo Content-Encoding, then charset."""
    body = undo_content_encoding(body, content_encoding)
    charset = _charset_from_content_type(content_type) or _sniff_meta_charset(body)
    if body.startswith(codecs.BOM_UTF8):
        charset = "utf-8-sig"
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return body.decode("utf-8", errors="replace")


def undo_content_encoding(body: bytes, encoding: str | None) -> bytes:
    """Undo gzip/deflate; what cannot be undone is returned as it is."""
    enc = (encoding or "").strip().lower()
    try:
        if enc in ("gzip", "x-gzip"):
            # A truncated body (size limit) still yields what it can.
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body)
        if enc == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:  # raw deflate, as some servers send
                return zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
    except (zlib.error, gzip.BadGzipFile, EOFError):
        return body
    return body


def _charset_from_content_type(content_type: str | None) -> str | None:
    m = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.IGNORECASE)
    return m.group(1) if m else None


def _sniff_meta_charset(body: bytes) -> str | None:
    m = re.search(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", body[:4096], re.IGNORECASE)
    return m.group(1).decode("ascii", "replace") if m else None


def extract(html: str | bytes) -> PageText:
    """The page's main text, without navigation, headers, footers, asides,
    scripts, styles, cookie banners and the like."""
    if isinstance(html, bytes):
        html = decode_body(html)
    tree = LexborHTMLParser(html)
    title = _clean(_first_text(tree, "title"))
    _drop(tree, _ALWAYS_DROP)
    _drop_boilerplate(tree)
    root = _main_root(tree)
    if root is None:
        return PageText(title=title)
    h1 = _clean(_first_text(root, "h1") or _first_text(tree, "h1"))
    return PageText(title=title, h1=h1, paragraphs=_paragraphs(root))


def _first_text(node: LexborHTMLParser | LexborNode, selector: str) -> str:
    found = node.css_first(selector)
    return found.text(separator=" ") if found is not None else ""


def _drop(tree: LexborHTMLParser, selector: str) -> None:
    _decompose(tree.css(selector))


def _decompose(nodes: list[LexborNode]) -> None:
    """Remove nodes, skipping those inside another removed node: freeing a
    subtree and then touching a node in it would be a use-after-free."""
    doomed = {node.mem_id for node in nodes}
    top = [node for node in nodes if not _ancestor_in(node, doomed)]
    for node in top:
        node.decompose()


def _ancestor_in(node: LexborNode, ids: set[int]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.mem_id in ids:
            return True
        parent = parent.parent
    return False


def _drop_boilerplate(tree: LexborHTMLParser) -> None:
    doomed = []
    for node in tree.css(", ".join(_PAGE_CHROME)):
        in_article = _inside(node, ("article", "main"))
        if node.tag in ("header", "footer") and in_article:
            continue  # the article's own header/footer: title, byline, date
        doomed.append(node)
    for node in tree.css("[class], [id]"):
        if node.tag in ("html", "body", "main", "article"):
            continue
        marker = f"{node.attributes.get('class') or ''} {node.attributes.get('id') or ''}"
        match = _CHROME_WORDS.search(marker)
        if match is None or node.css_first("article, main") is not None:
            continue
        if _PAGE_ONLY.search(match.group(0)) and _inside(node, ("article", "main")):
            continue  # "article-header" inside the article holds its title
        doomed.append(node)
    _decompose(doomed)


def _inside(node: LexborNode, tags: tuple[str, ...]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in tags:
            return True
        parent = parent.parent
    return False


def _main_root(tree: LexborHTMLParser) -> LexborNode | None:
    """The element holding the main text: the longest <article> when it holds
    most of <main>, else <main>, else the body."""
    main = tree.css_first("main, [role=main]")
    scope = main if main is not None else tree.body
    if scope is None:
        return None
    articles = scope.css("article") if scope is not None else []
    if articles:
        best = max(articles, key=_text_len)
        if main is None or _text_len(best) * 2 >= _text_len(main):
            return best
    return scope


def _text_len(node: LexborNode) -> int:
    return len(node.text(separator=" ", strip=True))


def _paragraphs(root: LexborNode) -> tuple[str, ...]:
    # Mark block boundaries so that inline elements (links, emphasis) stay
    # inside their paragraph while blocks become separate lines for the diff.
    for node in root.css(_BLOCKS):
        node.insert_before("\n\n")
        node.insert_after("\n\n")
    raw = root.text(separator="", deep=True)
    paras = (_clean(part) for part in raw.split("\n\n"))
    return tuple(p for p in paras if p)


def _clean(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip()


# ---------------------------------------------------------------- similarity

def tokens(text: str) -> list[str]:
    """Normalised word sequence: case, width and punctuation differences are
    not changes a reader would call an edit."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def shingles(words: list[str], k: int = _SHINGLE) -> set[int]:
    """Hashed k-word shingles: order-aware (a reordered paragraph or a changed
    word inside a sentence shows) yet linear in the page length."""
    if len(words) < k:
        return {hash(tuple(words))} if words else set()
    return {hash(tuple(words[i:i + k])) for i in range(len(words) - k + 1)}


def similarity(a: PageText | str, b: PageText | str) -> float:
    """Jaccard similarity of the word 3-shingles of two main texts, 0..1.

    1.0 means the same words in the same order. It is linear in page length
    (difflib's ratio is quadratic in the worst case), and its meaning is easy
    to state: the share of three-word phrases the two versions have in common.
    One changed word in a 500-word article gives about 0.99; a rewritten
    paragraph of 50 words about 0.8.
    """
    wa = tokens(a.text if isinstance(a, PageText) else a)
    wb = tokens(b.text if isinstance(b, PageText) else b)
    return _jaccard_tokens(wa, wb)


def _jaccard_tokens(wa: list[str], wb: list[str]) -> float:
    if wa == wb:
        return 1.0
    sa, sb = shingles(wa), shingles(wb)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True)
class Volatility:
    """How a page compares with its capture once the words that change on
    every request (counters, nonces, "3 minutes ago") are set aside."""

    similarity: float  # of the stable words only
    volatile_share: float  # share of the live page's words that change per request
    stable_digest: str  # fingerprint of the live page's stable words


def stable_similarity(old: PageText, live: PageText, live_again: PageText) -> Volatility:
    """Compare ``old`` with ``live`` ignoring every word that differs between
    two fetches of the live page made seconds apart.

    Why: a visitor counter or a nonce in the article area changes on each
    request; that is not an edit of what was cited. A change is "explained"
    only when every word it touches on the live side is one of those volatile
    words; anything else still counts.
    """
    a, b, c = tokens(old.text), tokens(live.text), tokens(live_again.text)
    stable = set()
    for i, _j, n in difflib.SequenceMatcher(a=b, b=c, autojunk=False).get_matching_blocks():
        stable.update(range(i, i + n))
    volatile = set(range(len(b))) - stable
    kept_a: list[str] = []
    kept_b: list[str] = []
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    for op, i1, i2, j1, j2 in ops:
        span = range(j1, j2)
        explained = op != "equal" and (
            all(j in volatile for j in span) if j2 > j1 else (j1 in volatile or j1 - 1 in volatile))
        if not explained:
            kept_a.extend(a[i1:i2])
            kept_b.extend(b[j1:j2])
    digest = hashlib.sha256(" ".join(b[j] for j in range(len(b)) if j not in volatile)
                            .encode()).hexdigest()
    share = len(volatile) / len(b) if b else 0.0
    return Volatility(_jaccard_tokens(kept_a, kept_b), share, digest)


def text_digest(page: PageText) -> str:
    """A stable fingerprint of the normalised main text (for "changed since
    the last check?" without keeping every version's text)."""
    return hashlib.sha256(" ".join(tokens(page.text)).encode()).hexdigest()


# ---------------------------------------------------------------------- diff

@dataclass(frozen=True)
class Change:
    """One changed stretch of paragraphs: what was there, what is there now."""

    kind: str  # "replace" | "delete" | "insert"
    old: tuple[str, ...]
    new: tuple[str, ...]


def changes(old: PageText, new: PageText) -> list[Change]:
    """Paragraph-level changes between two versions (normalised comparison,
    so re-wrapping or re-casing alone is not a change)."""
    a = [" ".join(tokens(p)) for p in old.paragraphs]
    b = [" ".join(tokens(p)) for p in new.paragraphs]
    out: list[Change] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "equal":
            out.append(Change(op, old.paragraphs[i1:i2], new.paragraphs[j1:j2]))
    return out


def word_diff(old: str, new: str) -> str:
    """Inline word diff, ``[-removed-]{+added+}`` (git's --word-diff=plain
    notation), so a changed figure inside a long paragraph stands out."""
    a, b = old.split(), new.split()
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.extend(a[i1:i2])
            continue
        if i2 > i1:
            out.append("[-" + " ".join(a[i1:i2]) + "-]")
        if j2 > j1:
            out.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(out)


def render_diff(old: PageText, new: PageText) -> str:
    """Human-readable diff of main texts: changed paragraphs with inline word
    changes; unchanged text is not repeated."""
    lines: list[str] = []
    for change in changes(old, new):
        if change.kind == "replace" and len(change.old) == len(change.new):
            for o, n in zip(change.old, change.new, strict=True):
                lines.append("~ " + word_diff(o, n))
            continue
        lines.extend("- " + p for p in change.old)
        lines.extend("+ " + p for p in change.new)
    return "\n".join(lines)


def unified(old: PageText, new: PageText, old_label: str = "archived",
            new_label: str = "live") -> str:
    """Unified diff of main-text paragraphs, for tools that read patches."""
    return "".join(difflib.unified_diff(
        [p + "\n" for p in old.paragraphs], [p + "\n" for p in new.paragraphs],
        fromfile=old_label, tofile=new_label, lineterm="\n"))
