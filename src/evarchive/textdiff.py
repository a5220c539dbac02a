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
import hashlib
import itertools
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Bump when extraction changes: cached baseline texts made by an older
# extractor must not be compared with texts made by a newer one.
EXTRACTOR_VERSION = 2

# Bounds. A nightly check judges a thousand pages and must end, whatever one
# of them is (a 100 MB single line, a gzip bomb): what lies beyond these is
# not read, and the page is marked ``cut`` so that a verdict can say so.
MAX_INFLATED = 16 << 20  # bytes a compressed body may inflate to
MAX_HTML_BYTES = 4 << 20  # HTML parsed for the main text (bytes, or characters of a str)
MAX_TEXT_CHARS = 1 << 20  # main text kept (about 150,000 words; a book, not an article)
# Element comparisons difflib may spend on one diff; beyond it, unchanged
# stretches are found by unique anchors only (see ``opcodes``).
DIFF_BUDGET = 4_000_000

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
# Word tokens; CJK ideographs and kana are tokens one character each, since
# those scripts put no spaces between words.
_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE
)
_SHINGLE = 3
# Markup read before the rest of a page is left out (see _markup_end):
# elements (a long article has a few thousand), a depth, and the sum of
# depths (a real 4 MiB page sums to about 2 million).
MAX_ELEMENTS = 100_000
MAX_DEPTH = 1024
MAX_NESTING_WORK = 20_000_000
# Below this many opening tags no limit can be passed: depth needs more than MAX_DEPTH of them,
# and their sum of depths is at most n(n+1)/2 (524,800 here), far below MAX_NESTING_WORK.
_OPENINGS_WITHIN_ALL_LIMITS = MAX_DEPTH
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)[^>]*?(/?)>")
# Elements that never hold others open: void ones, and those the next
# sibling closes implicitly (a page of unclosed <p>s is one level deep).
_FLAT = frozenset(
    "area base br col embed hr img input link meta source track wbr param keygen "
    "p li dt dd tr td th option optgroup thead tbody tfoot colgroup caption rb rt rp rtc".split())


@dataclass(frozen=True)
class PageText:
    """What a reader reads on a page: title, first heading, main text."""

    title: str = ""
    h1: str = ""
    paragraphs: tuple[str, ...] = field(default_factory=tuple)
    # Why only the page's start is here, in words ("" when it is all here):
    # it went on beyond a size, inflation, HTML or main-text limit.
    cut: str = ""
    # Non-zero when the main text was only counted, not kept (``extract``'s ``words_enough``):
    # it has at least this many words, and there are no paragraphs to read.
    words_at_least: int = 0

    @property
    def text(self) -> str:
        if self.words_at_least:
            raise ValueError("only the length of this page's main text was read")
        return "\n\n".join(self.paragraphs)

    @property
    def words(self) -> int:
        return len(tokens(self.text))

    def fewer_words_than(self, limit: int) -> bool:
        """``words < limit``, without tokenising a long page to its end (the classifier asks
        this of every page a capture classifies)."""
        if self.words_at_least:
            return limit > self.words_at_least
        return not _has_words(unicodedata.normalize("NFKC", self.text), limit)


def decode_body(body: bytes, content_type: str | None = None,
                content_encoding: str | None = None) -> str:
    """Bytes as received -> text: undo Content-Encoding (bounded by
    MAX_INFLATED), then charset."""
    return _decode(inflate(body, content_encoding)[0], content_type)


def _decode(body: bytes, content_type: str | None) -> str:
    charset = _charset_from_content_type(content_type) or _sniff_meta_charset(body)
    if body.startswith(codecs.BOM_UTF8):
        charset = "utf-8-sig"
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return body.decode("utf-8", errors="replace")


def undo_content_encoding(body: bytes, encoding: str | None, limit: int = MAX_INFLATED) -> bytes:
    """Undo gzip/deflate, at most ``limit`` bytes of it; what cannot be
    undone is returned as it is."""
    return inflate(body, encoding, limit)[0]


def inflate(body: bytes, encoding: str | None, limit: int = MAX_INFLATED) -> tuple[bytes, bool]:
    """Undo gzip/deflate without ever holding more than ``limit`` inflated
    bytes (a 1 MB body can inflate to 1 GB). Returns the bytes and whether the
    body inflates past the limit."""
    enc = (encoding or "").strip().lower()
    if enc in ("gzip", "x-gzip"):
        wbits = (16 + zlib.MAX_WBITS,)
    elif enc == "deflate":
        wbits = (zlib.MAX_WBITS, -zlib.MAX_WBITS)  # zlib-wrapped, or raw as some servers send
    else:
        return body, False
    for bits in wbits:
        inflater = zlib.decompressobj(bits)
        try:
            # A truncated body (size limit) still yields what it can.
            out = inflater.decompress(body, limit)
        except zlib.error:
            continue
        return out, bool(inflater.unconsumed_tail)
    return body, False


def page_of(body: bytes, content_type: str | None = None, content_encoding: str | None = None,
            truncated: bool = False, words_enough: int = 0) -> PageText:
    """The main text of a body as received, within the bounds above;
    ``truncated``: the body itself was cut at a size limit; ``words_enough``: as ``extract``."""
    raw, over = inflate(body, content_encoding, MAX_HTML_BYTES)
    page = extract(_decode(raw[:MAX_HTML_BYTES], content_type), words_enough)
    if over:
        return replace(page, cut=f"its {content_encoding} body inflates past {_mib(MAX_HTML_BYTES)}")
    if truncated:
        return replace(page, cut="its body goes on beyond the bytes fetched")
    if len(raw) > MAX_HTML_BYTES:
        return replace(page, cut=f"over {_mib(MAX_HTML_BYTES)} of HTML")
    return page


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB"


def _charset_from_content_type(content_type: str | None) -> str | None:
    m = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.IGNORECASE)
    return m.group(1) if m else None


def _sniff_meta_charset(body: bytes) -> str | None:
    m = re.search(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", body[:4096], re.IGNORECASE)
    return m.group(1).decode("ascii", "replace") if m else None


def extract(html: str | bytes, words_enough: int = 0) -> PageText:
    """The page's main text, without navigation, headers, footers, asides,
    scripts, styles, cookie banners and the like.

    ``words_enough``: a caller that only asks whether the main text has fewer words than this
    (a capture's classification) gets, for a page that has at least as many, its title and
    heading with ``words_at_least`` set and no paragraphs: splitting a long page into
    paragraphs is most of the cost of reading it."""
    if isinstance(html, bytes):
        html = decode_body(html)
    cut = f"over {_mib(MAX_HTML_BYTES)} of HTML" if len(html) > MAX_HTML_BYTES else ""
    html = html[:MAX_HTML_BYTES]
    end = _markup_end(html)
    if end is not None:
        html, cut = html[:end[0]], end[1]
    tree = LexborHTMLParser(html)
    title = _clean(_first_text(tree, "title"))[:MAX_TEXT_CHARS]
    _drop(tree, _ALWAYS_DROP)
    _drop_boilerplate(tree)
    root = _main_root(tree)
    if root is None:
        return PageText(title=title, cut=cut)
    h1 = _clean(_first_text(root, "h1") or _first_text(tree, "h1"))[:MAX_TEXT_CHARS]
    if words_enough and _reaches_words(root, words_enough):
        return PageText(title=title, h1=h1, cut=cut, words_at_least=words_enough)
    paragraphs, full = _paragraphs(root)
    if not cut and not full:
        cut = f"over {_mib(MAX_TEXT_CHARS)} of main text"
    return PageText(title=title, h1=h1, paragraphs=paragraphs, cut=cut)


def _markup_end(html: str) -> tuple[int, str] | None:
    """Where the markup passes what a page may hold, and which limit it
    passes; None when it stays within them. Counted as the markup is written
    (script and style contents skipped): elements (MAX_ELEMENTS), and for
    those that hold others open (not void ones, nor those the next sibling
    closes) the depth (MAX_DEPTH) and the sum of depths (MAX_NESTING_WORK).
    Why: an HTML5 parser checks the stack of open elements at each block tag
    (100,000 unclosed <div>s, 1 MB, took minutes), removing boilerplate walks
    up from each element, and each element costs memory (a million <p>s,
    4 MB, took 600 MB). Browsers cap the depth too."""
    if html.count("<") - html.count("</") <= _OPENINGS_WITHIN_ALL_LIMITS:
        return None  # too few opening tags to pass any limit: not worth a scan
    depth, pos, work, elements = 0, 0, 0, 0
    while (tag := _TAG.search(html, pos)) is not None:
        pos = tag.end()
        if tag.group(1):
            if tag.group(2).lower() not in _FLAT:
                depth = max(0, depth - 1)
            continue
        elements += 1
        if elements > MAX_ELEMENTS:
            return tag.start(), f"over {MAX_ELEMENTS:,} elements"
        name = tag.group(2).lower()
        if name in ("script", "style"):
            end = html.find(f"</{name}", pos)  # HTML ends these at the first such tag, any case
            end = end if end >= 0 else html.lower().find(f"</{name}", pos)
            pos = end if end >= 0 else len(html)
            continue
        if name in _FLAT or tag.group(3):
            continue
        depth += 1
        work += depth
        if depth > MAX_DEPTH or work > MAX_NESTING_WORK:
            return tag.start(), "elements nested too deep to read in full"
    return None


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


def _ancestors(node: LexborNode) -> Iterator[LexborNode]:
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _ancestor_in(node: LexborNode, ids: set[int]) -> bool:
    return any(parent.mem_id in ids for parent in _ancestors(node))


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
    return any(parent.tag in tags for parent in _ancestors(node))


def _main_root(tree: LexborHTMLParser) -> LexborNode | None:
    """The element holding the main text: the longest <article> when it holds
    most of <main>, else <main>, else the body."""
    main = tree.css_first("main, [role=main]")
    scope = main if main is not None else tree.body
    if scope is None:
        return None
    articles = scope.css("article") if scope is not None else []
    if articles:
        best = articles[0] if len(articles) == 1 else max(articles, key=_text_len)
        if main is None or _text_len(best) * 2 >= _text_len(main):
            return best
    return scope


def _text_len(node: LexborNode) -> int:
    return len(node.text(separator=" ", strip=True))


def _paragraphs(root: LexborNode) -> tuple[tuple[str, ...], bool]:
    """The paragraphs, at most MAX_TEXT_CHARS of them, and whether that is all."""
    # Mark block boundaries so that inline elements (links, emphasis) stay
    # inside their paragraph while blocks become separate lines for the diff.
    for node in root.css(_BLOCKS):
        node.insert_before("\n\n")
        node.insert_after("\n\n")
    raw = root.text(separator="", deep=True)
    out: list[str] = []
    room = MAX_TEXT_CHARS
    for part in raw.split("\n\n"):
        para = _clean(part)
        if not para:
            continue
        if len(para) > room:
            if room:
                out.append(para[:room])
            return tuple(out), False
        out.append(para)
        room -= len(para)
    return tuple(out), True


def _reaches_words(root: LexborNode, limit: int) -> bool:
    """Whether the main text under ``root`` has at least ``limit`` words, as ``_paragraphs``
    would split and clean it, read from the text without paragraph breaks. Exact in this
    direction: the breaks ``_paragraphs`` inserts are spaces, which only split words, never
    join them; and a text this short is never cut at MAX_TEXT_CHARS (the breaks and NFKC per
    paragraph add at most one character per element, and elements are bounded far below that)."""
    text = unicodedata.normalize("NFKC", root.text(separator="", deep=True))
    return len(text) <= MAX_TEXT_CHARS // 2 and _has_words(text, limit)


def _has_words(normalised: str, limit: int) -> bool:
    """At least ``limit`` word tokens in an NFKC-normalised text, counted without tokenising it
    to its end."""
    if limit <= 0:
        return True
    # A long text usually has the words in its start, and a start never holds more words than
    # the whole (a word cut at its end is still one word of the whole): read that first.
    start = _PREFIX_CHARS_PER_WORD * limit
    if len(normalised) > start and _count_reaches(normalised[:start], limit):
        return True
    return _count_reaches(normalised, limit)


_PREFIX_CHARS_PER_WORD = 16


def _count_reaches(normalised: str, limit: int) -> bool:
    # islice runs in C to the limit-th match: no Python step per word
    words = _TOKEN.finditer(normalised.casefold())
    return next(itertools.islice(words, limit - 1, None), None) is not None


def _clean(text: str) -> str:
    # str.split() splits at exactly the characters a regex's \s matches (str.isspace), faster
    return " ".join(unicodedata.normalize("NFKC", text).split())


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
    words; anything else still counts. Volatile words are those of ``live``
    in no three-word phrase that ``live_again`` also has (linear in the page
    length, where aligning the two fetches word by word would not be).
    """
    a, b, c = tokens(old.text), tokens(live.text), tokens(live_again.text)
    volatile = _uncovered(b, shingles(c))
    kept_a: list[str] = []
    kept_b: list[str] = []
    for op, i1, i2, j1, j2 in opcodes(a, b):
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


def _uncovered(words: list[str], phrases: set[int], k: int = _SHINGLE) -> set[int]:
    """Positions of ``words`` that lie in none of its k-word shingles found in
    ``phrases``."""
    if len(words) < k:
        return set() if shingles(words, k) <= phrases else set(range(len(words)))
    covered = bytearray(len(words))
    for i in range(len(words) - k + 1):
        if hash(tuple(words[i:i + k])) in phrases:
            covered[i:i + k] = b"\x01" * k
    return {i for i, flag in enumerate(covered) if not flag}


# ----------------------------------------------------------------- alignment

Opcode = tuple[str, int, int, int, int]


def opcodes(a: list[str], b: list[str], budget: int = DIFF_BUDGET) -> list[Opcode]:
    """difflib-style opcodes turning ``a`` into ``b``, in bounded time.

    difflib's matcher is quadratic in the worst case (hours for a long page
    of repeated words). Here common ends are trimmed first; a stretch small
    enough for the remaining ``budget`` (element comparisons) goes to difflib;
    a larger one is cut at elements that occur exactly once on each side, in
    the same order (the anchors of patience diff), and each piece between two
    anchors is aligned the same way. A piece with no anchors and no budget
    left is reported as replaced whole: coarser, never slower.
    """
    out: list[Opcode] = []
    left = [budget]
    todo = [(0, len(a), 0, len(b), 0)]
    while todo:
        a1, a2, b1, b2, depth = todo.pop()
        out.extend(_align(a, b, a1, a2, b1, b2, depth, left, todo))
    out.sort(key=lambda op: (op[1], op[3]))
    return _merged(out)


def _align(a: list[str], b: list[str], a1: int, a2: int, b1: int, b2: int, depth: int,
           left: list[int], todo: list[tuple[int, int, int, int, int]]) -> list[Opcode]:
    out: list[Opcode] = []
    start_a, start_b = a1, b1
    while a1 < a2 and b1 < b2 and a[a1] == b[b1]:
        a1, b1 = a1 + 1, b1 + 1
    if a1 > start_a:
        out.append(("equal", start_a, a1, start_b, b1))
    end_a, end_b = a2, b2
    while a1 < a2 and b1 < b2 and a[a2 - 1] == b[b2 - 1]:
        a2, b2 = a2 - 1, b2 - 1
    if a2 < end_a:
        out.append(("equal", a2, end_a, b2, end_b))
    if a1 == a2 or b1 == b2:
        if a1 < a2:
            out.append(("delete", a1, a2, b1, b1))
        elif b1 < b2:
            out.append(("insert", a1, a1, b1, b2))
        return out
    cost = (a2 - a1) * (b2 - b1)
    if cost <= left[0]:
        left[0] -= cost
        matcher = difflib.SequenceMatcher(a=a[a1:a2], b=b[b1:b2], autojunk=False)
        out.extend((op, i1 + a1, i2 + a1, j1 + b1, j2 + b1)
                   for op, i1, i2, j1, j2 in matcher.get_opcodes())
        return out
    anchors = _anchors(a, b, a1, a2, b1, b2) if depth < 8 else []
    if not anchors:
        out.append(("replace", a1, a2, b1, b2))
        return out
    for i, j in anchors:
        todo.append((a1, i, b1, j, depth + 1))
        out.append(("equal", i, i + 1, j, j + 1))
        a1, b1 = i + 1, j + 1
    todo.append((a1, a2, b1, b2, depth + 1))
    return out


def _anchors(a: list[str], b: list[str], a1: int, a2: int, b1: int, b2: int) -> list[tuple[int, int]]:
    """Elements occurring once in a[a1:a2] and once in b[b1:b2], as (i, j)
    pairs, longest run increasing on both sides."""
    count_a = Counter(a[a1:a2])
    count_b = Counter(b[b1:b2])
    where_b = {b[j]: j for j in range(b1, b2) if count_b[b[j]] == 1}
    pairs = [(i, where_b[a[i]]) for i in range(a1, a2)
             if count_a[a[i]] == 1 and a[i] in where_b]
    # Longest increasing subsequence of the b positions (patience sorting).
    tails: list[int] = []  # index into pairs of the smallest tail of each length
    back: list[int] = [-1] * len(pairs)
    for n, (_i, j) in enumerate(pairs):
        at = _bisect_tails(pairs, tails, j)
        if at:
            back[n] = tails[at - 1]
        if at == len(tails):
            tails.append(n)
        else:
            tails[at] = n
    chain: list[tuple[int, int]] = []
    n = tails[-1] if tails else -1
    while n >= 0:
        chain.append(pairs[n])
        n = back[n]
    return chain[::-1]


def _bisect_tails(pairs: list[tuple[int, int]], tails: list[int], j: int) -> int:
    lo, hi = 0, len(tails)
    while lo < hi:
        mid = (lo + hi) // 2
        if pairs[tails[mid]][1] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _merged(ops: list[Opcode]) -> list[Opcode]:
    """Adjacent opcodes of one kind as one; a delete next to an insert as a replace."""
    out: list[Opcode] = []
    for op in ops:
        if out:
            tag, i1, i2, j1, j2 = out[-1]
            if i2 == op[1] and j2 == op[3] and (tag == op[0] or (
                    tag != "equal" and op[0] != "equal")):
                kind = tag if tag == op[0] else "replace"
                out[-1] = (kind, i1, op[2], j1, op[4])
                continue
        out.append(op)
    return out


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
    for op, i1, i2, j1, j2 in opcodes(a, b):
        if op != "equal":
            out.append(Change(op, old.paragraphs[i1:i2], new.paragraphs[j1:j2]))
    return out


def word_diff(old: str, new: str) -> str:
    """Inline word diff, ``[-removed-]{+added+}`` (git's --word-diff=plain
    notation), so a changed figure inside a long paragraph stands out."""
    a, b = old.split(), new.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in opcodes(a, b):
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
            new_label: str = "live", context: int = 3) -> str:
    """Unified diff of main-text paragraphs, for tools that read patches
    (hunks from the bounded ``opcodes``, not difflib's quadratic matcher)."""
    a, b = list(old.paragraphs), list(new.paragraphs)
    matcher = _Aligned(a, b)
    out: list[str] = []
    for group in matcher.get_grouped_opcodes(context):
        if not out:
            out += [f"--- {old_label}\n", f"+++ {new_label}\n"]
        first, last = group[0], group[-1]
        out.append(f"@@ -{_hunk_range(first[1], last[2])} +{_hunk_range(first[3], last[4])} @@\n")
        for op, i1, i2, j1, j2 in group:
            if op == "equal":
                out += [" " + p + "\n" for p in a[i1:i2]]
                continue
            out += ["-" + p + "\n" for p in a[i1:i2]]
            out += ["+" + p + "\n" for p in b[j1:j2]]
    return "".join(out)


def _hunk_range(start: int, stop: int) -> str:
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


class _Aligned(difflib.SequenceMatcher):
    """difflib's hunk grouping over the bounded ``opcodes``."""

    def __init__(self, a: list[str], b: list[str]) -> None:
        super().__init__(None, a, b, autojunk=False)

    def get_opcodes(self) -> list[Opcode]:  # type: ignore[override]
        return opcodes(self.a, self.b)
