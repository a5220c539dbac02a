"""urls.py decides what may be captured and when two citations are one source: tested directly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evarchive.errors import InputError
from evarchive.urls import host_of, normalise_url, request_url, validate_url

# --------------------------------------------------------------------------- one source, many spellings

SAME_SOURCE = [
    ("HTTP://Example.COM/a", "http://example.com/a"),  # scheme and host are case-insensitive
    ("http://example.com:80/a", "http://example.com/a"),  # default port
    ("https://example.com:443/a", "https://example.com/a"),
    ("https://example.com./a", "https://example.com/a"),  # the root label's dot
    ("https://example.com", "https://example.com/"),  # an empty path is "/"
    ("https://example.com/a#section-2", "https://example.com/a"),  # fragments never reach the server
    ("https://example.com/%7euser", "https://example.com/~user"),  # escaped unreserved character
    ("https://example.com/a%2fb", "https://example.com/a%2Fb"),  # escape case only
    ("https://user:secret@example.com/a", "https://example.com/a"),  # credentials are not the source
    ("https://bücher.de/straße", "https://xn--bcher-kva.de/stra%C3%9Fe"),  # IDNA host, UTF-8 path
]


@pytest.mark.parametrize(("cited", "other"), SAME_SOURCE)
def test_spellings_of_one_source_normalise_alike(cited: str, other: str) -> None:
    assert normalise_url(cited) == normalise_url(other)


DIFFERENT_SOURCES = [
    ("https://example.com/A", "https://example.com/a"),  # paths are case-sensitive
    ("https://example.com/?a=1&b=2", "https://example.com/?b=2&a=1"),  # query order may matter
    ("https://example.com/a%2Fb", "https://example.com/a/b"),  # an escaped slash is not a slash
    ("http://example.com/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com/a"),
    ("https://[::1]:8443/x", "https://[::1:8443]/x"),  # port outside vs inside the IPv6 literal
    ("https://example.com/a?", "https://example.com/a?x"),
]


@pytest.mark.parametrize(("one", "other"), DIFFERENT_SOURCES)
def test_different_sources_stay_different(one: str, other: str) -> None:
    assert normalise_url(one) != normalise_url(other)


def test_normalised_form_is_a_url_evarchive_accepts() -> None:
    assert normalise_url("https://[::1]:8443/x") == "https://[::1]:8443/x"
    assert validate_url(normalise_url("https://[::1]:8443/x"))


# --------------------------------------------------------------------------- what goes on the wire

def test_request_form_encodes_the_host_with_idna_and_non_ascii_as_utf8() -> None:
    assert request_url("https://bücher.de/straße?q=ä") == "https://xn--bcher-kva.de/stra%C3%9Fe?q=%C3%A4"


def test_request_form_keeps_existing_escapes_exactly_as_cited() -> None:
    assert request_url("https://example.com/a%2fb%20c") == "https://example.com/a%2fb%20c"


def test_request_form_drops_the_fragment_and_credentials() -> None:
    assert request_url("https://u:p@example.com/a#top") == "https://example.com/a"


def test_host_of_is_the_lower_case_ascii_host() -> None:
    assert host_of("https://Bücher.DE:8443/x") == "xn--bcher-kva.de"
    assert host_of("http://[::1]:8080/") == "::1"


# --------------------------------------------------------------------------- refusals

REFUSED = {
    "": "empty URL",
    "ftp://example.com/file": "only http and https",
    "javascript:alert(1)": "only http and https",
    "file:///etc/passwd": "only http and https",
    "example.com/a": "no scheme",
    "https://": "no host",
    "https://exa mple.com/": "white space",
    " https://example.com/": "white space",
    "https://example.com:99999/": "Port out of range",
    "https://exa$mple.com/": "not a valid host name",
    "https://☃.com/": "IDNA",
}


@pytest.mark.parametrize("url", sorted(REFUSED))
def test_what_may_not_be_captured_is_refused_with_a_reason(url: str) -> None:
    with pytest.raises(InputError, match=REFUSED[url]):
        validate_url(url)


def test_validate_returns_the_url_exactly_as_cited() -> None:
    cited = "https://Example.com/Straße?q=%7e#frag"
    assert validate_url(cited) is cited


# --------------------------------------------------------------------------- properties

_segment = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                   max_size=12).map(lambda s: s.replace("#", "").replace("?", "").replace("/", ""))
_host = st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(org|com|de)", fullmatch=True)
_urls = st.builds(lambda scheme, host, port, segs, query: (
    f"{scheme}://{host}{port}/" + "/".join(segs) + (f"?{query}" if query else "")),
    st.sampled_from(["http", "https", "HTTPS"]), _host, st.sampled_from(["", ":80", ":443", ":8080"]),
    st.lists(_segment, max_size=4), _segment)


@settings(max_examples=300, deadline=None)
@given(_urls)
def test_normalising_is_idempotent(url: str) -> None:
    once = normalise_url(url)
    assert normalise_url(once) == once


@settings(max_examples=300, deadline=None)
@given(_urls)
def test_the_request_form_is_the_same_source_as_the_citation(url: str) -> None:
    sent = request_url(url)
    assert sent.isascii()
    assert normalise_url(sent) == normalise_url(url)
