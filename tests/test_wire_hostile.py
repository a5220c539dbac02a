"""Hostile HTTP on the wire: cookies, smuggled bytes, HTTP/0.9, conflicting framing, raw URLs.

Every capture must start from a clean state and store exactly what its own exchange carried.
Real loopback server, real WARC files read back with warcio, no mocks and no sleeps.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpcore
import pytest
from fakes import FakeClock, NoSleep
from localserver import CHUNKED_BODY, PLAIN_BODY, SMUGGLE_BODY, SMUGGLED_RESPONSE, LocalServer, Response
from warcio.archiveiterator import ArchiveIterator

from evarchive.archive import Archive
from evarchive.capture import CaptureOutcome, CaptureSettings, capture_urls
from evarchive import CheckSettings, check_sources, select_sources
from evarchive.urls import normalise_url, request_url
from evarchive.wire import RecordingBackend, RecordingStream, ResponseFraming


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    arch = Archive.open(tmp_path / "archive")
    yield arch
    arch.close()


def one_at_a_time(server: LocalServer, **kw: Any) -> CaptureSettings:
    """One capture at a time over one connection per host, so a kept-alive connection and
    anything a shared state carries would pass from each capture to the next."""
    base: dict[str, Any] = dict(ca_file=server.ca_pem_path, sleep=NoSleep(), retries=2, concurrency=1,
                                per_host=1, read_timeout=5, connect_timeout=5, total_timeout=20)
    base.update(kw)
    return CaptureSettings(**base)


def set_cookie_url(server: LocalServer, cookie: bytes, host_ip: str = "127.0.0.1",
                   hostname: str | None = None) -> str:
    return server.url("/cookie/set?c=" + quote(cookie, safe=""), host_ip=host_ip, hostname=hostname)


def records_of(archive: Archive, capture_id: int, kind: str | None = None) -> list[tuple[str, bytes]]:
    """(record type, block bytes exactly as stored) of a capture's records; warcio checks digests."""
    rows = archive.db.execute("SELECT warc_file, offset, length, record_type FROM capture_records "
                              "WHERE capture_id = ? ORDER BY id", [capture_id]).fetchall()
    found = []
    for name, offset, length, record_type in rows:
        if kind is not None and record_type != kind:
            continue
        with open(archive.warcs_dir / name, "rb") as fh:
            fh.seek(offset)
            member = fh.read(length)
        for record in ArchiveIterator(io.BytesIO(member), check_digests="raise"):
            record.content_stream().read()
        block = gzip.decompress(member).partition(b"\r\n\r\n")[2][:-4]
        found.append((record_type, block))
    return found


def requests_of(archive: Archive, outcome: CaptureOutcome) -> list[bytes]:
    assert outcome.capture_id is not None
    return [block for _, block in records_of(archive, outcome.capture_id, "request")]


def metadata_of(archive: Archive, outcome: CaptureOutcome) -> str:
    assert outcome.capture_id is not None
    blocks = [b for _, b in records_of(archive, outcome.capture_id, "metadata")]
    assert len(blocks) == 1
    return blocks[0].decode("utf-8")


# --------------------------------------------------------------------------- cookies

UTF8_COOKIE = "poison=café—ünï; Path=/".encode()
NOT_UTF8_COOKIE = b"latin=caf\xe9\xff; Path=/"


def test_non_ascii_cookies_break_no_later_capture_of_the_host(local_server: LocalServer,
                                                                archive: Archive) -> None:
    plain = [local_server.url(f"/plain?n={i}") for i in range(30)]
    urls = [set_cookie_url(local_server, UTF8_COOKIE), set_cookie_url(local_server, NOT_UTF8_COOKIE), *plain]
    outcomes = capture_urls(archive, urls, one_at_a_time(local_server))
    assert [(o.status, o.error_class) for o in outcomes] == [("captured", None)] * 32
    for outcome in outcomes[2:]:
        assert outcome.payload_sha256 == hashlib.sha256(PLAIN_BODY).hexdigest()
        [request] = requests_of(archive, outcome)
        assert request.startswith(b"GET /plain?n=") and b"\r\ncookie:" not in request.lower()


def test_a_cookie_from_one_capture_is_not_sent_with_the_next(local_server: LocalServer,
                                                            archive: Archive) -> None:
    first = set_cookie_url(local_server, b"session=from-a; Path=/")
    second = local_server.url("/echo")
    outcomes = capture_urls(archive, [first, second], one_at_a_time(local_server))
    assert [o.status for o in outcomes] == ["captured", "captured"]
    [request] = requests_of(archive, outcomes[1])
    assert request.startswith(b"GET /echo HTTP/1.1\r\n") and b"\r\ncookie:" not in request.lower()
    assert local_server.last_exchange("/echo").request.header("cookie") is None


def test_a_domain_cookie_does_not_reach_a_sibling_host(multi_host_server: LocalServer,
                                                       archive: Archive) -> None:
    server = multi_host_server
    resolve = {"a.site.test": ("127.0.0.1", server.port("http", "127.0.0.1")),
               "b.site.test": ("127.0.0.2", server.port("http", "127.0.0.2"))}
    first = set_cookie_url(server, b"wide=1; Domain=site.test; Path=/", hostname="a.site.test")
    second = server.url("/echo", host_ip="127.0.0.2", hostname="b.site.test")
    outcomes = capture_urls(archive, [first, second], one_at_a_time(server, resolve=resolve))
    assert [o.status for o in outcomes] == ["captured", "captured"]
    echo = server.last_exchange("/echo")
    assert (echo.local[0], echo.request.header("cookie")) == ("127.0.0.2", None)
    [request] = requests_of(archive, outcomes[1])
    assert request.startswith(b"GET /echo HTTP/1.1\r\n") and b"\r\ncookie:" not in request.lower()


def test_cookies_set_in_a_redirect_chain_are_sent_as_received_on_its_next_hop(
        local_server: LocalServer, archive: Archive) -> None:
    [outcome] = capture_urls(archive, [local_server.url("/cookie/redirect")], one_at_a_time(local_server))
    assert (outcome.status, outcome.http_status) == ("captured", 200)
    first, second = requests_of(archive, outcome)
    assert first.startswith(b"GET /cookie/redirect HTTP/1.1\r\n") and b"\r\ncookie:" not in first.lower()
    assert b"\r\nCookie: hop=from-the-redirect; utf=caf\xc3\xa9\r\n" in second
    sent = local_server.last_exchange("/echo").request.raw
    assert b"\r\nCookie: hop=from-the-redirect; utf=caf\xc3\xa9\r\n" in sent


def test_a_redirect_to_the_same_url_that_sets_a_cookie_is_no_loop(local_server: LocalServer,
                                                                   archive: Archive) -> None:
    url = local_server.url("/cookie/check")
    [outcome] = capture_urls(archive, [url], one_at_a_time(local_server))
    assert (outcome.status, outcome.http_status) == ("captured", 200)
    chain = archive.db.execute("SELECT redirect_chain FROM captures").fetchone()[0]
    assert [hop["status"] for hop in json.loads(chain)] == [302, 200]
    [loop] = capture_urls(archive, [local_server.url("/loop/a")], one_at_a_time(local_server))
    assert loop.error_class == "RedirectLoop"  # a real loop is still one


def test_check_after_a_non_ascii_cookie_strikes_no_source(local_server: LocalServer,
                                                          archive: Archive) -> None:
    cookie_url = set_cookie_url(local_server, UTF8_COOKIE)
    plain = [local_server.url(f"/plain?n={i}") for i in range(8)]
    for url in [cookie_url, *plain]:  # one run each: the captures cannot poison one another
        [outcome] = capture_urls(archive, [url], one_at_a_time(local_server))
        assert outcome.status == "captured"
    cfg = CheckSettings(network=one_at_a_time(local_server, clock=FakeClock()), commit_interval=0.0)
    report = check_sources(archive, select_sources(archive, [cookie_url, *plain]), cfg)
    assert sorted((r.url, r.verdict) for r in report.results) == sorted(
        (url, "ok") for url in [cookie_url, *plain])


# --------------------------------------------------------------------------- framing

@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_bytes_beyond_a_response_never_reach_the_next_capture(local_server: LocalServer,
                                                              archive: Archive, https: bool) -> None:
    urls = [local_server.url("/smuggle", https=https), local_server.url("/plain", https=https)]
    smuggler, victim = capture_urls(archive, urls, one_at_a_time(local_server))
    assert (victim.status, victim.payload_sha256) == (
        "captured", local_server.last_exchange("/plain").body_sha256)
    assert victim.payload_sha256 == hashlib.sha256(PLAIN_BODY).hexdigest()
    assert not victim.findings
    assert smuggler.status == "captured"
    assert smuggler.payload_sha256 == hashlib.sha256(SMUGGLE_BODY).hexdigest()
    [finding] = smuggler.findings
    assert "bytes beyond the end of this response" in finding and "closed and not reused" in finding
    assert "finding: " + urls[0] + ": the server sent at least" in metadata_of(archive, smuggler)
    entry = archive.db.execute("SELECT details FROM custody_log WHERE event = 'capture' AND "
                               "subject = ?", [urls[0]]).fetchone()[0]
    assert "bytes beyond the end of this response" in entry


def test_a_check_keeps_the_surplus_finding_in_its_evidence(local_server: LocalServer,
                                                           archive: Archive) -> None:
    url = local_server.url("/smuggle")
    [outcome] = capture_urls(archive, [url], one_at_a_time(local_server))
    assert outcome.status == "captured"
    cfg = CheckSettings(network=one_at_a_time(local_server, clock=FakeClock()), commit_interval=0.0,
                        evidence="all", probe=False, head="never")
    [result] = check_sources(archive, select_sources(archive, [url]), cfg).results
    assert result.verdict == "ok"
    rows = archive.db.execute("SELECT warc_file, offset, length FROM check_records "
                              "WHERE record_type = 'metadata'").fetchall()
    [(name, offset, length)] = rows
    with open(archive.warcs_dir / name, "rb") as fh:
        fh.seek(offset)
        block = gzip.decompress(fh.read(length)).decode("utf-8")
    assert f"finding: {url}: the server sent at least" in block


def test_chunked_with_an_invalid_content_length_is_captured_with_its_redirect(
        local_server: LocalServer, archive: Archive) -> None:
    url = local_server.url("/redirect-to?url=/chunked-bad-length")
    [outcome] = capture_urls(archive, [url], one_at_a_time(local_server))
    assert (outcome.status, outcome.http_status) == ("captured", 200)
    assert outcome.payload_sha256 == hashlib.sha256(CHUNKED_BODY).hexdigest()
    chain = archive.db.execute("SELECT redirect_chain FROM captures WHERE id = ?",
                               [outcome.capture_id]).fetchone()[0]
    assert [hop["status"] for hop in json.loads(chain)] == [302, 200]
    [finding] = outcome.findings
    assert "Transfer-Encoding: chunked with Content-Length: -1" in finding
    responses = [b for _, b in records_of(archive, outcome.capture_id, "response")]
    assert len(responses) == 2
    assert b"\r\nContent-Length: -1\r\n" in responses[1]  # the head is kept as the server sent it
    assert "finding: " in metadata_of(archive, outcome)


def test_an_http09_answer_is_named_for_what_it_is(local_server: LocalServer, archive: Archive) -> None:
    [outcome] = capture_urls(archive, [local_server.url("/http09")], one_at_a_time(local_server))
    assert (outcome.status, outcome.error_class) == ("failed", "HTTP09Response")
    assert outcome.error_message.startswith("the server answered without an HTTP status line")
    assert "b'<html>An answer in HTTP/0.9" in outcome.error_message
    assert len(local_server.exchanges("/http09")) == 1  # not retried: the answer will not change


# --------------------------------------------------------------------------- request URLs

def test_the_request_line_carries_the_url_as_cited(local_server: LocalServer, archive: Archive) -> None:
    cited = local_server.url("/echo?f[0]=a|b{c}^&q=é")
    [outcome] = capture_urls(archive, [cited], one_at_a_time(local_server))
    assert outcome.status == "captured"
    wire_target = "/echo?f[0]=a|b{c}^&q=%C3%A9"  # only the non-ASCII letter is encoded
    assert local_server.last_exchange("/echo").target == wire_target
    [request] = requests_of(archive, outcome)
    assert request.startswith(f"GET {wire_target} HTTP/1.1\r\n".encode())


def test_both_spellings_of_a_bracket_are_still_one_source() -> None:
    assert normalise_url("http://h.test/p?f[0]=a|b") == normalise_url("http://h.test/p?f%5B0%5D=a%7cb")
    assert request_url("http://h.test/p?f%5B0%5D=a") == "http://h.test/p?f%5B0%5D=a"  # as cited


@pytest.mark.parametrize("framed", [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;name=value\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n",
])
def test_the_end_of_a_chunked_body_is_found_at_any_read_boundary(framed: bytes) -> None:
    surplus = b"HTTP/1.1 200 OK\r\n"
    for cut in range(1, len(framed) + len(surplus)):
        data = framed + surplus
        framing = ResponseFraming(chunked=True)
        extra = framing.feed(data[:cut]) + framing.feed(data[cut:])
        assert (extra, framing.done) == (len(surplus), True), cut
        clean = ResponseFraming(chunked=True)
        assert clean.feed(framed[:cut]) + clean.feed(framed[cut:]) == 0


def test_informational_heads_and_exact_framing_are_no_finding(local_server: LocalServer,
                                                              archive: Archive) -> None:
    early = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    local_server.set_route("/early-hints", handler=lambda r: Response(raw=early))
    urls = [local_server.url(p) for p in ("/early-hints", "/plain", "/chunked", "/gzip", "/status/204")]
    outcomes = capture_urls(archive, urls, one_at_a_time(local_server))
    assert [(o.status, o.http_status, o.findings) for o in outcomes] == [
        ("captured", 200, []), ("captured", 200, []), ("captured", 200, []), ("captured", 200, []),
        ("captured", 204, [])]
    assert outcomes[0].payload_sha256 == hashlib.sha256(b"hello").hexdigest()
    [response] = [b for _, b in records_of(archive, outcomes[0].capture_id, "response")]
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_poisoned_connection_reports_itself_readable_and_refuses_requests(local_server: LocalServer) -> None:
    async def exchange() -> tuple[bytes, RecordingStream]:
        stream = await RecordingBackend().connect_tcp("127.0.0.1", local_server.http_port, timeout=5)
        assert isinstance(stream, RecordingStream)
        await stream.write(b"GET /smuggle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while not stream.poisoned and len(received) < 1000:
            data = await stream.read(65536, timeout=5)
            assert data, "the server closed before sending the surplus"
            received += data
        assert stream.get_extra_info("is_readable") is True  # httpcore closes it instead of reusing it
        with pytest.raises(httpcore.ConnectionNotAvailable):
            await stream.write(b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await stream.aclose()
        return received, stream

    received, stream = asyncio.run(exchange())
    assert received.endswith(SMUGGLE_BODY + SMUGGLED_RESPONSE)
    assert stream.surplus == len(SMUGGLED_RESPONSE) and stream.surplus_sample == SMUGGLED_RESPONSE[:64]
    assert stream.request_bytes == b"GET /smuggle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # nothing more was sent
