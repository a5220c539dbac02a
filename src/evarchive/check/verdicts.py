"""The judgement of one answer: what the live web said about a cited page, as a verdict.

Pure functions of what was received (no network, no catalogue, no clock), so each rule can be
tested with a table of answers. The verdicts:

- ``ok``          same page; main text unchanged (boilerplate may differ)
- ``drifted``     the main text differs from the last capture beyond a threshold
- ``moved``       a permanent redirect to what is still the same article
- ``gone``        404/410, or a redirect to the home page or a generic page
- ``soft-404``    a 200 that really says "not found"
- ``blocked``     401/403/429/451, captcha, consent or login wall (says nothing
                  about whether the page exists, so it neither counts as a
                  failure nor resets one)
- ``unreachable`` DNS, refused, timeout, TLS, reset, server error (which one is
                  recorded as the verdict's ``detail``)

Whether a failing verdict makes a source dead is ``strikes.py``'s question.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import textdiff
from ..queries import PAGE
from ..textdiff import PageText
from .markers import (
    BLOCKED_STATUSES,
    CAPTCHA_MARKERS,
    CAPTCHA_PATH,
    CONSENT_HOST,
    CONSENT_MARKERS,
    CONSENT_PATH,
    ERROR_PATH,
    GONE_STATUSES,
    HOME_PATH,
    LETTERS_ONLY,
    LOGIN_HOST,
    LOGIN_MARKERS,
    LOGIN_PATH,
    NOT_FOUND_RE,
    PASSWORD_FIELD,
    TITLE_404_RE,
    TRIGGER_WORDS,
)

if TYPE_CHECKING:
    from ..capture import CapturedHop

VERDICTS = ("ok", "drifted", "moved", "gone", "soft-404", "blocked", "unreachable")
FAILING = frozenset({"gone", "soft-404", "unreachable"})
NEUTRAL = frozenset({"blocked"})  # no information: neither a strike nor a reset

# Main-text similarity below which a page has drifted. One changed word in a
# 300-word article scores about 0.99; a rewritten sentence about 0.95.
DEFAULT_DRIFT_THRESHOLD = 0.97
# A soft-404 page often repeats the requested path, so it is "the same page as
# the random-path probe" at a lower similarity than an unchanged article.
PROBE_SAME_THRESHOLD = 0.85
# Below this many words the main text is too short to be an article: a wall,
# an error page or an empty shell.
SHORT_PAGE_WORDS = 150

# ---------------------------------------------------------------- observations

@dataclass
class Hop:
    """One request/response exchange of a check (redirects make several)."""

    url: str
    method: str
    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    location: str | None = None

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass
class Observation:
    """What the live web answered for one URL: every hop, the final body
    (as the server encoded it), or the network failure."""

    url: str
    hops: list[Hop] = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False
    error_kind: str | None = None  # dns|refused|timeout|tls|reset|network|protocol|redirect-loop
    error_message: str | None = None
    elapsed_ms: float | None = None
    payload_sha256: str | None = None
    server_ip: str | None = None
    method: str = "GET"  # GET, HEAD, or HEAD>GET when HEAD was refused or inconclusive
    head_note: str | None = None
    raw_hops: list[Any] = field(default_factory=list, repr=False)  # capture hops, for evidence
    extra_raw_hops: list[Any] = field(default_factory=list, repr=False)  # the HEAD exchange
    # The wall decision for these exact bytes, when an earlier check made it
    # (False: not a wall); a pure function of the answer, so it is not redone.
    known_wall: Verdict | bool | None = None
    # When set, the main text is read only as far as the rules that judge without a baseline
    # or probe ask: a page with at least this many words keeps no paragraphs (textdiff.extract).
    words_enough: int = 0
    _page: PageText | None = field(default=None, repr=False)
    _raw: str | None = field(default=None, repr=False)
    _raw_bytes: bytes | None = field(default=None, repr=False)

    @property
    def final(self) -> Hop | None:
        return self.hops[-1] if self.hops else None

    @property
    def status(self) -> int | None:
        return self.final.status if self.final else None

    @property
    def final_url(self) -> str | None:
        return self.final.url if self.final else None

    @property
    def redirected(self) -> bool:
        return len(self.hops) > 1

    @property
    def permanent(self) -> bool:
        """Any hop of the chain is a permanent redirect (301/308)."""
        return any(h.status in (301, 308) for h in self.hops[:-1])

    @property
    def content_type(self) -> str | None:
        return self.final.header("content-type") if self.final else None

    @property
    def is_html(self) -> bool:
        ctype = (self.content_type or "").lower()
        return not ctype or "html" in ctype

    def page(self) -> PageText:
        """Main text of the final body (parsed once, on demand: most checks of
        unchanged pages never need it)."""
        if self._page is None:
            final = self.final
            self._page = textdiff.page_of(
                self.body, self.content_type, final.header("content-encoding") if final else None,
                self.truncated, self.words_enough) if self.is_html else PageText()
        return self._page

    @property
    def parsed_page(self) -> PageText | None:
        """The main text if a rule needed it (None: never parsed, or forgotten)."""
        return self._page

    def forget_page(self) -> None:
        """Drop a main text that judging may have left half-used (judging failed)."""
        self._page = None

    def raw_bytes(self) -> bytes:
        """The body as sent, content-decoded and ASCII-lower-cased (64 KiB)."""
        if self._raw_bytes is None:
            final, limit = self.final, 65536
            body = self.body
            if _is_compressed(final):
                body = textdiff.undo_content_encoding(body, final.header("content-encoding"), limit)
            self._raw_bytes = body[:limit].lower()
        return self._raw_bytes

    def raw_text(self) -> str:
        """Lower-cased decoded start of the body (64 KiB), for marker searches
        that must see what boilerplate removal throws away (a cookie wall *is*
        boilerplate). Computed once."""
        if self._raw is None:
            final, limit = self.final, 65536
            body = self.body[:limit]
            if _is_compressed(final):
                body = textdiff.undo_content_encoding(self.body, final.header("content-encoding"), limit)
            self._raw = textdiff.decode_body(body, self.content_type)[:limit].lower()
        return self._raw


def _is_compressed(hop: Hop | None) -> bool:
    return bool(hop and (hop.header("content-encoding") or "").strip().lower() not in ("", "identity"))


class Baseline:
    """The last good capture a check compares with. Its main text is loaded
    only when a comparison needs it (an unchanged page is recognised by its
    payload digest alone)."""

    def __init__(self, capture_id: int, payload_sha256: str | None, content_type: str | None,
                 page: PageText | None = None,
                 loader: Callable[[], PageText | None] | None = None,
                 final_url: str | None = None) -> None:
        self.capture_id = capture_id
        self.final_url = final_url
        self.payload_sha256 = payload_sha256
        self.content_type = content_type
        self._page = page
        self._loader = loader

    @property
    def page(self) -> PageText | None:
        if self._page is None and self._loader is not None:
            self._page, self._loader = self._loader(), None
        return self._page


@dataclass
class Verdict:
    verdict: str
    detail: str  # machine-readable sub-kind, e.g. "404", "home-redirect", "dns", "captcha"
    reason: str  # one human sentence: the evidence for the verdict
    similarity: float | None = None

    def __post_init__(self) -> None:
        assert self.verdict in VERDICTS, self.verdict


# ------------------------------------------------------------------ classify

def classify(obs: Observation, baseline: Baseline | None = None,
             probe: Observation | None = None,
             drift_threshold: float = DEFAULT_DRIFT_THRESHOLD) -> Verdict:
    """The verdict for one observation, with the evidence in its reason.

    ``probe`` is the answer to a random path on the same site: a site that
    answers 200 to nonsense serves soft 404s, and a source whose page looks
    like that answer is one.
    """
    if obs.error_kind:
        return _unreachable(obs)
    status = obs.status or 0
    final_url = obs.final_url or obs.url
    if status in GONE_STATUSES:
        where = f" at {final_url}" if obs.redirected else ""
        return Verdict("gone", str(status), GONE_STATUSES[status] + where)
    # Even a page byte-identical to its capture is checked: a capture of a
    # login wall preserved the wall, not the cited page.
    wall = obs.known_wall if obs.known_wall is not None else _wall(obs)
    if wall:
        return wall
    if status in BLOCKED_STATUSES:
        detail, text = BLOCKED_STATUSES[status]
        return Verdict("blocked", detail, text)
    if status >= 500:
        return Verdict("unreachable", "server-error", f"server error ({status})")
    if status >= 400:
        return Verdict("unreachable", "client-error", f"the server rejects the request ({status})")
    if not 200 <= status < 300:
        return Verdict("unreachable", "protocol", f"unexpected status {status}")
    return _classify_ok_status(obs, baseline, probe, drift_threshold)


# ------------------------------------------------------------------ captures

def capture_verdict(obs: Observation) -> tuple[str | None, str]:
    """(wall, content verdict) of a capture that succeeded, from the page alone: the classifier
    above without a baseline or a probe request (a probe per capture would double the requests;
    so a soft 404 is caught by its status, title, heading or short text and by where a redirect
    led, not by comparison with a nonexistent path). The verdict is ``queries.PAGE`` or why the
    capture is not the cited page, in a clerk's words; ``wall`` keeps the browser engine's form."""
    # Without a baseline or probe, the rules ask of the main text only its title, heading and
    # whether it is short: a long page is not split into paragraphs.
    verdict = classify(replace(obs, words_enough=SHORT_PAGE_WORDS))
    if verdict.verdict == "blocked" and verdict.detail in ("captcha", "consent", "login"):
        return f"{verdict.detail}: {verdict.reason}", verdict.reason
    if verdict.verdict == "soft-404":
        return None, f"soft 404: {verdict.reason}"
    if verdict.verdict in ("gone", "unreachable"):
        return None, f"not the cited page: {verdict.reason}"
    return None, PAGE


# The start of a captured page the classifier reads: a soft 404's title, heading and short text and
# a wall's markers sit there, and parsing a whole large page would cost a capture ~0.3 s per MB.
CAPTURE_CLASSIFY_BYTES = 256 << 10


def capture_observation(hops: list[CapturedHop]) -> Observation:
    """The classifier's view of a capture's hops; the start of the final body is read only when
    it may be HTML."""
    obs = Observation(url=hops[0].url)
    for hop in hops:
        obs.hops.append(Hop(hop.url, "GET", hop.status, hop.reason, list(hop.headers.multi_items()),
                            hop.location))
    final = hops[-1]
    if obs.is_html:
        final.body.seek(0)
        obs.body = final.body.read(CAPTURE_CLASSIFY_BYTES)
        obs.truncated = final.truncated or final.body_length > len(obs.body)
    obs.payload_sha256 = final.payload_sha256
    return obs


def _unreachable(obs: Observation) -> Verdict:
    kind = obs.error_kind or "network"
    labels = {
        "dns": "the host name does not resolve (DNS)",
        "refused": "connection refused",
        "timeout": "timed out",
        "tls": "TLS handshake or certificate failure",
        "reset": "connection reset by the server",
        "network": "network error",
        "protocol": "the server's answer broke HTTP",
        "redirect-loop": "redirect loop or too many redirects",
    }
    text = labels.get(kind, kind)
    if obs.error_message:
        text = f"{text}: {obs.error_message}"
    return Verdict("unreachable", kind, text)


def _wall(obs: Observation) -> Verdict | None:
    """Captcha, consent and login walls, by where a redirect led or by what
    the page says. A wall hides the page; it is not evidence it is gone."""
    if obs.redirected:
        parts = urlsplit(obs.final_url or "")
        where = f"redirected to {obs.final_url}"
        if CAPTCHA_PATH.search(parts.path):
            return Verdict("blocked", "captcha", f"captcha: {where}")
        if CONSENT_HOST.match(parts.hostname or "") or CONSENT_PATH.search(parts.path):
            return Verdict("blocked", "consent", f"consent wall: {where}")
        if LOGIN_HOST.match(parts.hostname or "") or LOGIN_PATH.search(parts.path):
            return Verdict("blocked", "login", f"login wall: {where}")
    if not obs.body or not obs.is_html:
        return None
    # One cheap pass first: the page's words (C-speed translate and split)
    # against the trigger words. Most pages hit none and are done; the marker
    # regexes, and parsing the page to see whether it is short, only run on
    # pages that might be walls.
    if TRIGGER_WORDS.isdisjoint(obs.raw_bytes().translate(LETTERS_ONLY).split()):
        return None
    raw = obs.raw_text()
    challenge_status = obs.status in (403, 429, 503)
    if (m := CAPTCHA_MARKERS.search(raw)) and (challenge_status or _short(obs)):
        return Verdict("blocked", "captcha", f"captcha or bot challenge ({_shown(m)!r})")
    if (m := CONSENT_MARKERS.search(raw)) and _short(obs):
        return Verdict("blocked", "consent", f"consent wall ({_shown(m)!r})")
    m = LOGIN_MARKERS.search(raw)
    if (m or PASSWORD_FIELD.search(raw)) and _short(obs):
        shown = _shown(m) if m else "password field"
        return Verdict("blocked", "login", f"login wall ({shown!r})")
    return None


def _short(obs: Observation) -> bool:
    return obs.page().fewer_words_than(SHORT_PAGE_WORDS)


def _shown(match: re.Match[str]) -> str:
    return match.group(0).replace("<title>", "")[:60]


def _classify_ok_status(obs: Observation, baseline: Baseline | None,
                        probe: Observation | None, threshold: float) -> Verdict:
    same_bytes = bool(baseline and baseline.payload_sha256
                      and baseline.payload_sha256 == obs.payload_sha256)
    generic = _generic_target(obs, probe, baseline, threshold)
    if generic:
        return generic
    soft = _soft_404(obs, probe, baseline, same_bytes)
    if soft:
        return soft
    return _compare(obs, baseline, same_bytes, threshold)


def _generic_target(obs: Observation, probe: Observation | None, baseline: Baseline | None,
                    threshold: float) -> Verdict | None:
    """A redirect to the site's home page, an error page, a parent section,
    or wherever nonsense paths are sent too: the article is gone."""
    if not obs.redirected or same_resource(obs.url, obs.final_url or ""):
        return None
    found = _generic_kind(obs, probe)
    if found is None:
        return None
    # The same article at a new address is "moved" even under a generic-looking
    # path, unless the capture itself already landed on that generic page.
    landed_before = bool(baseline and baseline.final_url and obs.final_url
                         and same_resource(baseline.final_url, obs.final_url))
    if baseline and baseline.page and obs.is_html and not landed_before and \
            textdiff.similarity(baseline.page, obs.page()) >= threshold:
        return None
    detail, where = found
    return Verdict("gone", detail, f"redirected to {obs.final_url}, {where}")


def _generic_kind(obs: Observation, probe: Observation | None) -> tuple[str, str] | None:
    src, dst = urlsplit(obs.url), urlsplit(obs.final_url or "")
    if HOME_PATH.match(dst.path) and not HOME_PATH.match(src.path):
        return "home-redirect", "the site's home page"
    if ERROR_PATH.search(dst.path) and not ERROR_PATH.search(src.path):
        return "error-redirect", "an error page"
    if probe and probe.redirected and probe.final_url and (probe.status or 0) < 400 and \
            same_resource(probe.final_url, obs.final_url or ""):
        return "generic-redirect", f"where the site also sends a nonexistent path ({probe.url})"
    if _is_ancestor(dst.path, src.path) and _bare_host(dst.hostname) == _bare_host(src.hostname):
        return "generic-redirect", "a section page above the article"
    return None


def _soft_404(obs: Observation, probe: Observation | None, baseline: Baseline | None,
              same_bytes: bool) -> Verdict | None:
    """A 200 that is a "not found" page: its title or short text says so in one
    of many languages, or it is the page the site serves for any random path."""
    if not obs.is_html:
        return None
    if same_bytes:
        # Byte-identical to the capture: only a 404 title would make it soft
        # (the capture itself may have preserved a page that was already gone).
        start = obs.raw_bytes()[:16384]
        title = _title_of_raw(start.decode("utf-8", "replace"))  # lower-cased
        if not title or not (NOT_FOUND_RE.search(title) or TITLE_404_RE.search(title)):
            return None
        at = start.find(b"<title")
        if at >= 0 and not _is_compressed(obs.final):  # show it as the page wrote it
            title = _title_of_raw(obs.body[at:at + len(title) + 400].decode("utf-8", "replace"))
        return Verdict("soft-404", "phrase", f"200, but the title says {title[:80]!r}")
    page = obs.page()
    for label, text in (("title", page.title), ("heading", page.h1)):
        low = text.casefold()
        if NOT_FOUND_RE.search(low) or TITLE_404_RE.search(low):
            return Verdict("soft-404", "phrase", f"200, but the {label} says {text[:80]!r}")
    if page.fewer_words_than(SHORT_PAGE_WORDS) and (m := NOT_FOUND_RE.search(page.text.casefold())):
        return Verdict("soft-404", "phrase", f"200, but the page says {m.group(0)!r}")
    if probe and probe.status and 200 <= probe.status < 300 and not probe.error_kind:
        if probe.payload_sha256 and probe.payload_sha256 == obs.payload_sha256:
            return Verdict("soft-404", "probe",
                           f"200, byte-identical to the answer for a nonexistent path ({probe.url})")
        if probe.is_html:
            sim = textdiff.similarity(page, probe.page())
            like_baseline = baseline and baseline.page and \
                textdiff.similarity(page, baseline.page) > sim
            if sim >= PROBE_SAME_THRESHOLD and not like_baseline:
                return Verdict("soft-404", "probe",
                               f"200, but the same page as for a nonexistent path "
                               f"({probe.url}, similarity {sim:.2f})", round(sim, 4))
    return None


def _compare(obs: Observation, baseline: Baseline | None, same_bytes: bool,
             threshold: float) -> Verdict:
    """Live page against the last capture: ok, moved or drifted."""
    moved = obs.redirected and obs.permanent and not same_resource(obs.url, obs.final_url or "")
    where = f" to {obs.final_url}" if moved else ""
    if same_bytes:
        return Verdict("moved", "permanent-redirect", f"permanent redirect{where}; same bytes", 1.0) \
            if moved else Verdict("ok", "same-bytes", "identical to the last capture", 1.0)
    if baseline is None:
        if moved:
            return Verdict("moved", "permanent-redirect",
                           f"permanent redirect{where} (no capture to compare with)")
        return Verdict("ok", "no-capture", "answers 200 (no capture to compare with)")
    sim = _similarity(obs, baseline)
    shown = f"similarity {sim:.2f}" if sim is not None else "content differs"
    cut = _cut_sides(obs, baseline) if sim is not None else ""
    if cut:
        shown += f"; {cut}"
    if sim is not None and sim >= threshold and cut and not moved:
        # The start matches and the bytes differ: the change may lie beyond
        # what was read, so "unchanged" would be a claim not checked.
        return Verdict("drifted", "too-large", f"too large to compare in full: the main text "
                                               f"read matches the last capture ({shown}), but "
                                               f"the bytes differ", sim)
    if sim is not None and sim >= threshold:
        if moved:
            return Verdict("moved", "permanent-redirect",
                           f"permanent redirect{where}; same article ({shown})", sim)
        return Verdict("ok", "same-text", f"main text unchanged ({shown})", sim)
    via = f" after a redirect to {obs.final_url}" if obs.redirected else ""
    return Verdict("drifted", "text" if sim is not None else "bytes",
                   f"main text changed since the last capture{via} ({shown})", sim)


def _cut_sides(obs: Observation, baseline: Baseline) -> str:
    """Which side was compared by its start only, in words ("" when neither)."""
    sides = [f"the {name} ({page.cut})" for name, page in
             (("live page", obs.page()), ("capture", baseline.page)) if page is not None and page.cut]
    return f"only the start of {' and of '.join(sides)} was compared" if sides else ""


def _similarity(obs: Observation, baseline: Baseline) -> float | None:
    """Main-text similarity; None for non-HTML content (no text to compare:
    any byte difference is drift)."""
    if baseline.page is None or not obs.is_html:
        return None
    return round(textdiff.similarity(baseline.page, obs.page()), 4)


def _title_of_raw(raw: str) -> str:
    m = re.search(r"<title[^>]*>(.*?)</title", raw, re.S)
    return re.sub(r"\s+", " ", m.group(1)).strip() if m else ""


def same_resource(a: str, b: str) -> bool:
    """Two URLs name the same resource when they differ only in scheme, a
    leading www., the default port or a trailing slash."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (_bare_host(pa.hostname), pa.path.rstrip("/") or "/", pa.query) == \
        (_bare_host(pb.hostname), pb.path.rstrip("/") or "/", pb.query)


def _bare_host(host: str | None) -> str:
    host = (host or "").lower()
    return host[4:] if host.startswith("www.") else host


def _is_ancestor(parent: str, child: str) -> bool:
    p = [s for s in parent.split("/") if s]
    c = [s for s in child.split("/") if s]
    return len(p) < len(c) and c[:len(p)] == p



# ------------------------------------------------------------------ around the classifier

def htmlish(content_type: str | None) -> bool:
    return not content_type or "html" in content_type.lower()


def known_wall(obs: Observation, prev: dict[str, Any] | None) -> Verdict | bool | None:
    """Last check's wall decision, when tonight's answer is byte for byte the
    same (same status, same final URL, same payload digest)."""
    if not prev or not obs.payload_sha256 or obs.error_kind:
        return None
    if (prev["payload_sha256"], prev["http_status"], prev["final_url"]) != \
            (obs.payload_sha256, obs.status, obs.final_url):
        return None
    if prev["verdict"] == "blocked" and prev["detail"] in ("captcha", "consent", "login"):
        return Verdict("blocked", prev["detail"], prev["reason"])
    return False


def unjudged(obs: Observation, baseline: Baseline | None, exc: Exception) -> Verdict:
    """The verdict when judging an answer failed (out of memory, a parser
    error): said as such, from what is known without judging."""
    what = (type(exc).__name__ + (f": {exc}" if str(exc) else ""))[:160]
    if baseline and baseline.payload_sha256 and baseline.payload_sha256 == obs.payload_sha256:
        return Verdict("ok", "same-bytes", f"identical to the last capture (judging its text "
                                           f"failed: {what})", 1.0)
    return Verdict("drifted", "not-judged", f"answered {obs.status}, but the answer could not be "
                                            f"judged ({what}); its bytes differ from the last "
                                            f"capture")


def head_conclusive(obs: Observation, capture_row: dict[str, Any] | None) -> bool:
    """A HEAD answer settles a check only for a non-HTML source whose type
    and length match its capture; anything else (405, 404 from a server
    that mishandles HEAD, HTML that needs its text compared) goes to GET."""
    final = obs.final
    if obs.error_kind or final is None or not 200 <= final.status < 300:
        return False
    if htmlish(final.header("content-type")) or capture_row is None:
        return False
    length = final.header("content-length")
    return length is not None and length.strip() == str(capture_row["payload_size"])


def head_verdict(obs: Observation, capture_row: dict[str, Any] | None) -> Verdict | None:
    """The verdict of a conclusive HEAD answer (None for any other answer)."""
    if obs.method != "HEAD":
        return None
    assert capture_row is not None
    moved = obs.redirected and obs.permanent and not same_resource(obs.url, obs.final_url or "")
    if moved:
        return Verdict("moved", "permanent-redirect",
                       f"permanent redirect to {obs.final_url}; HEAD: same type and length")
    return Verdict("ok", "head", f"HEAD: same type and length as the last capture "
                                 f"({capture_row['payload_size']} bytes)")


def head_note(head: Observation) -> str:
    """Why a check that asked HEAD first went on to GET."""
    if head.error_kind:
        return f"HEAD failed ({head.error_kind}); checked with GET"
    status = head.status
    if status in (405, 501):
        return f"HEAD refused ({status}); checked with GET"
    if status and not 200 <= status < 400:
        return f"HEAD answered {status}; confirmed with GET"
    return "HEAD inconclusive; checked with GET"


def with_head_note(reason: str, obs: Observation) -> str:
    note = obs.head_note
    return f"{reason} ({note})" if note else reason


def wants_probe(obs: Observation, verdict: Verdict) -> bool:
    """Ask the site for a random path only when the answer could change
    the verdict: a page that differs from its capture, has none, or sits
    behind a redirect that may be the site's catch-all."""
    if obs.error_kind or not obs.is_html:
        return False
    if not 200 <= (obs.status or 0) < 300:
        return False
    if verdict.verdict == "drifted" or verdict.detail == "no-capture":
        return True
    return verdict.verdict == "moved" and verdict.similarity is None


def second_look_verdict(obs: Observation, again: Observation, baseline: Baseline | None,
                        verdict: Verdict, threshold: float) -> tuple[Verdict, str | None]:
    """A drifted page judged again with a second fetch seconds later: words that differ between
    the two (counters, nonces) are not an edit of the cited text. Also the stable-text digest."""
    if again.error_kind or again.status != obs.status or not again.is_html \
            or baseline is None or baseline.page is None:
        return verdict, None
    vol = textdiff.stable_similarity(baseline.page, obs.page(), again.page())
    if vol.volatile_share == 0:
        return verdict, vol.stable_digest
    sim = round(vol.similarity, 4)
    words = f"{vol.volatile_share:.0%} of its words change on every request"
    if vol.volatile_share <= 0.5 and sim >= threshold:
        return Verdict("ok", "volatile", f"main text unchanged apart from parts that change "
                                         f"on every request ({words}; similarity of the rest "
                                         f"{sim:.2f})", sim), vol.stable_digest
    return Verdict("drifted", "text", f"{verdict.reason}; {words}, similarity of the rest "
                                      f"{sim:.2f}", min(sim, verdict.similarity or sim)), \
        vol.stable_digest
