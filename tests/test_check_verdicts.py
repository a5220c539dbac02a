"""The check's judgement without a network: tables of answers and the verdict each must get.

Every case builds the ``Observation`` a fetch would have made (hops, headers, body) and asks
``check.verdicts`` alone; ``test_check.py`` covers the same rules end to end over loopback.
"""

from __future__ import annotations

import hashlib

import pytest

from evarchive.check.verdicts import (
    Baseline,
    Hop,
    Observation,
    Verdict,
    capture_verdict,
    classify,
    head_conclusive,
    head_note,
    head_verdict,
    known_wall,
    second_look_verdict,
    unjudged,
    wants_probe,
)
from evarchive.queries import PAGE

HTML = "text/html; charset=utf-8"
ARTICLE = " ".join(f"The commission heard witness number {n} describe the night of the raid." for n in range(40))
EDITED = ARTICLE.replace("describe the night", "deny everything about the night")


def page(title: str, text: str, extra: str = "") -> str:
    return (f"<html><head><title>{title}</title></head><body>{extra}"
            f"<main><article><h1>{title}</h1><p>{text}</p></article></main></body></html>")


def answer(url: str, body: str | bytes = b"", status: int = 200, ctype: str | None = HTML,
           redirects: tuple[tuple[str, int], ...] = (), headers: tuple[tuple[str, str], ...] = (),
           method: str = "GET") -> Observation:
    """The observation of ``url``: ``redirects`` are (from URL, status) hops before the final one."""
    raw = body.encode() if isinstance(body, str) else body
    hops = [Hop(src, "GET", code, location=(redirects[i + 1][0] if i + 1 < len(redirects) else url))
            for i, (src, code) in enumerate(redirects)]
    final_headers = ([("Content-Type", ctype)] if ctype else []) + list(headers)
    hops.append(Hop(url, "GET", status, headers=final_headers))
    return Observation(url=redirects[0][0] if redirects else url, hops=hops, body=raw,
                       payload_sha256=hashlib.sha256(raw).hexdigest(), method=method)


def failed(kind: str, message: str | None = None) -> Observation:
    return Observation(url="https://a.example/x", error_kind=kind, error_message=message)


def baseline_of(html: str, final_url: str | None = None) -> Baseline:
    obs = answer("https://a.example/x", html)
    return Baseline(1, obs.payload_sha256, HTML, page=obs.page(), final_url=final_url)


ARTICLE_PAGE = page("Raid inquiry", ARTICLE)
KEPT = baseline_of(ARTICLE_PAGE)

# (case, observation, baseline, probe) -> (verdict, detail)
CASES = [
    ("dns failure", failed("dns"), None, None, ("unreachable", "dns")),
    ("refused", failed("refused"), None, None, ("unreachable", "refused")),
    ("timeout", failed("timeout", "no data for 30 s"), None, None, ("unreachable", "timeout")),
    ("redirect loop", failed("redirect-loop"), None, None, ("unreachable", "redirect-loop")),
    ("404", answer("https://a.example/x", "gone", 404), KEPT, None, ("gone", "404")),
    ("410", answer("https://a.example/x", "", 410), KEPT, None, ("gone", "410")),
    ("401", answer("https://a.example/x", "", 401), KEPT, None, ("blocked", "auth")),
    ("403", answer("https://a.example/x", "", 403), KEPT, None, ("blocked", "forbidden")),
    ("429", answer("https://a.example/x", "", 429), KEPT, None, ("blocked", "rate-limited")),
    ("451", answer("https://a.example/x", "", 451), KEPT, None, ("blocked", "legal")),
    ("500", answer("https://a.example/x", "", 500), KEPT, None, ("unreachable", "server-error")),
    ("418", answer("https://a.example/x", "", 418), KEPT, None, ("unreachable", "client-error")),
    ("304 as final", answer("https://a.example/x", "", 304), KEPT, None, ("unreachable", "protocol")),
    ("same bytes", answer("https://a.example/x", ARTICLE_PAGE), KEPT, None, ("ok", "same-bytes")),
    ("same text, other chrome", answer("https://a.example/x", page("Raid inquiry", ARTICLE, "<nav>Menu</nav>")),
     KEPT, None, ("ok", "same-text")),
    ("edited text", answer("https://a.example/x", page("Raid inquiry", EDITED)), KEPT, None,
     ("drifted", "text")),
    ("no capture", answer("https://a.example/x", ARTICLE_PAGE), None, None, ("ok", "no-capture")),
    ("binary, other bytes", answer("https://a.example/r.pdf", b"%PDF-2", ctype="application/pdf"),
     Baseline(1, "0" * 64, "application/pdf"), None, ("drifted", "bytes")),
    ("permanent redirect, same bytes",
     answer("https://a.example/new/x", ARTICLE_PAGE, redirects=(("https://a.example/x", 301),)),
     KEPT, None, ("moved", "permanent-redirect")),
    ("permanent redirect, same text",
     answer("https://a.example/new/x", page("Raid inquiry", ARTICLE, "<nav>Menu</nav>"),
            redirects=(("https://a.example/x", 308),)), KEPT, None, ("moved", "permanent-redirect")),
    ("http to https of the same page",
     answer("https://a.example/x", ARTICLE_PAGE, redirects=(("http://a.example/x", 301),)),
     KEPT, None, ("ok", "same-bytes")),
    ("redirect to the home page",
     answer("https://a.example/", page("Home", "Latest news"), redirects=(("https://a.example/2024/raid", 301),)),
     KEPT, None, ("gone", "home-redirect")),
    ("redirect to an error page",
     answer("https://a.example/errors/404.html", page("Oops", "Latest news"),
            redirects=(("https://a.example/a/raid", 302),)), KEPT, None, ("gone", "error-redirect")),
    ("redirect to the section above",
     answer("https://a.example/world/", page("World", "Latest news"),
            redirects=(("https://a.example/world/2029/raid", 301),)), KEPT, None, ("gone", "generic-redirect")),
    ("redirect to a login host",
     answer("https://login.a.example/?next=/x", page("Sign in", "Welcome"), redirects=(("https://a.example/x", 302),)),
     KEPT, None, ("blocked", "login")),
    ("redirect to a consent host",
     answer("https://consent.a.example/?continue=x", page("Cookies", "Choose"),
            redirects=(("https://a.example/x", 302),)),
     KEPT, None, ("blocked", "consent")),
    ("redirect to a captcha path",
     answer("https://a.example/captcha/check", page("Check", "Wait"), redirects=(("https://a.example/x", 302),)),
     KEPT, None, ("blocked", "captcha")),
    ("soft 404 by title", answer("https://a.example/x", page("Page not found", "Try the search.")), KEPT, None,
     ("soft-404", "phrase")),
    ("soft 404 by a 404 title", answer("https://a.example/x", page("404 | News", "Try the search.")), KEPT, None,
     ("soft-404", "phrase")),
    ("soft 404 in Russian", answer("https://a.example/x", page("Новости", "Страница не найдена")), None, None,
     ("soft-404", "phrase")),
    ("a number 404 in a title", answer("https://a.example/x", page("Resolution 404/2021", ARTICLE)), None, None,
     ("ok", "no-capture")),
    ("not found inside a long article",
     answer("https://a.example/x", page("Inquiry", "The files were not found in the archive. " * 40)), None, None,
     ("ok", "no-capture")),
    ("captcha on a 403", answer("https://a.example/x", page("Hold on", "Wait", '<div class="g-recaptcha"></div>'), 403),
     KEPT, None, ("blocked", "captcha")),
    ("captcha on a short 200", answer("https://a.example/x", page("Just a moment...", "Checking your browser")),
     KEPT, None, ("blocked", "captcha")),
    ("consent wall", answer("https://a.example/x", page("News", "Before you continue to our site")), KEPT, None,
     ("blocked", "consent")),
    ("cookie banner on a long article",
     answer("https://a.example/x", page("Raid inquiry", ARTICLE, "<div>Accept all cookies</div>")), KEPT, None,
     ("ok", "same-text")),
    ("login wall", answer("https://a.example/x", page("News", "Please log in to continue reading")), KEPT, None,
     ("blocked", "login")),
    ("password field on a short page",
     answer("https://a.example/x", page("Members", "Welcome", '<form><input type="password"></form>')), KEPT, None,
     ("blocked", "login")),
    ("byte-identical to the probe",
     answer("https://a.example/x", page("News", "Welcome to our site")), None,
     answer("https://a.example/evarchive-probe-1", page("News", "Welcome to our site")), ("soft-404", "probe")),
    ("probe differs from the page", answer("https://a.example/x", ARTICLE_PAGE), None,
     answer("https://a.example/evarchive-probe-1", page("Nothing here", "Try the search.")), ("ok", "no-capture")),
]


@pytest.mark.parametrize(("obs", "baseline", "probe", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_classify(obs: Observation, baseline: Baseline | None, probe: Observation | None,
                  expected: tuple[str, str]) -> None:
    verdict = classify(obs, baseline, probe)
    assert (verdict.verdict, verdict.detail) == expected, verdict.reason


@pytest.mark.parametrize(("obs", "expected"), [
    (answer("https://a.example/x", ARTICLE_PAGE), (None, PAGE)),
    (answer("https://a.example/x", page("Page not found", "Try the search.")),
     (None, "soft 404: 200, but the title says 'Page not found'")),
    (answer("https://a.example/", page("Home", "Latest news"), redirects=(("https://a.example/2024/raid", 301),)),
     (None, "not the cited page: redirected to https://a.example/, the site's home page")),
    (answer("https://a.example/x", page("News", "Please log in to continue reading")),
     ("login: login wall ('please log in')", "login wall ('please log in')")),
], ids=["page", "soft 404", "home page", "login wall"])
def test_capture_verdict_says_why_a_capture_is_not_the_page(obs: Observation,
                                                            expected: tuple[str | None, str]) -> None:
    assert capture_verdict(obs) == expected


def test_a_known_wall_is_reused_only_for_the_same_answer() -> None:
    wall = answer("https://a.example/x", page("News", "Please log in to continue reading"))
    prev = {"payload_sha256": wall.payload_sha256, "http_status": 200, "final_url": "https://a.example/x",
            "verdict": "blocked", "detail": "login", "reason": "login wall"}
    assert known_wall(wall, prev) == Verdict("blocked", "login", "login wall")
    assert known_wall(wall, {**prev, "verdict": "ok", "detail": "same-text"}) is False
    assert known_wall(wall, {**prev, "http_status": 403}) is None
    assert known_wall(wall, None) is None


@pytest.mark.parametrize(("obs", "capture_row", "conclusive"), [
    (answer("https://a.example/r.pdf", ctype="application/pdf", headers=(("Content-Length", "1234"),)),
     {"payload_size": 1234}, True),
    (answer("https://a.example/r.pdf", ctype="application/pdf", headers=(("Content-Length", "99"),)),
     {"payload_size": 1234}, False),
    (answer("https://a.example/r.pdf", ctype="application/pdf"), {"payload_size": 1234}, False),
    (answer("https://a.example/x", headers=(("Content-Length", "1234"),)), {"payload_size": 1234}, False),
    (answer("https://a.example/r.pdf", status=405, ctype="application/pdf"), {"payload_size": 1234}, False),
    (answer("https://a.example/r.pdf", ctype="application/pdf", headers=(("Content-Length", "1234"),)),
     None, False),
], ids=["same length", "other length", "no length", "html", "405", "no capture"])
def test_head_settles_only_a_binary_source_of_the_same_length(obs: Observation, capture_row: dict | None,
                                                              conclusive: bool) -> None:
    assert head_conclusive(obs, capture_row) is conclusive


def test_head_verdicts_and_notes() -> None:
    head = answer("https://a.example/r.pdf", ctype="application/pdf", method="HEAD")
    assert head_verdict(head, {"payload_size": 1234}) == Verdict(
        "ok", "head", "HEAD: same type and length as the last capture (1234 bytes)")
    moved = answer("https://b.example/r.pdf", ctype="application/pdf", method="HEAD",
                   redirects=(("https://a.example/r.pdf", 301),))
    assert head_verdict(moved, {"payload_size": 1234}).verdict == "moved"  # type: ignore[union-attr]
    assert head_verdict(answer("https://a.example/r.pdf"), {"payload_size": 1234}) is None  # a GET
    assert head_note(answer("https://a.example/r.pdf", status=405)) == "HEAD refused (405); checked with GET"
    assert head_note(answer("https://a.example/r.pdf", status=404)) == "HEAD answered 404; confirmed with GET"
    assert head_note(failed("reset")) == "HEAD failed (reset); checked with GET"


@pytest.mark.parametrize(("obs", "verdict", "wanted"), [
    (answer("https://a.example/x", ARTICLE_PAGE), Verdict("drifted", "text", ""), True),
    (answer("https://a.example/x", ARTICLE_PAGE), Verdict("ok", "no-capture", ""), True),
    (answer("https://a.example/x", ARTICLE_PAGE), Verdict("ok", "same-text", ""), False),
    (answer("https://a.example/x", ARTICLE_PAGE), Verdict("moved", "permanent-redirect", ""), True),
    (answer("https://a.example/x", ARTICLE_PAGE), Verdict("moved", "permanent-redirect", "", 0.99), False),
    (answer("https://a.example/r.pdf", b"%PDF", ctype="application/pdf"), Verdict("drifted", "bytes", ""), False),
    (answer("https://a.example/x", "", 404), Verdict("gone", "404", ""), False),
    (failed("dns"), Verdict("unreachable", "dns", ""), False),
], ids=["drifted", "no capture", "unchanged", "moved, not compared", "moved, compared", "binary", "404",
        "failed"])
def test_a_probe_is_asked_only_when_it_could_change_the_verdict(obs: Observation, verdict: Verdict,
                                                                 wanted: bool) -> None:
    assert wants_probe(obs, verdict) is wanted


def test_a_second_look_sets_words_that_change_on_every_request_aside() -> None:
    def counted(visitors: int) -> Observation:
        text = "An article about the raid. " * 30 + f"</p><p>Visitors today: {visitors}"
        return answer("https://a.example/x", page("Raid", text))

    kept = Baseline(1, "x", HTML, page=counted(1000).page())
    drifted = Verdict("drifted", "text", "main text changed", 0.9)
    verdict, digest = second_look_verdict(counted(1001), counted(1002), kept, drifted, 0.97)
    assert (verdict.verdict, verdict.detail) == ("ok", "volatile")
    assert digest is not None
    gone_in_between = answer("https://a.example/x", "", 404)
    assert second_look_verdict(counted(1001), gone_in_between, kept, drifted, 0.97) == (drifted, None)


def test_an_answer_that_cannot_be_judged_says_so() -> None:
    obs = answer("https://a.example/x", ARTICLE_PAGE)
    same = unjudged(obs, KEPT, MemoryError("forced"))
    assert (same.verdict, same.detail) == ("ok", "same-bytes")
    other = unjudged(obs, Baseline(1, "0" * 64, HTML), MemoryError("forced"))
    assert (other.verdict, other.detail) == ("drifted", "not-judged")
    assert "could not be judged (MemoryError: forced)" in other.reason
