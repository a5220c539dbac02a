"""URL rules: what may be captured, how it is sent, and how two citations are recognised as one source.

Three forms of a URL matter:
- the URL *as cited*, kept verbatim for the court (never rewritten);
- the *request* form: IDNA host, and the path and query as cited, with only what cannot go on
  an HTTP request line percent-encoded (non-ASCII, space, controls): the server must see the
  request the cited URL names, so ``[]|{}^`` and the like are sent as they are;
- the *normalised* form: the request form made canonical, used only to recognise the same
  source cited twice in different spellings.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna

from .errors import InputError

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

# Characters that may stay unescaped in a path or query (RFC 3986 unreserved + sub-delims + ":@/?").
_SAFE_PATH = "-._~!$&'()*+,;=:@/%"
_SAFE_QUERY = _SAFE_PATH + "?"
_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")


def _quote_non_ascii(text: str, safe: str) -> str:
    """Percent-encode what may not appear raw, keeping existing %XX escapes exactly as written."""
    out = []
    for ch in text:
        if ch in safe or (ch.isascii() and ch.isalnum()):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _quote_for_wire(text: str) -> str:
    """Percent-encode only what may not appear on a request line: non-ASCII, space, controls."""
    out = []
    for ch in text:
        if ch.isascii() and ch.isprintable() and ch != " ":
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _encode_host(host: str) -> str:
    host = host.rstrip(".").lower()
    if not host:
        raise InputError("URL has no host")
    if host.isascii():
        if not re.fullmatch(r"[a-z0-9._\-\[\]:]+", host):
            raise InputError(f"URL host {host!r} is not a valid host name")
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InputError(f"URL host {host!r} cannot be encoded (IDNA): {exc}") from None


def _bracket_ipv6(host: str) -> str:
    # urlsplit strips the brackets of an IPv6 literal; without them "[::1]:8443" and "[::1:8443]"
    # would print alike, and two different sources would be taken for one.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def parse_url(url: str) -> SplitResult:
    """Split a cited URL, refusing anything evarchive must not fetch."""
    if not isinstance(url, str) or not url.strip():
        raise InputError("empty URL")
    if url != url.strip() or any(ch in url for ch in "\r\n\t "):
        raise InputError(f"URL {url!r} contains white space")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise InputError(f"malformed URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}:" if scheme else "no scheme"
        raise InputError(f"refused URL {url!r}: only http and https can be captured ({shown})")
    if not parts.hostname:
        raise InputError(f"malformed URL {url!r}: no host")
    return parts


def validate_url(url: str) -> str:
    """Return the URL unchanged if it can be captured; raise InputError otherwise."""
    request_url(url)
    return url


@functools.lru_cache(maxsize=65536)
def request_url(url: str) -> str:
    """The form sent on the wire: IDNA host, non-ASCII, space and controls percent-encoded,
    fragment dropped."""
    parts = parse_url(url)
    scheme = parts.scheme.lower()
    host = _bracket_ipv6(_encode_host(parts.hostname or ""))
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username is not None:
        # Credentials in a cited URL are kept in the citation but never sent.
        pass
    path = _quote_for_wire(parts.path or "/")
    query = _quote_for_wire(parts.query)
    return urlunsplit((scheme, netloc, path, query, ""))


def request_target(url: str) -> bytes:
    """The request line's target for ``url`` (origin form), exactly as it is to be sent."""
    parts = urlsplit(request_url(url))
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return target.encode("ascii")


def _normalise_escapes(text: str) -> str:
    """Upper-case %xx escapes and decode those that stand for unreserved characters."""

    def fix(match: re.Match[str]) -> str:
        ch = chr(int(match.group(1), 16))
        return ch if ch in _UNRESERVED else f"%{match.group(1).upper()}"

    return _PCT.sub(fix, text)


def normalise_url(url: str) -> str:
    """Canonical form used to recognise the same source cited twice."""
    parts = urlsplit(request_url(url))
    scheme = parts.scheme
    host = _bracket_ipv6(parts.hostname or "")
    port = parts.port
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    # Sent verbatim, but for recognising a source "[" and "%5B" are one spelling.
    path = _normalise_escapes(_quote_non_ascii(parts.path, _SAFE_PATH)) or "/"
    query = _normalise_escapes(_quote_non_ascii(parts.query, _SAFE_QUERY))
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """The lower-case ASCII host of a URL (for per-host limits)."""
    return urlsplit(request_url(url)).hostname or ""
