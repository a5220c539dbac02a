"""Live re-checks of cited sources: verdicts, N-strike confirmation, evidence, rot.

A nightly cron job re-checks every source and asks one question per source:
is what was cited still there? The answer is a *verdict*:

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

A failing verdict (gone, soft-404, unreachable) is only *confirmed* after N
consecutive failing checks spread over a minimum interval: a site that is down
for a night, or a flaky network, must not make a source "dead".

Every check is a catalogue row, and what the server answered for a failing or
changed source (the 404 page, the redirect, the soft-404 page and the random-path
probe it was compared with) is written to the archive's WARC files, because
"this page was removed on date X" is itself evidence. Earlier captures are
never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from . import __version__, custody, textdiff
from .archive import Archive
from .capture import (
    CaptureFailure,
    CaptureSettings,
    Fetcher,
    build_client,
    classify_exception,
    write_hop_records,
)
from .capture import CapturedHop as CaptureHop
from .catalogue import insert, one, to_json, transaction, update, utc_now
from .client import redact_proxy
from .errors import ArchiveLockedError, EvarchiveError, UsageError
from .textdiff import PageText
from .urls import host_of, request_url
from .warcwriter import RecordBlock as Block, RecordSpec, WarcWriter, WrittenRecord, warc_fields

VERDICTS = ("ok", "drifted", "moved", "gone", "soft-404", "blocked", "unreachable")
FAILING = frozenset({"gone", "soft-404", "unreachable"})
NEUTRAL = frozenset({"blocked"})  # no information: neither a strike nor a reset

# ------------------------------------------------------------------ settings

DEFAULT_STRIKES = 3
# Three nightly runs are 48 h apart first to last; 36 h leaves room for cron
# jitter and a late run while still refusing three checks within one evening.
DEFAULT_MIN_INTERVAL = dt.timedelta(hours=36)
# Main-text similarity below which a page has drifted. One changed word in a
# 300-word article scores about 0.99; a rewritten sentence about 0.95.
DEFAULT_DRIFT_THRESHOLD = 0.97
# A soft-404 page often repeats the requested path, so it is "the same page as
# the random-path probe" at a lower similarity than an unchanged article.
PROBE_SAME_THRESHOLD = 0.85
# Below this many words the main text is too short to be an article: a wall,
# an error page or an empty shell.
SHORT_PAGE_WORDS = 150


@dataclass(frozen=True)
class StrikeRule:
    """When a run of failing checks becomes a confirmed dead source."""

    strikes: int = DEFAULT_STRIKES
    min_interval: dt.timedelta = DEFAULT_MIN_INTERVAL


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
                self.truncated) if self.is_html else PageText()
        return self._page

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


# ------------------------------------------------------------------ markers

# "Not found" in the languages of the sites human-rights reports cite most.
# Matched in the title and first heading, or in the whole main text of a short page.
_NOT_FOUND_PHRASES = (
    # en
    "page not found", "not found", "page cannot be found", "page can't be found",
    "page could not be found", "page couldn't be found", "page does not exist",
    "page doesn't exist", "page no longer exists", "no longer available",
    "content is no longer available", "this page has been removed", "nothing was found",
    "we couldn't find", "we could not find", "can't find the page", "cannot find the page",
    "error 404", "404 error",
    # fr
    "page introuvable", "page non trouvée", "page inexistante", "cette page n'existe pas",
    "cette page n'existe plus", "erreur 404",
    # de
    "seite nicht gefunden", "seite wurde nicht gefunden", "seite existiert nicht",
    "nicht gefunden", "fehler 404",
    # es / pt / it / ca
    "página no encontrada", "pagina no encontrada", "no se encontró la página",
    "la página no existe", "página não encontrada", "pagina não encontrada",
    "página não existe", "pagina non trovata", "la pagina non esiste", "error 404",
    "pàgina no trobada",
    # nl / pl / cs / tr / id / vi / sw
    "pagina niet gevonden", "niet gevonden", "nie znaleziono strony", "strona nie istnieje",
    "stránka nenalezena", "stránka nebyla nalezena", "sayfa bulunamadı",
    "halaman tidak ditemukan", "không tìm thấy trang", "ukurasa haupatikani",
    # ru / uk / be / sr
    "страница не найдена", "страница не существует", "сторінку не знайдено",
    "сторінка не знайдена", "старонка не знойдзена", "страница није пронађена",
    # ar / fa / ur / he
    "الصفحة غير موجودة", "الصفحة المطلوبة غير موجودة", "لم يتم العثور على الصفحة",
    "صفحه مورد نظر یافت نشد", "صفحه یافت نشد", "صفحہ نہیں ملا", "הדף לא נמצא",
    # hi / bn / my / th / am
    "पृष्ठ नहीं मिला", "पेज नहीं मिला", "পৃষ্ঠা পাওয়া যায়নি", "ไม่พบหน้า", "ገጹ አልተገኘም",
    # zh / ja / ko
    "页面不存在", "找不到页面", "页面未找到", "找不到網頁", "頁面不存在", "找不到该页面",
    "ページが見つかりません", "お探しのページは見つかりません", "페이지를 찾을 수 없습니다",
)
_NOT_FOUND_RE = re.compile("|".join(re.escape(p) for p in _NOT_FOUND_PHRASES))
# "404" on its own in a title ("404", "404 | Site", "Oops - 404"), never a
# number inside a title ("Benchmark article 404", "Resolution 404/2021").
_TITLE_404_RE = re.compile(r"^\W*404\b(?![./])|[-|:–—]\s*404\s*(?:$|[-|:–—])")

_CAPTCHA_MARKERS = re.compile(
    r"g-recaptcha|recaptcha/api|h-captcha|hcaptcha\.com|cf-challenge|challenge-platform|"
    r"cf_chl_|cf-turnstile|captcha-delivery\.com|px-captcha|ddos-guard|"
    r"are you a robot|are you a human|verify you are human|verify that you are human|"
    r"checking your browser|just a moment\.\.\.|attention required! \| cloudflare|"
    r"unusual traffic from your computer|<title>[^<]*captcha"
)
_CONSENT_MARKERS = re.compile(
    r"before you continue|we value your privacy|cookie consent|consent to cookies|"
    r"accept all cookies|accept cookies to continue|manage your cookie|your privacy choices|"
    r"avant de continuer|bevor sie fortfahren|antes de continuar|prima di continuare|"
    r"consentmanager|onetrust-consent|didomi|quantcast choice|"
    r"<title>[^<]*(?:consent|cookies)"
)
_LOGIN_MARKERS = re.compile(
    r"log in to continue|login to continue|sign in to continue|please log in|please sign in|"
    r"you must be logged in|you need to log in|log in to read|sign in to read|"
    r"subscribe to continue reading|subscribers only|members only|"
    r"connectez-vous|anmelden, um|inicia sesión para|iniciar sessão|войдите|"
    r"<title>[^<]*(?:log ?in|sign ?in)\b"
)
# Every marker above contains at least one of these words (tests check that).
_WALL_TRIGGERS = (
    "captcha recaptcha hcaptcha challenge chl turnstile ddos robot human browser moment "
    "cloudflare unusual continue continuer continuar continuare privacy consent consentmanager "
    "onetrust didomi quantcast cookie cookies fortfahren log login logged sign signin subscribe "
    "subscribers members connectez anmelden inicia iniciar password войдите"
).split()
_TRIGGER_WORDS = frozenset(w.encode() for w in _WALL_TRIGGERS)
# bytes.translate table: ASCII letters and every non-ASCII byte (UTF-8 letters)
# stay, everything else becomes a space, so split() yields the page's words.
_LETTERS_ONLY = bytes(c if (97 <= c <= 122 or c >= 128) else 32 for c in range(256))
_PASSWORD_FIELD = re.compile(r"<input[^>]+type\s*=\s*[\"']?password", re.I)

_LOGIN_PATH = re.compile(
    r"(?:^|/)(?:login|log-in|logon|signin|sign-in|sign_in|auth|authenticate|sso|"
    r"session/new|users/sign_in|account/login|accounts/login|oauth2?|cas/login|"
    r"wp-login\.php|paywall|subscribe)(?:[/.?]|$)", re.I)
_LOGIN_HOST = re.compile(r"^(?:login|signin|accounts?|auth|sso|id|secure)\.", re.I)
_CONSENT_PATH = re.compile(r"(?:^|/)(?:consent|cookie-?consent|cookies?-?wall|privacy-?gate|"
                           r"gdpr|collectconsent)(?:[/.?]|$)", re.I)
_CONSENT_HOST = re.compile(r"^(?:consent|guce|cmp|privacy)\.", re.I)
_CAPTCHA_PATH = re.compile(r"(?:^|/)(?:captcha|challenge|cdn-cgi/challenge-platform|"
                           r"sorry/index|are-you-human|bot-check)(?:[/.?]|$)", re.I)
_HOME_PATH = re.compile(r"^/?(?:(?:index|default|home|start|accueil|inicio)(?:\.\w{2,5})?|"
                        r"[a-z]{2}(?:[-_][a-z]{2})?/?)?$", re.I)
_ERROR_PATH = re.compile(r"(?:^|[/_.-])(?:404|410|not-?found|notfound|page-?not-?found|"
                         r"error|errors|missing|gone|removed)(?:[/_.-]|$)", re.I)

BLOCKED_STATUSES = {
    401: ("auth", "the server asks for credentials (401)"),
    402: ("paywall", "the server asks for payment (402)"),
    403: ("forbidden", "the server refuses access (403)"),
    407: ("proxy-auth", "the proxy asks for credentials (407)"),
    429: ("rate-limited", "the server rate-limits us (429)"),
    451: ("legal", "unavailable for legal reasons (451)"),
    999: ("forbidden", "the server refuses automated access (999)"),
}
GONE_STATUSES = {404: "not found (404)", 410: "gone (410)"}


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
    from .queries import PAGE

    verdict = classify(obs)
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


def capture_observation(hops: list[CaptureHop]) -> Observation:
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
        if _CAPTCHA_PATH.search(parts.path):
            return Verdict("blocked", "captcha", f"captcha: {where}")
        if _CONSENT_HOST.match(parts.hostname or "") or _CONSENT_PATH.search(parts.path):
            return Verdict("blocked", "consent", f"consent wall: {where}")
        if _LOGIN_HOST.match(parts.hostname or "") or _LOGIN_PATH.search(parts.path):
            return Verdict("blocked", "login", f"login wall: {where}")
    if not obs.body or not obs.is_html:
        return None
    # One cheap pass first: the page's words (C-speed translate and split)
    # against the trigger words. Most pages hit none and are done; the marker
    # regexes, and parsing the page to see whether it is short, only run on
    # pages that might be walls.
    if _TRIGGER_WORDS.isdisjoint(obs.raw_bytes().translate(_LETTERS_ONLY).split()):
        return None
    raw = obs.raw_text()
    challenge_status = obs.status in (403, 429, 503)
    if (m := _CAPTCHA_MARKERS.search(raw)) and (challenge_status or _short(obs)):
        return Verdict("blocked", "captcha", f"captcha or bot challenge ({_shown(m)!r})")
    if (m := _CONSENT_MARKERS.search(raw)) and _short(obs):
        return Verdict("blocked", "consent", f"consent wall ({_shown(m)!r})")
    m = _LOGIN_MARKERS.search(raw)
    if (m or _PASSWORD_FIELD.search(raw)) and _short(obs):
        shown = _shown(m) if m else "password field"
        return Verdict("blocked", "login", f"login wall ({shown!r})")
    return None


def _short(obs: Observation) -> bool:
    return obs.page().words < SHORT_PAGE_WORDS


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
    if not obs.redirected or _same_resource(obs.url, obs.final_url or ""):
        return None
    found = _generic_kind(obs, probe)
    if found is None:
        return None
    # The same article at a new address is "moved" even under a generic-looking
    # path, unless the capture itself already landed on that generic page.
    landed_before = bool(baseline and baseline.final_url and obs.final_url
                         and _same_resource(baseline.final_url, obs.final_url))
    if baseline and baseline.page and obs.is_html and not landed_before and \
            textdiff.similarity(baseline.page, obs.page()) >= threshold:
        return None
    detail, where = found
    return Verdict("gone", detail, f"redirected to {obs.final_url}, {where}")


def _generic_kind(obs: Observation, probe: Observation | None) -> tuple[str, str] | None:
    src, dst = urlsplit(obs.url), urlsplit(obs.final_url or "")
    if _HOME_PATH.match(dst.path) and not _HOME_PATH.match(src.path):
        return "home-redirect", "the site's home page"
    if _ERROR_PATH.search(dst.path) and not _ERROR_PATH.search(src.path):
        return "error-redirect", "an error page"
    if probe and probe.redirected and probe.final_url and (probe.status or 0) < 400 and \
            _same_resource(probe.final_url, obs.final_url or ""):
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
        if not title or not (_NOT_FOUND_RE.search(title) or _TITLE_404_RE.search(title)):
            return None
        at = start.find(b"<title")
        if at >= 0 and not _is_compressed(obs.final):  # show it as the page wrote it
            title = _title_of_raw(obs.body[at:at + len(title) + 400].decode("utf-8", "replace"))
        return Verdict("soft-404", "phrase", f"200, but the title says {title[:80]!r}")
    page = obs.page()
    for label, text in (("title", page.title), ("heading", page.h1)):
        low = text.casefold()
        if _NOT_FOUND_RE.search(low) or _TITLE_404_RE.search(low):
            return Verdict("soft-404", "phrase", f"200, but the {label} says {text[:80]!r}")
    if page.words < SHORT_PAGE_WORDS and (m := _NOT_FOUND_RE.search(page.text.casefold())):
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
    moved = obs.redirected and obs.permanent and not _same_resource(obs.url, obs.final_url or "")
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


def _same_resource(a: str, b: str) -> bool:
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


# ------------------------------------------------------------------ strikes

@dataclass(frozen=True)
class StrikeState:
    """A source's failure streak after a check."""

    strikes: int = 0
    first_failure_at: dt.datetime | None = None
    confirmed: bool = False


def next_strikes(prev: StrikeState, verdict: str, at: dt.datetime, rule: StrikeRule,
                 counted: bool = True) -> StrikeState:
    """Apply one check to the streak. A success resets it; ``blocked`` (and a
    check the run did not count, e.g. the whole network was down) leaves it
    as it was; a failure adds a strike, and the streak is confirmed once it
    has N strikes spread over at least the minimum interval."""
    if not counted or verdict in NEUTRAL:
        return prev
    if verdict not in FAILING:
        return StrikeState()
    first = prev.first_failure_at or at
    strikes = prev.strikes + 1
    confirmed = prev.confirmed or (strikes >= rule.strikes and at - first >= rule.min_interval)
    return StrikeState(strikes, first, confirmed)


def describe_strikes(state: StrikeState, rule: StrikeRule, at: dt.datetime) -> str:
    if state.confirmed:
        return f"confirmed after {state.strikes} failing checks"
    if not state.strikes:
        return ""
    left = max(0, rule.strikes - state.strikes)
    wait = rule.min_interval - (at - state.first_failure_at) if state.first_failure_at else rule.min_interval
    parts = [f"strike {state.strikes} of {rule.strikes}"]
    if left == 0 and wait > dt.timedelta(0):
        parts.append(f"confirmable in {_human_delta(wait)}")
    return ", ".join(parts)


def _human_delta(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"


def parse_interval(text: str) -> dt.timedelta:
    """``36h``, ``2d``, ``90m``, ``3600s`` or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not m:
        raise ValueError(f"not an interval: {text!r} (use e.g. 36h, 2d, 90m)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return dt.timedelta(seconds=float(m.group(1)) * unit)


def state_change(prev: dict[str, Any] | None, verdict: str, confirmed: bool,
                 text_sha256: str | None) -> tuple[str | None, bool]:
    """(change label or None, newly failed?) compared with the previous check.

    Newly failed, the finding a cron job mails about (exit 1), is a source
    that just became confirmed dead, or whose main text just drifted (first
    time, or drifted further since the last check).
    """
    if prev is None:
        if confirmed:
            return "confirmed-dead", True
        if verdict == "drifted":
            return "drifted", True
        return (None if verdict == "ok" else verdict), False
    was_confirmed = bool(prev.get("confirmed"))
    if confirmed and not was_confirmed:
        return "confirmed-dead", True
    if verdict == "drifted":
        if prev.get("verdict") != "drifted":
            return "drifted", True
        if text_sha256 and prev.get("text_sha256") and text_sha256 != prev["text_sha256"]:
            return "drifted-further", True
        return None, False
    if was_confirmed and not confirmed:
        return "revived", False
    if verdict != prev.get("verdict"):
        return ("recovered" if verdict == "ok" and prev.get("verdict") in FAILING else verdict), False
    return None, False


# ====================================================================== engine
#
# Everything below talks to the network, the catalogue and the WARC files.
# The HTTP machinery is the capture engine's (same client, recording wire
# layer, retries, Retry-After, backoff, per-host limits), so a check sees the
# web exactly as a capture does and its evidence records are written the same
# way.

CHECK_MAX_BODY = 16 << 20  # enough for any article; larger bodies are not compared
CHECK_TOTAL_TIMEOUT = 120.0
CHECK_MAX_RETRY_AFTER = 120.0  # a server asking us to wait longer is "blocked" tonight
PROBE_PREFIX = "evarchive-probe-"
LOCK_NAME = "check.lock"
HEAD_MODES = ("auto", "always", "never")
EVIDENCE_MODES = ("changes", "all")
NETWORK_DOWN_KINDS = frozenset({"dns", "network", "refused", "timeout"})
# Checks are committed in batches: one fsync per batch, not per source. A run
# killed mid-batch loses only that batch, which the next run simply redoes.
COMMIT_EVERY = 500
SHIP_INTERVAL = 0.25  # seconds between a worker's batches to its parent


def _check_capture_settings() -> CaptureSettings:
    return CaptureSettings(max_body=CHECK_MAX_BODY, total_timeout=CHECK_TOTAL_TIMEOUT,
                           max_retry_after=CHECK_MAX_RETRY_AFTER)


@dataclass
class CheckSettings:
    """Every knob of a check run. ``network`` holds the HTTP side (limits,
    timeouts, retries, resolve, CA file, proxy, and the injectable clock and
    sleep that tests replace)."""

    network: CaptureSettings = field(default_factory=_check_capture_settings)
    rule: StrikeRule = field(default_factory=StrikeRule)
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    head: str = "auto"  # auto: HEAD first for non-HTML sources; always; never
    probe: bool = True  # request a random path per site to recognise soft 404s
    second_look: bool = True  # re-fetch a drifted page to set volatile words aside
    evidence: str = "changes"  # WARC evidence for every non-ok verdict, or "all"
    recapture: bool = False
    recapture_network: CaptureSettings | None = None  # default: capture defaults + resolve etc.
    offline_guard: bool = True
    commit_interval: float = 2.0  # seconds between commits at most

    def __post_init__(self) -> None:
        if self.head not in HEAD_MODES:
            raise UsageError(f"--head must be one of {', '.join(HEAD_MODES)}")
        if self.evidence not in EVIDENCE_MODES:
            raise UsageError(f"--evidence must be one of {', '.join(EVIDENCE_MODES)}")
        if not 0.0 < self.drift_threshold <= 1.0:
            raise UsageError("--drift-threshold must be more than 0 and at most 1")
        if self.rule.strikes < 1:
            raise UsageError("--strikes must be at least 1")

    def clock(self) -> dt.datetime:
        return self.network.clock()

    def public(self) -> dict[str, Any]:
        return {"network": self.network.public(), "strikes": self.rule.strikes,
                "min_interval_s": self.rule.min_interval.total_seconds(),
                "drift_threshold": self.drift_threshold, "head": self.head, "probe": self.probe,
                "second_look": self.second_look, "evidence": self.evidence,
                "recapture": self.recapture, "offline_guard": self.offline_guard}


@dataclass
class CheckResult:
    """One source's check, as printed (table or ``--json``) and stored."""

    url: str
    source_id: int
    verdict: str
    detail: str
    reason: str
    checked_at: str
    similarity: float | None = None
    http_status: int | None = None
    final_url: str | None = None
    method: str | None = None
    strikes: int = 0
    confirmed: bool = False
    first_failure_at: str | None = None
    change: str | None = None
    newly_failed: bool = False
    counted: bool = True
    elapsed_ms: float | None = None
    check_id: int | None = None
    evidence_warc: str | None = None
    baseline_capture_id: int | None = None
    recapture_id: int | None = None
    strike_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class CheckReport:
    run_id: int
    results: list[CheckResult]
    offline: bool = False
    recaptured: list[Any] = field(default_factory=list)

    @property
    def newly_failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.newly_failed]

    @property
    def changed(self) -> list[CheckResult]:
        return [r for r in self.results if r.change]


@dataclass
class _Pending:
    row: dict[str, Any]
    records: list[tuple[str, WrittenRecord]]
    result: CheckResult
    prev_state: StrikeState
    prev_row: dict[str, Any] | None
    host: str
    baseline_cache: dict[str, Any] | None = None
    heard: bool = False  # a server answered this check (the run-wide offline rule)


@dataclass
class _Shipment:
    """What a worker process sends its parent: judged checks whose evidence is on disk
    (fsynced), and baseline texts to cache. The parent commits both."""

    checks: list[_Pending]
    cache_rows: list[dict[str, Any]]


class Slots:
    """A semaphore whose urgent waiters go first (FIFO within each class).

    A check that needs a follow-up request (the random-path probe, a second
    look at a drifted page, GET after a refused HEAD) should finish before
    the next source starts; with a plain FIFO semaphore those follow-ups
    queue behind every source not yet started and stretch the run's tail."""

    def __init__(self, value: int) -> None:
        self._free = value
        self._waiters: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    def slot(self, urgent: bool = False) -> _Slot:
        return _Slot(self, urgent)

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not any(self._waiters):
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[0 if urgent else 1].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # woken and cancelled at once: pass the slot on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters[0 if urgent else 1].remove(future)
            raise

    def _release(self) -> None:
        for queue in self._waiters:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # the slot passes straight to the waiter
                    return
        self._free += 1


class _Slot:
    """``async with slots.slot(urgent):`` (a plain class: cheaper than an
    asynccontextmanager on a path taken for every request)."""

    __slots__ = ("owner", "urgent")

    def __init__(self, owner: Slots, urgent: bool) -> None:
        self.owner, self.urgent = owner, urgent

    async def __aenter__(self) -> None:
        await self.owner._acquire(self.urgent)

    async def __aexit__(self, *exc: object) -> None:
        self.owner._release()


class CheckLock:
    """One check run per archive at a time: an exclusive flock on
    ``locks/check.lock``, released by the kernel if the process dies, so a
    stale lock can never block the next night's run."""

    def __init__(self, locks_dir: Path) -> None:
        self.path = locks_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, clock: Callable[[], dt.datetime]) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise ArchiveLockedError(
                f"another evarchive check is already running on this archive ({holder}); "
                "this run did nothing") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {_stamp(clock())}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CheckLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _MethodFetcher(Fetcher):
    """The capture engine's fetcher, with the request method chosen (HEAD)."""

    def __init__(self, client: httpx.AsyncClient, settings: CaptureSettings, tmp_dir: Path,
                 method: str = "GET") -> None:
        super().__init__(client, settings, tmp_dir)
        self.method = method


def error_kind(exc: BaseException) -> str:
    """Which kind of unreachable: dns, refused, timeout, tls, reset, network,
    protocol or redirect-loop (walks the exception's causes, which is where
    httpx keeps the socket error)."""
    if isinstance(exc, CaptureFailure):
        if exc.kind in ("RedirectLoop", "TooManyRedirects"):
            return "redirect-loop"
        return "protocol"
    for inner in _causes(exc):
        if isinstance(inner, socket.gaierror):
            return "dns"
        if isinstance(inner, ConnectionRefusedError):
            return "refused"
        if isinstance(inner, ssl.SSLError) or isinstance(inner, ssl.CertificateError):
            return "tls"
        if isinstance(inner, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
            return "timeout"
        if isinstance(inner, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return "reset"
    text = " ".join(str(e) for e in _causes(exc)).lower()
    for needle, kind in (("name or service not known", "dns"), ("nodename nor servname", "dns"),
                         ("name resolution", "dns"), ("getaddrinfo", "dns"),
                         ("connection refused", "refused"), ("certificate", "tls"),
                         ("ssl", "tls"), ("timed out", "timeout"), ("reset by peer", "reset"),
                         ("disconnected without sending", "reset"),
                         ("network is unreachable", "network"), ("no route to host", "network")):
        if needle in text:
            return kind
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol"
    return "network"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and members of exception groups."""
    out: list[BaseException] = []
    todo = [exc]
    while todo and len(out) < 32:
        item = todo.pop(0)
        if item in out:
            continue
        out.append(item)
        if isinstance(item, BaseExceptionGroup):
            todo.extend(item.exceptions)
        for nxt in (item.__cause__, item.__context__):
            if nxt is not None:
                todo.append(nxt)
    return out


def _probe_url(url: str) -> str:
    """A path that cannot exist, next to the source (sites route by section
    and by extension, so /news/a.html is probed with /news/<random>.html)."""
    parts = urlsplit(url)
    directory, _, leaf = parts.path.rpartition("/")
    ext = ""
    if "." in leaf and len(leaf.rsplit(".", 1)[1]) <= 5:
        ext = "." + leaf.rsplit(".", 1)[1]
    path = f"{directory}/{PROBE_PREFIX}{secrets.token_hex(8)}{ext}"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _probe_key(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    directory = parts.path.rpartition("/")[0]
    leaf = parts.path.rpartition("/")[2]
    ext = leaf.rsplit(".", 1)[1] if "." in leaf else ""
    return parts.scheme, parts.netloc.lower(), f"{directory}/*.{ext}"


def _htmlish(content_type: str | None) -> bool:
    return not content_type or "html" in content_type.lower()


class CheckRun:
    """Checks a list of sources against the live web; one instance per run."""

    def __init__(self, archive: Archive, settings: CheckSettings,
                 on_result: Callable[[CheckResult], None] | None = None,
                 ship: Callable[[_Shipment], None] | None = None) -> None:
        self.archive = archive
        self.db = archive.db
        self.settings = settings
        self.on_result = on_result
        self.writer = WarcWriter(archive.warcs_dir, archive.locks_dir, archive.db,
                                 max_size=settings.network.max_warc_size,
                                 warcinfo={"purpose": "evarchive check: live answers kept as "
                                                      "evidence of link rot and drift",
                                           "httpx": httpx.__version__,
                                           "settings": settings.public()},
                                 prefix="EVA-CHECK")
        self.pending: list[_Pending] = []
        self.run_id = 0
        self.offline_batches = 0
        self._last_commit = time.monotonic()
        self._probes: dict[tuple[str, str, str], asyncio.Future[Observation]] = {}
        self._open_hops: list[CaptureHop] = []
        self._baselines: dict[int, dict[str, Any]] = {}
        self._last_checks: dict[int, dict[str, Any]] = {}
        self._cache_rows: list[dict[str, Any]] = []  # baseline texts to cache at next commit
        self._heard = False  # has any server answered during this run?
        self._total = Slots(1)  # replaced in run(): settings.network.concurrency
        self._per_host: dict[str, Slots] = {}
        # In a worker process: judged checks go to the parent, which commits them (and alone
        # decides the run-wide offline rule); None in the process that commits.
        self.ship = ship
        self._received: list[CheckResult] = []  # parent of workers: every result sent to it

    # ------------------------------------------------------------ orchestration
    async def run(self, sources: list[dict[str, Any]]) -> CheckReport:
        self.run_id = self._start_run_row(len(sources))
        results = await self.check_all(sources)
        return await self._finish_run(results, sources)

    async def _finish_run(self, results: list[CheckResult], sources: list[dict[str, Any]]) -> CheckReport:
        report = CheckReport(self.run_id, _in_order(results, sources),
                             offline=self.offline_batches > 0)
        if self.settings.recapture:
            report.recaptured = await self._recapture(report)
        self._end_run_row(report)
        return report

    def run_in_workers(self, sources: list[dict[str, Any]], workers: int) -> CheckReport:
        """The run over worker processes (whole hosts each, as capture does): each worker
        checks its share with its own ``CheckRun``, WARC writer and catalogue connection, and
        sends its judged checks here, where they are committed exactly as in one process. So
        the offline rule sees every worker's checks: one worker whose hosts are all down
        while another's answer is not an offline machine. Call with no event loop running
        (it forks) and with the check lock held: the workers inherit it."""
        from .parallel import run_in_workers, split_by_host

        self.run_id = self._start_run_row(len(sources))
        shares = split_by_host(sources, workers, url_of=lambda s: s["url"])
        net = self.settings.network
        per_worker = replace(self.settings, recapture=False, network=replace(
            net, concurrency=max(1, net.concurrency // len(shares)), workers=1))
        archive_path, run_id = self.archive.path, self.run_id

        def work(share: list[dict[str, Any]], batch: Any) -> None:
            archive = Archive.open(archive_path)
            run = CheckRun(archive, per_worker, ship=lambda shipment: batch.send([shipment]))
            run.run_id = run_id
            asyncio.run(run.check_all(share))
            archive.close()

        try:
            run_in_workers(shares, work, self.receive, "check",
                           "the checks it had sent are kept; run the check again to finish")
        finally:
            try:
                self.commit_pending()
            finally:
                self.writer.close()
        return asyncio.run(self._finish_run(self._received, sources))

    def receive(self, shipments: list[_Shipment]) -> None:
        """Checks from workers: held and committed by the same rule as in one process."""
        for shipment in shipments:
            for item in shipment.checks:
                self.pending.append(item)
                self._received.append(item.result)
                self._heard = self._heard or item.heard
            self._cache_rows.extend(shipment.cache_rows)
        # Until some server has answered (in any worker) checks are held back, to the end of
        # the run if none ever does: then the offline rule judges them all at once.
        due = time.monotonic() - self._last_commit >= self.settings.commit_interval
        if self._heard and (due or len(self.pending) >= COMMIT_EVERY):
            self.commit_pending()

    async def check_all(self, sources: list[dict[str, Any]]) -> list[CheckResult]:
        """Check every source (the run row exists: ``run_id``) and commit, or ship, the checks."""
        self._preload([s["id"] for s in sources])
        net = self.settings.network
        self._total = Slots(net.concurrency)
        results: list[CheckResult] = []
        try:
            async with build_client(net) as client:
                self.get = _MethodFetcher(client, net, self.archive.tmp_dir, "GET")
                self.head = _MethodFetcher(client, net, self.archive.tmp_dir, "HEAD")

                async def one(source: dict[str, Any]) -> None:
                    results.append(await self.check_one(source, _host_key(source["url"])))

                await asyncio.gather(*(one(s) for s in sources))
        finally:
            # Also on Ctrl-C: the checks already judged are whole, so they are
            # committed; the rest simply were not checked this time.
            try:
                self.commit_pending()
            finally:
                self._close_hops()
                self.writer.close()
        return results

    def _preload(self, source_ids: list[int]) -> None:
        """Last good capture and last check of every source, in two queries."""
        wanted = set(source_ids)
        for row in self.db.query(
                "SELECT c.* FROM captures c JOIN (SELECT source_id, MAX(id) AS id FROM captures "
                "WHERE status = 'ok' GROUP BY source_id) m ON c.id = m.id"):
            if row["source_id"] in wanted:
                self._baselines[row["source_id"]] = row
        for row in self.db.query(
                "SELECT k.* FROM checks k JOIN (SELECT source_id, MAX(id) AS id FROM checks "
                "GROUP BY source_id) m ON k.id = m.id"):
            if row["source_id"] in wanted:
                self._last_checks[row["source_id"]] = row

    # ------------------------------------------------------------ one source
    async def check_one(self, source: dict[str, Any], host: str) -> CheckResult:
        started = self.settings.clock()
        t0 = time.monotonic()
        url = source["url"]
        capture_row = self._baselines.get(source["id"])
        baseline = self._baseline(capture_row) if capture_row else None
        obs = await self._observe(url, capture_row)
        obs.known_wall = _known_wall(obs, self._last_checks.get(source["id"]))
        try:
            verdict, probe, stable_digest = await self._judge(obs, baseline, capture_row)
        except Exception as exc:  # noqa: BLE001 - one page must never end the whole run
            obs._page = None
            verdict, probe, stable_digest = _unjudged(obs, baseline, exc), None, None
        elapsed = (time.monotonic() - t0) * 1000
        return self._finish(source, host, started, obs, probe, baseline, verdict, elapsed,
                            stable_digest)

    async def _judge(self, obs: Observation, baseline: Baseline | None,
                     capture_row: dict[str, Any] | None
                     ) -> tuple[Verdict, Observation | None, str | None]:
        """The verdict, the probe it rests on, and the stable-text digest of a volatile page."""
        probe: Observation | None = None
        verdict = self._head_verdict(obs, capture_row) or classify(
            obs, baseline, None, self.settings.drift_threshold)
        if self._wants_probe(obs, verdict):
            probe = await self._probe(obs)
            verdict = classify(obs, baseline, probe, self.settings.drift_threshold)
        stable_digest = None
        if verdict.verdict == "drifted" and verdict.detail == "text" and self.settings.second_look:
            verdict, stable_digest = await self._second_look(obs, baseline, verdict)
        return verdict, probe, stable_digest

    async def _observe(self, url: str, capture_row: dict[str, Any] | None) -> Observation:
        mode = self.settings.head
        head_first = mode == "always" or (
            mode == "auto" and capture_row is not None and not _htmlish(capture_row["content_type"]))
        if not head_first:
            obs = await self._fetch(self.get, url)
            obs.method = "GET"
            return obs
        first = await self._fetch(self.head, url)
        first.method = "HEAD"
        if self._head_conclusive(first, capture_row):
            return first
        obs = await self._fetch(self.get, url, urgent=True)
        obs.method = "HEAD>GET"
        obs.head_note = _head_note(first)
        obs.extra_raw_hops = first.raw_hops
        return obs

    @staticmethod
    def _head_conclusive(obs: Observation, capture_row: dict[str, Any] | None) -> bool:
        """A HEAD answer settles a check only for a non-HTML source whose type
        and length match its capture; anything else (405, 404 from a server
        that mishandles HEAD, HTML that needs its text compared) goes to GET."""
        final = obs.final
        if obs.error_kind or final is None or not 200 <= final.status < 300:
            return False
        if _htmlish(final.header("content-type")) or capture_row is None:
            return False
        length = final.header("content-length")
        return length is not None and length.strip() == str(capture_row["payload_size"])

    @staticmethod
    def _head_verdict(obs: Observation, capture_row: dict[str, Any] | None) -> Verdict | None:
        if obs.method != "HEAD":
            return None
        assert capture_row is not None
        moved = obs.redirected and obs.permanent and not _same_resource(obs.url, obs.final_url or "")
        if moved:
            return Verdict("moved", "permanent-redirect",
                           f"permanent redirect to {obs.final_url}; HEAD: same type and length")
        return Verdict("ok", "head", f"HEAD: same type and length as the last capture "
                                     f"({capture_row['payload_size']} bytes)")

    async def _fetch(self, fetcher: _MethodFetcher, url: str, urgent: bool = False) -> Observation:
        """One URL, hop by hop, through the capture engine's fetcher; failures
        become an observation with an error kind, never an exception.

        The limits hold only while a request is out, not while a page is
        judged: politeness is about requests, and the next request to the host
        need not wait for our parsing. Per host first, then the total, so a
        request waiting for its busy host never holds a global slot. ``urgent``
        requests (a probe, a second look, GET after HEAD) finish a source that
        is already under way, so they go before sources not yet started."""
        host_limit = self._per_host.setdefault(_host_key(url), Slots(self.settings.network.per_host))
        start = time.monotonic()
        hops: list[CaptureHop] = []  # filled hop by hop: what was received survives a later failure
        try:
            async with host_limit.slot(urgent), self._total.slot(urgent):
                async with asyncio.timeout(self.settings.network.total_timeout):
                    await fetcher.fetch_chain(url, hops)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            self._open_hops.extend(hops)
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure is a verdict
            self._open_hops.extend(hops)
            _, message = classify_exception(exc)
            obs = _observation(url, hops)
            obs.error_kind = error_kind(exc)
            obs.error_message = _timeout_message(exc, self.settings.network) \
                if obs.error_kind == "timeout" else redact_proxy(message, self.settings.network.proxy)
            obs.elapsed_ms = (time.monotonic() - start) * 1000
            return obs
        self._open_hops.extend(hops)
        obs = _observation(url, hops)
        obs.elapsed_ms = (time.monotonic() - start) * 1000
        return obs

    def _wants_probe(self, obs: Observation, verdict: Verdict) -> bool:
        """Ask the site for a random path only when the answer could change
        the verdict: a page that differs from its capture, has none, or sits
        behind a redirect that may be the site's catch-all."""
        if not self.settings.probe or obs.error_kind or not obs.is_html:
            return False
        if not 200 <= (obs.status or 0) < 300:
            return False
        if verdict.verdict == "drifted" or verdict.detail == "no-capture":
            return True
        return verdict.verdict == "moved" and verdict.similarity is None

    async def _probe(self, obs: Observation) -> Observation:
        """The site's answer for a path that cannot exist, once per site
        section and run (shared by every source in it)."""
        key = _probe_key(obs.url)
        future = self._probes.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._probes[key] = future
            try:
                probe = await self._fetch(self.get, _probe_url(request_url(obs.url)), urgent=True)
            except BaseException as exc:
                future.set_exception(exc)
                raise
            future.set_result(probe)
        return await asyncio.shield(future)

    async def _second_look(self, obs: Observation, baseline: Baseline | None,
                           verdict: Verdict) -> tuple[Verdict, str | None]:
        """Fetch a drifted page again: words that differ between two fetches
        seconds apart (counters, nonces) are not an edit of the cited text."""
        again = await self._fetch(self.get, obs.url, urgent=True)
        if again.error_kind or again.status != obs.status or not again.is_html \
                or baseline is None or baseline.page is None:
            return verdict, None
        vol = textdiff.stable_similarity(baseline.page, obs.page(), again.page())
        if vol.volatile_share == 0:
            return verdict, vol.stable_digest
        sim = round(vol.similarity, 4)
        words = f"{vol.volatile_share:.0%} of its words change on every request"
        if vol.volatile_share <= 0.5 and sim >= self.settings.drift_threshold:
            return Verdict("ok", "volatile", f"main text unchanged apart from parts that change "
                                             f"on every request ({words}; similarity of the rest "
                                             f"{sim:.2f})", sim), vol.stable_digest
        return Verdict("drifted", "text", f"{verdict.reason}; {words}, similarity of the rest "
                                          f"{sim:.2f}", min(sim, verdict.similarity or sim)), \
            vol.stable_digest

    # ------------------------------------------------------------ baselines
    def _baseline(self, capture_row: dict[str, Any]) -> Baseline:
        return Baseline(capture_row["id"], capture_row["payload_sha256"],
                        capture_row["content_type"], final_url=capture_row["final_url"],
                        loader=lambda: self._load_baseline_page(capture_row))

    def _load_baseline_page(self, capture_row: dict[str, Any]) -> PageText | None:
        """The capture's main text: from the cache table, else from its
        response record in the WARC (read only, never modified)."""
        if not _htmlish(capture_row["content_type"]):
            return None
        cached = one(self.db, "SELECT * FROM check_baselines WHERE capture_id = ? AND "
                              "extractor_version = ?",
                     [capture_row["id"], textdiff.EXTRACTOR_VERSION])
        if cached:
            return PageText(cached["title"] or "", cached["h1"] or "",
                            tuple(json.loads(cached["paragraphs"])))
        page = _capture_text(self.archive, capture_row)
        if page is None:
            return None
        if page.cut:
            return page  # only its start: not worth keeping as the capture's text
        self._cache_rows.append({
            "capture_id": capture_row["id"], "extractor_version": textdiff.EXTRACTOR_VERSION,
            "text_sha256": textdiff.text_digest(page), "title": page.title, "h1": page.h1,
            "paragraphs": to_json(list(page.paragraphs))})
        return page

    # ------------------------------------------------------------ recording
    def _finish(self, source: dict[str, Any], host: str, started: dt.datetime,
                obs: Observation, probe: Observation | None, baseline: Baseline | None,
                verdict: Verdict, elapsed: float, stable_digest: str | None) -> CheckResult:
        prev_row = self._last_checks.get(source["id"])
        prev = _state_of(prev_row)
        state = next_strikes(prev, verdict.verdict, started, self.settings.rule)
        text_sha = stable_digest or (textdiff.text_digest(obs.page())
                                     if obs._page is not None else None)
        change, newly = state_change(prev_row, verdict.verdict, state.confirmed, text_sha)
        checked_at = _stamp(started)
        result = CheckResult(
            url=source["url"], source_id=source["id"], verdict=verdict.verdict,
            detail=verdict.detail, reason=_with_head_note(verdict.reason, obs),
            checked_at=checked_at, similarity=verdict.similarity, http_status=obs.status,
            final_url=obs.final_url, method=obs.method, strikes=state.strikes,
            confirmed=state.confirmed,
            first_failure_at=_stamp(state.first_failure_at) if state.first_failure_at else None,
            change=change, newly_failed=newly, elapsed_ms=round(elapsed, 1),
            baseline_capture_id=baseline.capture_id if baseline else None,
            strike_note=describe_strikes(state, self.settings.rule, started))
        records = self._write_evidence(source, obs, probe, verdict, result)
        result.evidence_warc = records[0][1].warc_file if records else None
        row = _check_row(result, obs, probe, text_sha, self.run_id, self.settings.clock())
        self.pending.append(_Pending(row, records, result, prev, prev_row, host,
                                     heard=bool(obs.hops)))
        if self.ship is not None:
            if time.monotonic() - self._last_commit >= SHIP_INTERVAL:
                self.commit_pending()
            return result
        self._heard = self._heard or bool(obs.hops)
        # Until some server has answered, checks are held back: if none ever
        # does, this machine is offline and they must not count as strikes.
        due = time.monotonic() - self._last_commit >= self.settings.commit_interval
        if len(self.pending) >= COMMIT_EVERY or (due and self._heard):
            self.commit_pending()
        return result

    def _write_evidence(self, source: dict[str, Any], obs: Observation, probe: Observation | None,
                        verdict: Verdict, result: CheckResult) -> list[tuple[str, WrittenRecord]]:
        """What the server answered, as WARC records: every exchange of the
        check (HEAD and GET), the random-path probe when the verdict rests on
        it, and a metadata record stating the verdict and its evidence."""
        if verdict.verdict == "ok" and self.settings.evidence != "all":
            return []
        date = result.checked_at
        self.writer.begin_capture()
        out: list[tuple[str, WrittenRecord]] = []
        for hop in obs.extra_raw_hops:
            out += [("head", r) for r in write_hop_records(self.writer, hop, date, None)]
        for hop in obs.raw_hops:
            out += [("answer", r) for r in write_hop_records(self.writer, hop, date, None)]
        if probe is not None and verdict.detail in ("probe", "generic-redirect"):
            for hop in probe.raw_hops:
                out += [("probe", r) for r in write_hop_records(self.writer, hop, date, None)]
        answer = [r for role, r in out if role == "answer" and r.record_type == "response"]
        headers = [("WARC-Refers-To", answer[-1].record_id)] if answer else []
        body = warc_fields(_metadata_fields(result, obs, probe, source))
        out.append(("verdict", self.writer.write(RecordSpec(
            "metadata", request_url(source["url"]), date, Block(body),
            content_type="application/warc-fields", headers=headers))))
        return out

    def commit_pending(self) -> None:
        """fsync the evidence, then commit the waiting checks, their records
        and one custody entry in a single transaction: a run killed at any
        point leaves whole checks or none, never half of one."""
        if not self.pending and not self._cache_rows:
            return
        if self.ship is not None:
            self._ship_pending()
            return
        self.writer.sync()
        batch, self.pending = self.pending, []
        cache, self._cache_rows = self._cache_rows, []
        if self.settings.offline_guard and not self._heard and _looks_offline(batch):
            self.offline_batches += 1
            for item in batch:
                _uncount(item)
        with transaction(self.db):
            digests = self._insert_checks(batch)
            if cache:
                self.db.conn.executemany(
                    "INSERT OR IGNORE INTO check_baselines (capture_id, extractor_version, "
                    "text_sha256, title, h1, paragraphs) VALUES (?, ?, ?, ?, ?, ?)",
                    [list(row.values()) for row in cache])
            if digests:
                custody.append(self.db, "check", f"run:{self.run_id}",
                               {"run_id": self.run_id, "checks": digests})
        for item in batch:
            self._last_checks[item.result.source_id] = item.row
            if self.on_result:
                self.on_result(item.result)
        self._last_commit = time.monotonic()

    def _ship_pending(self) -> None:
        """A worker's commit: fsync the evidence, then send the checks to the parent."""
        assert self.ship is not None
        batch, self.pending = self.pending, []
        cache, self._cache_rows = self._cache_rows, []
        if any(item.records for item in batch):
            self.writer.sync()
        self.ship(_Shipment(batch, cache))
        self._last_commit = time.monotonic()

    def _insert_checks(self, batch: list[_Pending]) -> list[dict[str, Any]]:
        """Insert a batch with one statement per table (ids assigned here,
        inside the write transaction, so records can point at their check)."""
        if not batch:
            return []
        first_id = (self.db.execute("SELECT COALESCE(MAX(id), 0) FROM checks").fetchone()[0]) + 1
        columns = ["id", *batch[0].row]
        records: list[list[Any]] = []
        ends: dict[str, int] = {}
        digests = []
        for offset, item in enumerate(batch):
            check_id = first_id + offset
            item.result.check_id = check_id
            item.row["id"] = check_id
            for role, rec in item.records:
                records.append([check_id, role, rec.warc_file, rec.offset, rec.length,
                                rec.record_id, rec.record_type, rec.target_uri,
                                rec.block_sha256, rec.payload_sha256, rec.member_sha256])
                ends[rec.warc_file] = max(ends.get(rec.warc_file, 0), rec.offset + rec.length)
            digests.append({"check_id": check_id, "source_id": item.row["source_id"],
                            "verdict": item.row["verdict"], "confirmed": item.row["confirmed"],
                            "row_sha256": hashlib.sha256(to_json(item.row).encode()).hexdigest(),
                            "records": [r.member_sha256 for _, r in item.records]})
        marks = ", ".join("?" for _ in columns)
        names = ", ".join(f"[{c}]" for c in columns)
        self.db.conn.executemany(f"INSERT INTO checks ({names}) VALUES ({marks})",
                                 [[item.row[c] for c in columns] for item in batch])
        if records:
            self.db.conn.executemany(
                "INSERT INTO check_records (check_id, role, warc_file, offset, length, record_id, "
                "record_type, target_uri, block_sha256, payload_sha256, member_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
        for name, end in ends.items():
            self.db.execute("UPDATE warc_files SET referenced_size = MAX(referenced_size, ?) "
                            "WHERE name = ?", [end, name])
        return digests

    def _close_hops(self) -> None:
        for hop in self._open_hops:
            hop.body.close()
        self._open_hops.clear()

    # ------------------------------------------------------------ recapture
    async def _recapture(self, report: CheckReport) -> list[Any]:
        """Capture anew every source that drifted or moved, so the archive
        holds every version; the earlier captures stay exactly as they were."""
        todo = [r for r in report.results if r.verdict in ("drifted", "moved") and r.counted]
        if not todo:
            return []
        net = self.settings.recapture_network or CaptureSettings(
            resolve=self.settings.network.resolve, ca_file=self.settings.network.ca_file,
            proxy=self.settings.network.proxy, user_agent=self.settings.network.user_agent,
            insecure=self.settings.network.insecure, sleep=self.settings.network.sleep,
            clock=self.settings.network.clock)
        from .browser import recapture_by_engine

        outcomes = await recapture_by_engine(self.archive, net, [r.url for r in todo])
        by_url = {o.url: o for o in outcomes}
        with transaction(self.db):
            for result in todo:
                outcome = by_url.get(result.url)
                if outcome is None or outcome.capture_id is None or result.check_id is None:
                    continue
                result.recapture_id = outcome.capture_id
                insert(self.db, "check_recaptures", {"check_id": result.check_id,
                                                     "capture_id": outcome.capture_id})
                custody.append(self.db, "check-recapture", result.url, {
                    "check_id": result.check_id, "capture_id": outcome.capture_id,
                    "capture_status": outcome.status})
        return outcomes

    # ------------------------------------------------------------ run rows
    def _start_run_row(self, count: int) -> int:
        with transaction(self.db):
            return insert(self.db, "runs", {
                "command": f"check ({count} sources)", "started_at": utc_now(),
                "tool_version": __version__, "settings": to_json(self.settings.public()),
                "pid": os.getpid()})

    def _end_run_row(self, report: CheckReport) -> None:
        counts: dict[str, int] = {}
        for r in report.results:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        with transaction(self.db):
            update(self.db, "runs", self.run_id, {"ended_at": utc_now()})
            custody.append(self.db, "check-run", f"run:{self.run_id}", {
                "run_id": self.run_id, "verdicts": counts, "offline": report.offline,
                "newly_failed": len(report.newly_failed),
                "recaptured": len(report.recaptured)})


# ------------------------------------------------------------------ helpers

def _host_key(url: str) -> str:
    """The per-host limit's key. ASCII hosts need no IDNA round trip (which
    costs more than the rest of a check's bookkeeping)."""
    try:
        host = urlsplit(url).hostname or ""
        return host.rstrip(".") if host.isascii() else host_of(url)
    except Exception:  # noqa: BLE001 - an unusable URL still gets a (failing) check
        return url


def _in_order(results: list[CheckResult], sources: list[dict[str, Any]]) -> list[CheckResult]:
    order = {s["id"]: i for i, s in enumerate(sources)}
    return sorted(results, key=lambda r: order.get(r.source_id, 0))


def _observation(url: str, hops: list[CaptureHop]) -> Observation:
    """The classifier's view of capture hops: statuses, headers, final body."""
    # The first hop was requested in request form already; only a failure
    # before any answer needs the conversion.
    obs = Observation(url=hops[0].url if hops else request_url(url))
    for hop in hops:
        headers = [(k, v) for k, v in hop.headers.multi_items()]
        obs.hops.append(Hop(hop.url, "GET", hop.status, hop.reason, headers, hop.location))
    if hops:
        final = hops[-1]
        final.body.seek(0)
        obs.body = final.body.read(CHECK_MAX_BODY)
        obs.truncated = final.truncated
        obs.payload_sha256 = final.payload_sha256
        obs.server_ip = final.server_ip
    obs.raw_hops = hops
    return obs


def _unjudged(obs: Observation, baseline: Baseline | None, exc: Exception) -> Verdict:
    """The verdict when judging an answer failed (out of memory, a parser
    error): said as such, from what is known without judging."""
    what = (type(exc).__name__ + (f": {exc}" if str(exc) else ""))[:160]
    if baseline and baseline.payload_sha256 and baseline.payload_sha256 == obs.payload_sha256:
        return Verdict("ok", "same-bytes", f"identical to the last capture (judging its text "
                                           f"failed: {what})", 1.0)
    return Verdict("drifted", "not-judged", f"answered {obs.status}, but the answer could not be "
                                            f"judged ({what}); its bytes differ from the last "
                                            f"capture")


def _timeout_message(exc: BaseException, net: CaptureSettings) -> str:
    """Which limit ran out, in words (httpx's own messages name cancel scopes)."""
    names = {type(e).__name__ for e in _causes(exc)}
    if "ConnectTimeout" in names:
        return f"no connection within {net.connect_timeout:g} s"
    if "ReadTimeout" in names:
        return f"no data for {net.read_timeout:g} s"
    if "WriteTimeout" in names:
        return f"could not send the request within {net.read_timeout:g} s"
    return f"not finished within {net.total_timeout:g} s"


def _known_wall(obs: Observation, prev: dict[str, Any] | None) -> Verdict | bool | None:
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


def _head_note(head: Observation) -> str:
    if head.error_kind:
        return f"HEAD failed ({head.error_kind}); checked with GET"
    status = head.status
    if status in (405, 501):
        return f"HEAD refused ({status}); checked with GET"
    if status and not 200 <= status < 400:
        return f"HEAD answered {status}; confirmed with GET"
    return "HEAD inconclusive; checked with GET"


def _with_head_note(reason: str, obs: Observation) -> str:
    note = obs.head_note
    return f"{reason} ({note})" if note else reason


def _state_of(row: dict[str, Any] | None) -> StrikeState:
    if not row:
        return StrikeState()
    first = row.get("first_failure_at")
    return StrikeState(int(row.get("strikes") or 0), _parse_time(first) if first else None,
                       bool(row.get("confirmed")))


def _stamp(moment: dt.datetime) -> str:
    """The catalogue's time format (as catalogue.format_time), via isoformat,
    which is several times faster than strftime: it runs thrice per source."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _check_row(result: CheckResult, obs: Observation, probe: Observation | None,
               text_sha: str | None, run_id: int, ended: dt.datetime) -> dict[str, Any]:
    chain = [{"url": h.url, "status": h.status, "location": h.location} for h in obs.hops]
    return {
        "source_id": result.source_id, "run_id": run_id, "checked_at": result.checked_at,
        "ended_at": _stamp(ended), "verdict": result.verdict, "detail": result.detail,
        "reason": result.reason, "method": result.method, "http_status": obs.status,
        "final_url": obs.final_url, "redirect_chain": to_json(chain) if chain else None,
        "server_ip": obs.server_ip, "content_type": obs.content_type,
        "payload_size": len(obs.body) if obs.hops and obs.method != "HEAD" else None,
        "payload_sha256": obs.payload_sha256 if obs.method != "HEAD" else None,
        "text_sha256": text_sha, "similarity": result.similarity,
        "baseline_capture_id": result.baseline_capture_id,
        "probe_url": probe.url if probe else None, "probe_status": probe.status if probe else None,
        "elapsed_ms": result.elapsed_ms, "strikes": result.strikes,
        "first_failure_at": result.first_failure_at, "confirmed": int(result.confirmed),
        "counted": int(result.counted), "change": result.change,
        "newly_failed": int(result.newly_failed), "warc_file": result.evidence_warc,
        "error_message": obs.error_message,
    }


def _metadata_fields(result: CheckResult, obs: Observation, probe: Observation | None,
                     source: dict[str, Any]) -> list[tuple[str, Any]]:
    fields: list[tuple[str, Any]] = [
        ("software", f"evarchive/{__version__}"), ("event", "live check"),
        ("cited-url", source["url"]), ("checked-at", result.checked_at),
        ("verdict", result.verdict), ("detail", result.detail), ("reason", result.reason),
        ("method", result.method or ""),
        ("redirect-chain", [{"url": h.url, "status": h.status, "location": h.location}
                            for h in obs.hops]),
    ]
    if obs.status is not None:
        fields.append(("http-status", str(obs.status)))
    if obs.final_url:
        fields.append(("final-url", obs.final_url))
    if obs.server_ip:
        fields.append(("server-ip", obs.server_ip))
    if obs.error_kind:
        fields += [("error-kind", obs.error_kind), ("error-message", obs.error_message or "")]
    if result.similarity is not None:
        fields.append(("similarity-to-last-capture", f"{result.similarity:.4f}"))
    if result.baseline_capture_id:
        fields.append(("compared-with-capture", str(result.baseline_capture_id)))
    if probe is not None:
        fields += [("probe-url", probe.url), ("probe-status", str(probe.status or ""))]
    fields += [("strikes", str(result.strikes)), ("confirmed", str(result.confirmed).lower())]
    for hop in [*obs.extra_raw_hops, *obs.raw_hops]:  # what was wrong on the wire (wire.py)
        fields += [("finding", f"{hop.url}: {text}") for text in hop.findings]
    return fields


def _looks_offline(batch: list[_Pending]) -> bool:
    """No server has answered yet, and every check so far, over several hosts,
    failed at the network level: the machine running the check is offline, not
    the web. Such checks are kept but do not count as strikes."""
    if len(batch) < 8 or len({item.host for item in batch}) < 3:
        return False
    return all(item.row["verdict"] == "unreachable" and item.row["detail"] in NETWORK_DOWN_KINDS
               for item in batch)


def _uncount(item: _Pending) -> None:
    prev = item.prev_state
    item.result.counted = False
    item.result.strikes, item.result.confirmed = prev.strikes, prev.confirmed
    item.result.first_failure_at = _stamp(prev.first_failure_at) if prev.first_failure_at else None
    item.result.change, item.result.newly_failed = None, False
    item.result.strike_note = "not counted: no host answered (is this machine offline?)"
    item.row.update({"strikes": prev.strikes, "confirmed": int(prev.confirmed),
                     "first_failure_at": item.result.first_failure_at, "counted": 0,
                     "change": None, "newly_failed": 0})


def _capture_text(archive: Archive, capture_row: dict[str, Any]) -> PageText | None:
    """The capture's main text, from as much of its payload as a page is read."""
    body = read_capture_payload(archive, capture_row, textdiff.MAX_HTML_BYTES)
    return None if body is None else textdiff.page_of(body, capture_row["content_type"])


def read_capture_payload(archive: Archive, capture_row: dict[str, Any],
                         limit: int = CHECK_MAX_BODY) -> bytes | None:
    """The decoded payload of a capture's final response record (following a
    revisit to the original), read from the WARC without modifying it: at
    most ``limit`` + 1 bytes (more means the payload goes on)."""
    capture_id = capture_row["refers_to_capture_id"] or capture_row["id"]
    record = one(archive.db, "SELECT * FROM capture_records WHERE capture_id = ? AND "
                             "record_type = 'response' ORDER BY id DESC LIMIT 1", [capture_id])
    if record is None:
        return None
    return read_response_payload(archive, record, limit)


def read_response_payload(archive: Archive, record: dict[str, Any],
                          limit: int = CHECK_MAX_BODY) -> bytes | None:
    """A response record's payload, content-decoded, at most ``limit`` + 1
    bytes: a gzip body may inflate a thousandfold, and warcio inflates it
    block by block as it is read, so reading less inflates less."""
    from warcio.archiveiterator import ArchiveIterator

    path = archive.warcs_dir / record["warc_file"]
    try:
        with open(path, "rb") as fh:
            fh.seek(record["offset"])
            member = fh.read(record["length"])
    except OSError:
        return None
    for warc_record in ArchiveIterator(io.BytesIO(member)):
        if warc_record.rec_type == "response":
            return warc_record.content_stream().read(limit + 1)
    return None


# ------------------------------------------------------------------ public API

def select_sources(archive: Archive, urls: list[str] | None = None,
                   report: str | None = None) -> list[dict[str, Any]]:
    """The sources a check works on: the given URLs (added as sources when
    new), the sources a report cites, or every source."""
    from .catalogue import ensure_sources

    db = archive.db
    if urls:
        refuse_bad_urls(urls)  # every URL first: a usage error must not add half of them
        ids = ensure_sources(db, list(urls))  # new ones in one transaction
        wanted = list(dict.fromkeys(ids[u] for u in urls))
        rows: dict[int, dict[str, Any]] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows.update((r["id"], r) for r in db.query(
                f"SELECT * FROM sources WHERE id IN ({', '.join('?' for _ in chunk)})", chunk))
        return [rows[i] for i in wanted]
    if report is not None:
        return report_sources(archive, report)
    return list(db.query("SELECT * FROM sources ORDER BY id"))


def refuse_bad_urls(urls: list[str]) -> None:
    """Raise one UsageError naming every URL that cannot be checked (nothing is written)."""
    from .urls import normalise_url, validate_url

    refused = []
    for url in urls:
        try:
            normalise_url(validate_url(url))
        except EvarchiveError as exc:
            refused.append(exc.message)
    if refused:
        raise UsageError("nothing was checked:\n  " + "\n  ".join(refused))


def report_sources(archive: Archive, report: str) -> list[dict[str, Any]]:
    """Sources cited by the latest version of a report (by id, title or path)."""
    from .queries import find_report, sources_of_latest_version

    return sources_of_latest_version(archive.db, find_report(archive.db, report)["id"])


def check_sources(archive: Archive, sources: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]],
                  settings: CheckSettings | None = None,
                  on_result: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Check ``sources`` against the live web (blocking). Holds the archive's
    check lock for the whole run; a second run meanwhile raises
    ``ArchiveLockedError`` (exit 3) before doing anything. ``sources`` may be
    a function, called once the lock is held (selecting URLs adds new ones
    as sources: a run that exits at once must not have done even that)."""
    from .parallel import fewer_collections, threads_other_than_main, worker_count
    from .warcwriter import recover_interrupted

    settings = settings or CheckSettings()
    with CheckLock(archive.locks_dir) as lock:
        lock.acquire(settings.clock)
        chosen = sources() if callable(sources) else sources
        recover_interrupted(archive.warcs_dir, archive.db)
        run = CheckRun(archive, settings, on_result)
        # A large run over several hosts is CPU-bound in one process: spread it over worker
        # processes, as capture does (never from a process with other threads: see parallel).
        workers = worker_count(settings.network.workers, [s["url"] for s in chosen])
        with fewer_collections():
            if workers > 1 and not threads_other_than_main():
                return run.run_in_workers(chosen, workers)
            return asyncio.run(run.run(chosen))


# ------------------------------------------------------------------ diff

@dataclass
class DiffResult:
    url: str
    source_id: int
    old_label: str
    new_label: str
    old: PageText
    new: PageText
    similarity: float
    stored: bool  # the new side is evidence in the archive (False: fetched live, not kept)

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "source_id": self.source_id, "old": self.old_label,
                "new": self.new_label, "similarity": round(self.similarity, 4),
                "stored": self.stored,
                "changes": [{"kind": c.kind, "old": list(c.old), "new": list(c.new)}
                            for c in textdiff.changes(self.old, self.new)]}

    def render(self) -> str:
        return textdiff.render_diff(self.old, self.new)

    def unified(self) -> str:
        return textdiff.unified(self.old, self.new, self.old_label, self.new_label)


def diff_source(archive: Archive, url: str, live: bool = False,
                network: CaptureSettings | None = None) -> DiffResult:
    """What changed in a source's main text: by default between the capture
    the latest check compared with and the answer that check kept as
    evidence; with ``live``, between the last capture and the page now."""
    from .catalogue import find_source, last_good_capture
    from .errors import UsageError

    db = archive.db
    source = find_source(db, url)
    if source is None:
        raise UsageError(f"no source {url!r} in the catalogue")
    evidence = None if live else one(db, """
        SELECT k.id AS check_id, k.checked_at, k.verdict, k.baseline_capture_id, k.content_type,
               r.warc_file, r.offset, r.length
        FROM checks k JOIN check_records r ON r.check_id = k.id
        WHERE k.source_id = ? AND r.role = 'answer' AND r.record_type = 'response'
          AND k.baseline_capture_id IS NOT NULL
        ORDER BY k.id DESC, r.id DESC LIMIT 1""", [source["id"]])
    if evidence:
        capture = one(db, "SELECT * FROM captures WHERE id = ?", [evidence["baseline_capture_id"]])
    else:
        capture = last_good_capture(db, source["id"])
    if capture is None:
        raise UsageError(f"{url} has no capture to compare with: capture it first")
    old = _capture_page(archive, capture)
    if evidence:
        body = read_response_payload(archive, evidence, textdiff.MAX_HTML_BYTES) or b""
        new = textdiff.page_of(body, evidence["content_type"])
        new_label = (f"live answer of check {evidence['check_id']} at {evidence['checked_at']} "
                     f"({evidence['verdict']}; {evidence['warc_file']})")
        stored = True
    else:
        new = asyncio.run(_fetch_page(source["url"], network or _check_capture_settings(),
                                      archive.tmp_dir))
        new_label, stored = f"live now ({utc_now()}; fetched for this diff, not stored)", False
    old_label = f"capture {capture['id']} of {capture['started_at']}" + _cut_label(old)
    return DiffResult(source["url"], source["id"], old_label, new_label + _cut_label(new), old, new,
                      textdiff.similarity(old, new), stored)


def _cut_label(page: PageText) -> str:
    return f" (only its start is compared: {page.cut})" if page.cut else ""


def _capture_page(archive: Archive, capture: dict[str, Any]) -> PageText:
    page = _capture_text(archive, capture)
    if page is None:
        from .errors import FindingsError

        raise FindingsError(f"capture {capture['id']}: its response record cannot be read")
    return page


async def _fetch_page(url: str, network: CaptureSettings, tmp_dir: Path) -> PageText:
    from .errors import FindingsError

    async with build_client(network) as client:
        fetcher = _MethodFetcher(client, network, tmp_dir)
        try:
            hops = await fetcher.fetch_chain(url)
        except Exception as exc:  # noqa: BLE001 - reported as a finding
            raise FindingsError(f"{url}: {redact_proxy(classify_exception(exc)[1], network.proxy)}") from None
        try:
            obs = _observation(url, hops)
            return obs.page()
        finally:
            for hop in hops:
                hop.body.close()


# ------------------------------------------------------------------ rot

def recent_checks(db: Any, source_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """A source's latest checks, newest first (for ``evarchive show``)."""
    if "checks" not in db.table_names():
        return []
    return list(db.query(
        "SELECT id, checked_at, verdict, detail, reason, http_status, final_url, similarity, "
        "strikes, confirmed, change, warc_file FROM checks WHERE source_id = ? "
        "ORDER BY id DESC LIMIT ?", [source_id, limit]))


STALE_CHECK = dt.timedelta(days=2)  # a nightly job that has not finished a run for this long


def last_check_run(archive: Archive, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """The latest finished check run (when, how many sources, how old), or None if none ever
    finished: the morning read must not call an archive nobody checks "all live"."""
    row = one(archive.db, "SELECT id, command, started_at, ended_at FROM runs "
                          "WHERE command LIKE 'check (%' AND ended_at IS NOT NULL ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    count = re.match(r"check \((\d+) sources?\)", row["command"])
    age = (now or dt.datetime.now(dt.UTC)) - _parse_time(row["ended_at"])
    return {"run_id": row["id"], "ended_at": row["ended_at"], "sources": int(count.group(1)) if count else None,
            "age_hours": round(age.total_seconds() / 3600, 1), "stale": age > STALE_CHECK}


LIVE_STATES = ("live", "changed", "failing", "dead", "blocked", "unchecked")


def source_states(archive: Archive, source_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """Per source: its live state from the latest check (and since when), and
    whether its latest good capture is intact on disk."""
    from .verify import member_hashes

    db = archive.db
    rows = {r["id"]: r for r in db.query("SELECT * FROM sources ORDER BY id")
            if source_ids is None or r["id"] in source_ids}
    latest = {r["source_id"]: r for r in db.query(
        "SELECT k.* FROM checks k JOIN (SELECT source_id, MAX(id) AS id FROM checks "
        "GROUP BY source_id) m ON k.id = m.id")}
    from .queries import supporting

    captures = {r["source_id"]: r for r in db.query(  # an archived copy is one that supports a claim
        "SELECT c.* FROM captures c JOIN (SELECT source_id, MAX(id) AS id FROM captures "
        f"WHERE {supporting()} GROUP BY source_id) m ON c.id = m.id")}
    out: dict[int, dict[str, Any]] = {}
    for source_id, source in rows.items():
        check = latest.get(source_id)
        state, since = _live_state(db, check)
        capture = captures.get(source_id)
        out[source_id] = {
            "source_id": source_id, "url": source["url"], "live": state, "since": since,
            "verdict": check["verdict"] if check else None,
            "detail": check["detail"] if check else None,
            "reason": check["reason"] if check else None,
            "strikes": check["strikes"] if check else 0,
            "last_checked": check["checked_at"] if check else None,
            "archived": _archived_copy(archive, capture, member_hashes)}
    return out


def _live_state(db: Any, check: dict[str, Any] | None) -> tuple[str, str | None]:
    if check is None:
        return "unchecked", None
    verdict = check["verdict"]
    if verdict in FAILING:
        return ("dead" if check["confirmed"] else "failing"), check["first_failure_at"]
    if verdict == "blocked":
        return "blocked", _streak_start(db, check, ("blocked",))
    if verdict == "drifted":
        return "changed", _streak_start(db, check, ("drifted",))
    return "live", None


def _streak_start(db: Any, check: dict[str, Any], verdicts: tuple[str, ...]) -> str | None:
    marks = ", ".join("?" for _ in verdicts)
    row = one(db, f"SELECT MIN(checked_at) AS since FROM checks WHERE source_id = ? AND id > "
                  f"(SELECT COALESCE(MAX(id), 0) FROM checks WHERE source_id = ? AND "
                  f"verdict NOT IN ({marks}))",
              [check["source_id"], check["source_id"], *verdicts])
    return row["since"] if row else None


def _archived_copy(archive: Archive, capture: dict[str, Any] | None,
                   member_hashes: Callable[..., dict[tuple[int, int], str | None]]
                   ) -> dict[str, Any] | None:
    """The latest good capture and whether every one of its records still has
    the bytes the catalogue vouches for (a revisit also needs its original)."""
    if capture is None:
        return None
    ids = [capture["id"]] + ([capture["refers_to_capture_id"]] if capture["refers_to_capture_id"] else [])
    marks = ", ".join("?" for _ in ids)
    records = list(archive.db.query(
        f"SELECT * FROM capture_records WHERE capture_id IN ({marks})", ids))
    intact = bool(records)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_file.setdefault(record["warc_file"], []).append(record)
    for name, recs in by_file.items():
        path = archive.warcs_dir / name
        if not path.exists():
            intact = False
            continue
        hashes = member_hashes(path, [(r["offset"], r["length"]) for r in recs])
        intact = intact and all(hashes.get((r["offset"], r["length"])) == r["member_sha256"]
                                for r in recs)
    return {"capture_id": capture["id"], "captured_at": capture["started_at"],
            "warc_file": capture["warc_file"], "intact": intact}


def rot_view(archive: Archive, report: str | None = None,
             everything: bool = False) -> list[dict[str, Any]]:
    """The morning view: every claim that has lost (or is losing) a live
    source, since when, and whether each source still has an intact archived
    copy. Without imported reports, one row per source."""
    db = archive.db
    claims: list[dict[str, Any]] = []
    if report is not None or (one(db, "SELECT 1 AS x FROM citations LIMIT 1") is not None):
        from .reports import report_claims

        claims = report_claims(db, report)
    if not claims:
        if report is not None:
            return []
        states = source_states(archive)
        rows = [{"claim_id": None, "report": None, "text": None, "status": _claim_status([s]),
                 "sources": [s]} for s in states.values()]
    else:
        ids = sorted({s["source_id"] for c in claims for s in c["sources"]})
        states = source_states(archive, ids)
        rows = []
        for claim in claims:
            srcs = [states[s["source_id"]] for s in claim["sources"] if s["source_id"] in states]
            rows.append({"claim_id": claim["id"], "report": claim["report"],
                         "report_id": claim["report_id"], "version": claim["version"],
                         "paragraph": claim["paragraph"], "page": claim["page"],
                         "line": claim["line"], "text": claim["text"],
                         "status": _claim_status(srcs), "sources": srcs})
    if not everything:
        rows = [r for r in rows if r["status"] not in ("live", "unchecked")]
    for row in rows:
        row["lost_since"] = min((s["since"] for s in row["sources"]
                                 if s["live"] in ("dead", "changed", "failing") and s["since"]),
                                default=None)
        row["unpreserved"] = [s["url"] for s in row["sources"]
                              if s["live"] in ("dead", "changed", "failing")
                              and not (s["archived"] and s["archived"]["intact"])]
    return rows


def _claim_status(sources: list[dict[str, Any]]) -> str:
    """live: some source still says it; lost: every source is dead or changed;
    at-risk: none live, some only failing, blocked or unchecked."""
    states = {s["live"] for s in sources}
    if not sources or states == {"unchecked"}:
        return "unchecked"
    if "live" in states:
        return "live" if states <= {"live", "unchecked"} else "partly-lost"
    if states <= {"dead", "changed"}:
        return "lost"
    return "at-risk"
