"""Cookies of one capture: what a server sets during a redirect chain, sent back within that chain.

A capture must not depend on what happened to be captured before it, so there is no jar shared
by a run: every URL's redirect chain starts with no cookies, and a cookie set by one of its
responses is sent on the later hops of that same chain (as a browser would, which is what makes
some redirect chains work at all). What was sent is in each hop's WARC request record.

Cookies are kept as the bytes the server sent and sent back exactly so (RFC 6265 section 5.2
treats them as octets): a non-ASCII value, even one that is not UTF-8, can never break a
capture. A cookie with control characters cannot go on the wire and is ignored, with a note.
"""

from __future__ import annotations

import email.utils
import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

_CONTROL = set(range(0x00, 0x09)) | set(range(0x0A, 0x20)) | {0x7F}


@dataclass
class _Cookie:
    name: bytes
    value: bytes
    domain: str
    host_only: bool
    path: str
    secure: bool


class ChainCookies:
    """The cookie state of one redirect chain (RFC 6265 storage and matching, without a
    public-suffix list: a chain is short-lived, and nothing outlives it)."""

    def __init__(self, now: float | None = None) -> None:
        self._cookies: dict[tuple[str, str, bytes], _Cookie] = {}
        self._now = time.time() if now is None else now
        self.notes: list[str] = []

    def header(self, url: str) -> bytes | None:
        """The Cookie header value for a request to ``url``, or None when nothing matches."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        path = parts.path or "/"
        chosen = [c for c in self._cookies.values()
                  if (c.domain == host if c.host_only else _domain_match(host, c.domain))
                  and _path_match(path, c.path) and (parts.scheme == "https" or not c.secure)]
        if not chosen:
            return None
        chosen.sort(key=lambda c: -len(c.path))  # longer paths first (RFC 6265 section 5.4)
        return b"; ".join(c.name + b"=" + c.value for c in chosen)

    def store(self, url: str, set_cookie_values: list[bytes]) -> None:
        """Take the Set-Cookie header values (raw bytes) of a response to ``url``."""
        for raw in set_cookie_values:
            self._store_one(url, raw)

    def _store_one(self, url: str, raw: bytes) -> None:
        pair, _, attributes = raw.partition(b";")
        name, equals, value = pair.partition(b"=")
        name, value = name.strip(b" \t"), value.strip(b" \t")
        if not equals or not name:
            return
        if any(b in _CONTROL for b in name + value):
            self.notes.append(f"cookie {name[:40]!r} not kept: it contains control characters")
            return
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        cookie = _Cookie(name, value, host, True, _default_path(parts.path), False)
        expired = False
        for attribute in attributes.split(b";"):
            key, _, arg = attribute.partition(b"=")
            key, arg = key.strip().lower(), arg.strip()
            if key == b"domain" and arg:
                domain = arg.decode("latin-1").lstrip(".").lower()
                if not _domain_match(host, domain) or "." not in domain:
                    return  # a cookie for a domain the server does not belong to is refused
                cookie.domain, cookie.host_only = domain, domain == host
            elif key == b"path" and arg.startswith(b"/"):
                cookie.path = arg.decode("latin-1")
            elif key == b"secure":
                cookie.secure = True
            elif key == b"max-age" and arg.lstrip(b"-").isdigit():
                expired = int(arg) <= 0
            elif key == b"expires" and b"max-age" not in attributes.lower():
                expired = _in_the_past(arg, self._now)
        key = (cookie.domain, cookie.path, cookie.name)
        if expired:
            self._cookies.pop(key, None)
        else:
            self._cookies[key] = cookie


def _default_path(path: str) -> str:
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rfind("/")]


def _path_match(path: str, cookie_path: str) -> bool:
    if path == cookie_path:
        return True
    if not path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or path[len(cookie_path)] == "/"


def _domain_match(host: str, domain: str) -> bool:
    if host == domain:
        return True
    try:
        ipaddress.ip_address(host)
        return False  # an address matches only itself
    except ValueError:
        return host.endswith("." + domain)


def _in_the_past(value: bytes, now: float) -> bool:
    try:
        when = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return False
    return when.timestamp() <= now
