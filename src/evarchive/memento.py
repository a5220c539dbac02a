"""Public archives' copies of a source, found through Memento (RFC 7089).

A TimeMap lists an archive's mementos (its copies) of one original URL, in the link-format of
RFC 6690 (the syntax of HTTP's Link header): ``<URI-M>; rel="memento"; datetime="RFC 1123 date"``
entries separated by commas. ``lookup`` asks each configured archive (the Internet Archive by
default, or any aggregator or archive the user lists) for its TimeMap of a URL and returns the
memento nearest a moment, with what went wrong with each archive that did not answer. Answers
are read up to a size limit: a TimeMap of a popular page can be many megabytes.

Nothing here writes to an archive: the caller decides what to record.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import httpx

DEFAULT_TIMEMAPS = ("https://web.archive.org/web/timemap/link/{url}",)
MAX_TIMEMAP_BYTES = 16 << 20  # the Internet Archive's TimeMaps of busy pages run to megabytes
USER_AGENT = "evarchive (memento lookup)"

# One link: <target> then ;-separated parameters, some quoted (quoted values may hold , and ;).
_LINK = re.compile(r'\s*<([^>]*)>((?:\s*;\s*[^;,=\s]+(?:\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,"\s]*))?)*)\s*(?:,|$)')
_PARAM = re.compile(r'\s*;\s*([^;,=\s]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*))?')


@dataclass(frozen=True)
class Memento:
    """One archived copy: its URL (URI-M), when the archive made it (UTC), and the archive."""

    url: str
    datetime: dt.datetime
    archive: str

    def as_dict(self) -> dict[str, str]:
        return {"url": self.url, "datetime": self.datetime.strftime("%Y-%m-%dT%H:%M:%SZ"), "archive": self.archive}


@dataclass
class Lookup:
    """The memento nearest the moment asked for (None when no archive has one), and each
    archive's failure in words (an archive that has no memento is not a failure)."""

    url: str
    when: dt.datetime
    nearest: Memento | None = None
    count: int = 0
    failures: list[str] = field(default_factory=list)


def parse_links(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(target, parameters) of every link in a link-format document; malformed stretches are
    skipped up to the next link rather than ending the parse."""
    pos = 0
    while pos < len(text):
        match = _LINK.match(text, pos)
        if match is None:
            nxt = text.find("<", pos + 1)
            if nxt < 0:
                return
            pos = nxt
            continue
        params = {}
        for name, value in _PARAM.findall(match.group(2)):
            params[name.lower()] = value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        yield match.group(1), params
        pos = match.end()


def _http_date(value: str) -> dt.datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def mementos(text: str, archive: str) -> list[Memento]:
    """The mementos a TimeMap lists (rel contains "memento" and a datetime), oldest first."""
    found = []
    for target, params in parse_links(text):
        rels = params.get("rel", "").split()
        when = _http_date(params.get("datetime", ""))
        if "memento" in rels and when is not None and target:
            found.append(Memento(target, when, archive))
    return sorted(found, key=lambda m: m.datetime)


def nearest(candidates: Iterable[Memento], when: dt.datetime) -> Memento | None:
    """The memento closest in time to ``when`` (the earlier one on a tie)."""
    return min(candidates, key=lambda m: (abs((m.datetime - when).total_seconds()), m.datetime), default=None)


def timemap_url(template: str, url: str) -> str:
    """An archive's TimeMap URL for ``url``: ``{url}`` in the template stands for it, verbatim,
    as the Internet Archive and Memento aggregators expect."""
    return template.replace("{url}", url) if "{url}" in template else template.rstrip("/") + "/" + url


def lookup(url: str, when: dt.datetime, timemaps: Iterable[str] = DEFAULT_TIMEMAPS, *,
           timeout: float = 30.0, max_bytes: int = MAX_TIMEMAP_BYTES,
           transport: httpx.BaseTransport | None = None) -> Lookup:
    """Ask every archive for its TimeMap of ``url``; the memento nearest ``when`` over all."""
    result = Lookup(url, when)
    found: list[Memento] = []
    with httpx.Client(timeout=timeout, follow_redirects=True, transport=transport,
                      headers={"User-Agent": USER_AGENT, "Accept": "application/link-format"}) as client:
        for template in timemaps:
            endpoint = timemap_url(template, url)
            archive = httpx.URL(endpoint).host
            try:
                text = _fetch_timemap(client, endpoint, max_bytes)
            except (httpx.HTTPError, ValueError) as exc:
                result.failures.append(f"{archive}: {type(exc).__name__}: {exc}")
                continue
            if text is not None:
                found += mementos(text, archive)
    result.count = len(found)
    result.nearest = nearest(found, when)
    return result


def _fetch_timemap(client: httpx.Client, endpoint: str, max_bytes: int) -> str | None:
    """The TimeMap's text; None when the archive has no memento of the URL (404)."""
    with client.stream("GET", endpoint) as response:
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code} for {endpoint}")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise ValueError(f"the TimeMap is larger than {max_bytes} bytes; not read")
    return body.decode("utf-8", "replace")


LOST_STATES = ("dead", "changed", "failing")


def attach_to_rot(rows: list[dict], timemaps: Iterable[str], *, now: dt.datetime,
                  ask: Callable[[str, dt.datetime], Lookup] | None = None) -> None:
    """Give every source of ``rot`` rows that is dead, changed or failing its nearest public
    memento (nearest the moment it was lost, else now), asking each archive once per URL:
    ``source["memento"]`` is the memento or None, ``source["memento_failures"]`` what failed."""
    templates = tuple(timemaps)
    ask = ask or (lambda url, when: lookup(url, when, templates))
    asked: dict[str, Lookup] = {}
    for row in rows:
        for source in row["sources"]:
            if source.get("live") not in LOST_STATES:
                continue
            if source["url"] not in asked:
                since = _iso(source.get("since")) or now
                asked[source["url"]] = ask(source["url"], since)
            found = asked[source["url"]]
            source["memento"] = found.nearest.as_dict() if found.nearest else None
            source["memento_failures"] = found.failures


def _iso(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None
