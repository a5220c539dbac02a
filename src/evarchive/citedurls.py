"""Where a report's text cites a URL: each URL's start and end, kept exactly as cited.

A URL starts at http(s):// or a bare www. name and ends where prose resumes: punctuation of the
surrounding sentence, an unbalanced closing bracket, a quote that opened before it, a footnote
marker glued to it, ideographic punctuation. A URL that a layout broke across lines, or an
archived copy's address split from its original, is joined again. Used by ``extract`` (claims and
their citations) and by the readers that meet URLs in link targets and PDF annotations.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

# A URL starts at http(s):// not glued to a preceding letter or digit, and runs until white space
# or a character that cannot appear raw in a cited URL and commonly delimits one in prose:
# ASCII double quote, angle brackets, backtick, typographic quotes, zero-width spaces, and the
# ideographic and full-width punctuation of Chinese and Japanese text, which puts no space after
# a URL ("见https://example.cn/a。下一句"): 、。〈〉《》「」『』【】, and the full-width forms of
# ASCII punctuation (（），：；！？［］｜ and the rest of U+FF01-FF0F, FF1A-FF20, FF3B-FF40, FF5B-FF65).
# Arrows (U+2190-21FF, U+27F0-27FF) end a URL too: footnote back-links ("...pdf.↩") and
# navigation glue them on, and no cited path is spelled with one.
# Zero-width joiners are not delimiters here: inside a word of an Arabic, Persian or Indic path
# they are part of its spelling (see _cut_at_stray_joiner).
_CJK_DELIMITERS = "\u3001\u3002\u3008-\u3011\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
_URL_CHARS = (r"[^\s<>\"`\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u201a"
              r"\u2039\u203a\u200b\u2060\ufeff\u2190-\u21ff\u27f0-\u27ff" + _CJK_DELIMITERS + r"]")
# A scheme-less URL starts at "www." at the start of a word, as linkifiers take it (GitHub,
# linkify-it): not inside a host or path (".www.", "/www."), an e-mail address ("x@www.y.org")
# or a Latin word ("awww."); like http(s), it may follow Chinese or Arabic text without a space.
# Its host must then look like a real one (see _www_host_is_plausible).
_WWW_START = r"(?<![0-9A-Za-z\u00c0-\u024f_.@/:\\-])www\."
_URL_RE = re.compile(r"(?:(?<![0-9A-Za-z])https?://|" + _WWW_START + ")" + _URL_CHARS + "+", re.IGNORECASE)
# A scheme-less URL is captured over plain http: the site redirects to https where it has it, and
# the redirect is recorded; the citation keeps the text exactly as written.
SCHEMELESS_SCHEME = "http://"
# Name endings of files, not top-level domains a cited site uses: "www.config.js", "www.index.html".
_FILE_ENDINGS = {"html", "htm", "php", "asp", "aspx", "jsp", "js", "css", "txt", "pdf", "doc", "docx",
                 "xls", "xlsx", "json", "xml", "csv", "png", "jpg", "jpeg", "gif", "svg", "log",
                 "conf", "cfg", "ini", "exe", "tar", "gz", "bak", "tmp", "md", "yml", "yaml"}
# The prefix of an archived copy in a Wayback-style archive ("https://web.archive.org/web/20161030025331/",
# "https://www.webarchive.org.uk/wayback/archive/20200101120000/"): alone it names no page. When
# OCR or a line break puts white space between it and the original URL, the two are one citation.
_ARCHIVE_PREFIX_RE = re.compile(r"^https?://[^/?#\s]+(?:/[^/?#\s]+)*?/(?:web|wayback)/(?:[\w-]+/)?\d{4,14}(?:[a-z]{2}_)?/$",
                                re.IGNORECASE)
_ARCHIVE_GAP_RE = re.compile(r"[ \t]?\n?[ \t]?")  # one space or one line break (not a paragraph break)
_TLD_RE = re.compile(r"^(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{2,59})$", re.IGNORECASE)
_URL_TAIL_RE = re.compile(_URL_CHARS + "*")
# Prose punctuation that ends a sentence or clause right after a URL; a URL almost never ends so.
_TRAILING = set(".,;:!?'*\u2026\u060c\u061b\u061f\u06d4")  # with Arabic comma, semicolon, question mark, full stop
_PAIRS = {")": "(", "]": "[", "}": "{"}
_OPENERS = {v: k for k, v in _PAIRS.items()}
# A quote opens inside a URL only right after one of these (Foo_"bar", /'x', ?q="y"); after a
# letter it is an apostrophe (O'Brien), and before the URL it is the prose quoting the URL.
_QUOTE_OPENS_AFTER = set("_-/=(~.:{[,")
_JOINERS = "\u200c\u200d"
# Wiki-style markers glued to a URL: "...ACAAJ[dead link]", "...[citation needed]", "(archived)".
_GLUED_MARKER_RE = re.compile(r"(?<=[0-9A-Za-z])[\[(][A-Za-z]{2,}[A-Za-z ]*$")
_HOST_RE = re.compile(r"(?i)^https?://[^/?#]*[0-9a-z\u00a0-\uffff][^/?#]*")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_LABEL_RE = re.compile(r"^[^\W_]([\w-]*[^\W_])?$")  # inner hyphens and underscores only


@dataclass(frozen=True)
class UrlSpan:
    """A URL found in text: the exact characters cited and where they stand."""

    url: str
    start: int
    end: int


def _quote_closes_inside(url: str, quote: str) -> bool:
    """True when the last character, a quote, closes one opened inside the URL (``_'x'``)."""
    opener = url.rfind(quote, 0, len(url) - 1)
    return opener > 0 and url[opener - 1] in _QUOTE_OPENS_AFTER


def trim_url(candidate: str) -> str:
    """Drop trailing prose punctuation: ``.html,`` -> ``.html``, ``115071).`` -> ``115071``.

    A closing bracket stays when it balances an opening one inside the URL (Wikipedia-style
    ``Foo_(bar)``), and goes when it closes a parenthesis the URL stands in; a closing quote
    stays when it closes a quote opened inside the URL (``Foo_'bar'``).
    """
    url = candidate
    while url:
        last = url[-1]
        if last == "'" and _quote_closes_inside(url, "'"):
            break
        if last in _TRAILING:
            url = url[:-1]
        elif last in _PAIRS and url.count(_PAIRS[last]) < url.count(last):
            url = url[:-1]
        else:
            break
    return url


def _cut_at_unbalanced_closer(url: str) -> str:
    """A closing bracket with no opener inside the URL ends it: ``[a](https://x)[b](mailto:y)``
    and ``[[https://a]][[https://b]]`` hold two citations, not one."""
    depth = {"(": 0, "[": 0, "{": 0}
    for index, ch in enumerate(url):
        if ch in depth:
            depth[ch] += 1
        elif ch in _PAIRS:
            opener = _PAIRS[ch]
            if depth[opener] == 0:
                return url[:index]
            depth[opener] -= 1
    return url


def _in_word(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LM"  # letters and combining marks (a virama is a mark)


def _cut_at_stray_joiner(url: str) -> str:
    """A zero-width joiner belongs to the URL only between two letters of one word."""
    for index, ch in enumerate(url):
        if ch in _JOINERS and not (0 < index < len(url) - 1 and _in_word(url[index - 1])
                                   and _in_word(url[index + 1])):
            return url[:index]
    return url


def _cut_glued_marker(url: str) -> str:
    marker = _GLUED_MARKER_RE.search(url)
    if marker and "/" in url[: marker.start()].split("://", 1)[-1]:
        return url[: marker.start()]
    return url


def _cut_host_at_punctuation(url: str) -> str:
    """A dash, bullet or ellipsis of general punctuation (U+2000-206F) cannot be part of a host:
    glued to one, it is the prose going on ("https://analytics.usa.gov—jointly with")."""
    start = url.find("://") + 3
    for index in range(start, len(url)):
        ch = url[index]
        if ch in "/?#":
            break
        if "\u2000" <= ch <= "\u206f":
            return url[:index]
    return url


def _extend_over_quotes(text: str, start: int, end: int) -> int:
    """Carry a URL on over a double-quoted part of its path (``Foo_"bar"_baz``), which the
    pattern stops at because a double quote usually delimits a URL in prose."""
    quoted_url = start > 0 and text[start - 1] == '"'
    while end < len(text) and text[end] == '"' and text[end - 1] in _QUOTE_OPENS_AFTER:
        closing = text.find('"', end + 1)
        if closing < 0 or not _URL_TAIL_RE.fullmatch(text, end + 1, closing):
            break
        after = _URL_TAIL_RE.match(text, closing + 1).end()
        if quoted_url and after == closing + 1:
            break  # "https://x/a_" "b": that quote closes the one the URL stands in
        end = after
    return end


def host_is_plausible(url: str) -> bool:
    """A host a web page could be served from: labels of letters and digits, with hyphens and
    underscores inside only (or an IP literal); never an empty label, so never a leading dot."""
    match = _HOST_RE.match(url)
    if not match:
        return False
    netloc = match.group(0).split("://", 1)[1].rpartition("@")[2]
    if netloc.startswith("["):
        return netloc.find("]") > 1
    host, _, port = netloc.partition(":")
    if port and not port.isdigit():
        return False
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    # Non-ASCII characters are for IDNA to judge (urls.py), which names its reason.
    return all(_LABEL_RE.match(_NON_ASCII.sub("a", label)) for label in labels)


def is_schemeless(url: str) -> bool:
    """True for a URL cited without its scheme (``www.example.org/a``)."""
    return url[:4].lower() == "www."


def capture_url(cited: str) -> str:
    """The URL to capture for a URL as cited: ``http://`` + a scheme-less one; an archive prefix
    and the original URL cited apart (``.../web/2016.../ http://x``) joined; else itself."""
    parts = cited.split()
    if len(parts) == 2 and _ARCHIVE_PREFIX_RE.match(parts[0]):
        return parts[0] + capture_url(parts[1])
    if len(parts) > 1:
        return capture_url("".join(parts))  # a URL wrapped at a line break (_join_wrapped_line)
    return SCHEMELESS_SCHEME + cited if is_schemeless(cited) else cited


# The rest of a URL wrapped onto the next line: a run of URL characters with a character no word
# of prose has ("of_the_Child_Part_1_of_3.pdf"), so a sentence on the next line is never taken.
_WRAPPED_REST_RE = re.compile(r"[\w%~=&;+.,/-]*[_/=&%][\w%~=&;+.,/-]*")


def _join_wrapped_line(text: str, start: int, url: str) -> str:
    """A URL that ends in an underscore right before a line break, as Word breaks a long path
    (".../Implementation_Handbook_for_the_Rights_" / "of_the_Child.pdf"), goes on on the next line:
    one citation whose text keeps the line break (the span is the text as printed)."""
    end = start + len(url)
    if not url.endswith("_") or not text.startswith("\n", end):
        return url
    rest = _WRAPPED_REST_RE.match(text, end + 1)
    if rest is None or rest.end() == end + 1:
        return url
    return url + "\n" + trim_url(rest.group(0))


def _join_archived_original(text: str, start: int, url: str) -> str:
    """An archive prefix followed, after one space or line break, by a URL: both, as one
    citation whose text keeps the white space between them (the span is the text as printed)."""
    if not _ARCHIVE_PREFIX_RE.match(url):
        return url
    gap = _ARCHIVE_GAP_RE.match(text, start + len(url))
    following = _URL_RE.match(text, gap.end()) if gap.end() > gap.start() else None
    if following is None:
        return url
    original = _one_url(text, following)
    if not (host_is_plausible(capture_url(original)) and (not is_schemeless(original)
                                                          or _www_host_is_plausible(original))):
        return url
    return text[start:following.start() + len(original)]


def _www_host_is_plausible(url: str) -> bool:
    """A scheme-less host is taken only when it cannot be a file name or an address: no user
    part, www. + at least one more label, and a last label shaped like a top-level domain."""
    netloc = re.split(r"[/?#]", url, maxsplit=1)[0]
    host, _, port = netloc.partition(":")
    if "@" in netloc or (port and not port.isdigit()):
        return False
    labels = host.split(".")
    return (len(labels) >= 3 and bool(_TLD_RE.match(labels[-1]))
            and labels[-1].lower() not in _FILE_ENDINGS)


def _one_url(text: str, match: re.Match[str]) -> str:
    end = _extend_over_quotes(text, match.start(), match.end())
    url = text[match.start():end]
    for cut in (_cut_at_stray_joiner, _cut_at_unbalanced_closer, _cut_glued_marker, _cut_host_at_punctuation):
        url = cut(url)
    return trim_url(url)


def _scan(text: str) -> Iterator[tuple[UrlSpan, bool]]:
    """Every http(s) candidate in ``text``, and whether its host is one a page could come from."""
    pos = 0
    while (match := _URL_RE.search(text, pos)) is not None:
        url = _join_wrapped_line(text, match.start(), _one_url(text, match))
        url = _join_archived_original(text, match.start(), url)
        if is_schemeless(url):
            if not _www_host_is_plausible(url):
                pos = match.start() + len("www.")  # not a URL, and not reported as one either
                continue
            plausible = host_is_plausible(capture_url(url))
        else:
            plausible = host_is_plausible(url)
        yield UrlSpan(url, match.start(), match.start() + len(url)), plausible
        # Search again right after what was taken: a cut may have left the next URL behind.
        pos = match.start() + max(len(url), len("http://"))


def find_urls(text: str) -> list[UrlSpan]:
    """Every http(s) URL in ``text`` with its span, in order of appearance; a scheme-less
    ``www.`` URL is given as written (``capture_url`` names what to capture)."""
    return [span for span, plausible in _scan(text) if plausible]


def find_non_urls(text: str) -> list[UrlSpan]:
    """What starts like a URL but names no possible host (``https://.example``, ``https://-x``):
    not a citation, but reported, so that nothing that looks cited vanishes unseen."""
    return [span for span, plausible in _scan(text) if not plausible and "://" in span.url
            and span.url.split("://", 1)[1]]


def is_web_url(url: str) -> bool:
    """True for an absolute http(s) URL with a host (hyperlink targets can be anything)."""
    return bool(_HOST_RE.match(url.strip()))
