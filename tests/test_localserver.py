"""Tests of the shared local server itself (tests/localserver.py).

Plain httpx, httpcore and raw sockets against the real server: these pin
down the bytes other tests rely on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpcore
import httpx
import pytest

import localserver
from localserver import LocalServer

# ---------------------------------------------------------------------------
# raw-socket helpers
# ---------------------------------------------------------------------------


def recv_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def raw_get(server: LocalServer, path: str, extra: bytes = b"", host: bytes = b"example.test") -> bytes:
    """One request with Connection: close; every byte the server sent back."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=5) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n" % (path.encode(), host, extra))
        return recv_until_closed(sock)


def split_response(raw: bytes) -> tuple[bytes, bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw[:200]
    return head, body


def dechunk(body: bytes) -> list[bytes]:
    """The chunks of a chunked body; asserts the terminating last-chunk."""
    chunks = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return chunks
        chunks.append(body[:size])
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


def read_one_response(sock: socket.socket, buf: bytearray) -> bytes:
    """Read one Content-Length-framed response from a keep-alive socket."""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head_end = buf.index(b"\r\n\r\n") + 4
    length = int(
        next(
            line for line in bytes(buf[:head_end]).split(b"\r\n") if line.lower().startswith(b"content-length:")
        ).split(b":")[1]
    )
    while len(buf) < head_end + length:
        buf += sock.recv(65536)
    response = bytes(buf[: head_end + length])
    del buf[: head_end + length]
    return response


@pytest.fixture
def client(local_server: LocalServer) -> httpx.Client:
    with httpx.Client(trust_env=False, timeout=5) as c:
        yield c


# ---------------------------------------------------------------------------
# bodies, framing and the log
# ---------------------------------------------------------------------------


def test_plain_is_logged_with_exact_bytes(local_server: LocalServer, client: httpx.Client) -> None:
    r = client.get(local_server.url("/plain"))
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(localserver.PLAIN_BODY))
    assert r.content == localserver.PLAIN_BODY
    ex = local_server.last_exchange("/plain")
    assert ex.complete and ex.status == 200
    assert ex.body == r.content
    assert ex.body_sha256 == hashlib.sha256(r.content).hexdigest()
    assert ex.raw_request.startswith(b"GET /plain HTTP/1.1\r\n")
    assert ex.client[0] == "127.0.0.1" and ex.local == ("127.0.0.1", local_server.http_port)


def test_gzip_log_holds_encoded_bytes(local_server: LocalServer, client: httpx.Client) -> None:
    r = client.get(local_server.url("/gzip"))
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == localserver.GZIP_DECODED_BODY
    ex = local_server.last_exchange("/gzip")
    assert ex.body == localserver.GZIP_BODY  # after content-encoding
    assert gzip.decompress(ex.body) == r.content
    assert int(r.headers["content-length"]) == len(ex.body)


def test_chunked_really_chunked_on_the_wire(local_server: LocalServer) -> None:
    head, body = split_response(raw_get(local_server, "/chunked"))
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"content-length" not in head.lower()
    chunks = dechunk(body)
    assert len(chunks) >= 3
    assert b"".join(chunks) == localserver.CHUNKED_BODY
    assert local_server.last_exchange("/chunked").body == localserver.CHUNKED_BODY  # before transfer-encoding


def test_chunked_gzip(local_server: LocalServer, client: httpx.Client) -> None:
    head, body = split_response(raw_get(local_server, "/chunked-gzip"))
    assert b"Content-Encoding: gzip" in head and b"Transfer-Encoding: chunked" in head
    assert b"".join(dechunk(body)) == localserver.CHUNKED_GZIP_BODY
    assert client.get(local_server.url("/chunked-gzip")).content == localserver.CHUNKED_GZIP_DECODED_BODY


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_large_streams_deterministic_body(local_server: LocalServer, client: httpx.Client, chunked: str) -> None:
    size = 5 * 1024 * 1024 + 123
    digest = hashlib.sha256()
    with client.stream("GET", local_server.url(f"/large?size={size}&chunked={chunked}")) as r:
        assert ("content-length" in r.headers) == (chunked == "0")
        for piece in r.iter_raw():
            digest.update(piece)
    assert digest.hexdigest() == localserver.large_body_sha256(size)
    ex = local_server.last_exchange("/large")
    assert ex.body_sha256 == digest.hexdigest() and ex.body_size == size
    assert localserver.large_body_bytes(1000) == localserver.large_body_bytes(70000)[:1000]


def test_keep_alive_pipelining_and_connection_close(local_server: LocalServer) -> None:
    with socket.create_connection(("127.0.0.1", local_server.http_port), timeout=5) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\nGET /status/404 HTTP/1.1\r\nHost: a\r\n\r\n")
        buf = bytearray()
        assert read_one_response(sock, buf).startswith(b"HTTP/1.1 200 OK\r\n")
        assert read_one_response(sock, buf).startswith(b"HTTP/1.1 404 Not Found\r\n")
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        rest = bytes(buf) + recv_until_closed(sock)  # returns: the server closed
    head, body = split_response(rest)
    assert b"\r\nConnection: close" in head and body == localserver.PLAIN_BODY
    assert len({e.client for e in local_server.log}) == 1  # one connection for all three


def test_dup_headers_raw_bytes(local_server: LocalServer, client: httpx.Client) -> None:
    head, _ = split_response(raw_get(local_server, "/dup-headers"))
    assert head.count(b"\r\nSet-Cookie: ") == 2
    assert b"\r\nX-Latin1: caf\xe9\r\n" in head
    assert b"\r\nX-Invalid-Utf8: \xff\xfe\xc3(\r\n" in head
    assert b"\r\nx-ODD-Case-header: yes\r\n" in head
    r = client.get(local_server.url("/dup-headers"))
    assert r.headers.get_list("set-cookie") == ["first=1; Path=/", "second=2; Path=/; HttpOnly"]
    assert (b"X-Latin1", b"caf\xe9") in r.headers.raw


def test_chunked_request_body_is_logged_raw(local_server: LocalServer, client: httpx.Client) -> None:
    r = client.post(local_server.url("/echo"), content=iter([b"abc", b"defg"]))
    assert r.json()["body_size"] == 7
    ex = local_server.last_exchange("/echo")
    assert ex.request.body == b"abcdefg"
    assert ex.raw_request.endswith(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")


def test_malformed_request_gets_400(local_server: LocalServer) -> None:
    with socket.create_connection(("127.0.0.1", local_server.http_port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")


# ---------------------------------------------------------------------------
# redirects, statuses, stateful routes
# ---------------------------------------------------------------------------


def test_redirect_chains(local_server: LocalServer, client: httpx.Client) -> None:
    r = client.get(local_server.url("/redirect/3"), follow_redirects=True)
    assert [h.status_code for h in r.history] == [302, 302, 302]
    assert r.url.path == "/plain" and r.content == localserver.PLAIN_BODY
    r = client.get(local_server.url("/redirect301/2?absolute=1"), follow_redirects=True)
    assert [h.status_code for h in r.history] == [301, 301]
    assert r.history[0].headers["location"].startswith(local_server.url("/redirect301/1"))
    r = client.get(local_server.url("/redirect-home"), follow_redirects=True)
    assert r.history[0].status_code == 301 and r.url.path == "/"
    target = local_server.url("/status/410", hostname="localhost")
    r = client.get(local_server.url("/redirect-to"), params={"url": target}, follow_redirects=True)
    assert r.status_code == 410 and str(r.url) == target
    with httpx.Client(max_redirects=5, trust_env=False) as limited, pytest.raises(httpx.TooManyRedirects):
        limited.get(local_server.url("/loop/a"), follow_redirects=True)


@pytest.mark.parametrize("code", [401, 403, 404, 410, 500, 503])
def test_status(local_server: LocalServer, client: httpx.Client, code: int) -> None:
    r = client.get(local_server.url(f"/status/{code}"))
    assert r.status_code == code and str(code).encode() in r.content


def test_flaky_and_ratelimit(local_server: LocalServer, client: httpx.Client) -> None:
    url = local_server.url("/flaky/k1?fail=2&code=503")
    assert [client.get(url).status_code for _ in range(3)] == [503, 503, 200]
    url = local_server.url("/ratelimit/k1?retry_after=7&times=1")
    first = client.get(url)
    assert first.status_code == 429 and first.headers["retry-after"] == "7"
    assert client.get(url).status_code == 200
    local_server.reset()  # counters start again
    assert client.get(local_server.url("/flaky/k1?fail=1")).status_code == 500


def test_content_pages(local_server: LocalServer, client: httpx.Client) -> None:
    a1, a2 = (client.get(local_server.url("/article/budget-vote")).text for _ in range(2))
    edited = client.get(local_server.url("/article-edited/budget-vote")).text
    main = localserver.article_main_text("budget-vote")
    assert all(p in a1 and p in a2 for p in main)
    assert a1 != a2  # the footer timestamp/counter changes
    assert main[1] not in edited and main[0] in edited
    assert client.get(local_server.url("/mutating")).text != client.get(local_server.url("/mutating")).text
    soft = client.get(local_server.url("/soft404-site/any/where"))
    assert soft.status_code == 200 and localserver.SOFT404_TEXT in soft.text
    assert 'type="password"' in client.get(local_server.url("/login-wall")).text
    captcha = client.get(local_server.url("/captcha"))
    assert captcha.status_code == 403 and "verify you are a human" in captcha.text
    assert "Accept all cookies" in client.get(local_server.url("/consent")).text
    assert client.head(local_server.url("/nohead")).status_code == 405
    assert client.get(local_server.url("/nohead")).status_code == 200
    assert client.get(local_server.url("/no/such/page")).status_code == 404


def test_head_sends_length_but_no_body(local_server: LocalServer, client: httpx.Client) -> None:
    r = client.head(local_server.url("/plain"))
    assert r.headers["content-length"] == str(len(localserver.PLAIN_BODY)) and r.content == b""
    ex = local_server.last_exchange("/plain", method="HEAD")
    assert ex.body == b"" and ex.body_sha256 == hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------------------
# timing: slow, hang, truncation, latency
# ---------------------------------------------------------------------------


def test_hang_with_short_client_timeout(local_server: LocalServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(local_server.url("/hang"), timeout=0.2, trust_env=False)
    ex = local_server.wait_for_exchange("/hang")  # finishes once the client has gone
    assert ex.status is None and not ex.complete and ex.error == "client disconnected"


def test_slow_head_and_slow_body(local_server: LocalServer, client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.get(local_server.url("/slow?delay=30"), timeout=0.2)
    with client.stream("GET", local_server.url("/slow-body?delay=30"), timeout=0.2) as r:
        assert r.status_code == 200  # the head arrives at once
        with pytest.raises(httpx.ReadTimeout):
            r.read()
    assert client.get(local_server.url("/slow?delay=0.01")).status_code == 200
    r = client.get(local_server.url("/slow-body?delay=0.01"))
    assert r.content == local_server.last_exchange("/slow-body?delay=0.01").body


def test_truncated_responses_are_errors_and_logged_incomplete(local_server: LocalServer, client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(local_server.url("/truncated?declared=500&sent=50"))
    ex = local_server.wait_for_exchange("/truncated")
    assert (ex.complete, ex.body_size, ex.error) == (False, 50, "aborted by route")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(local_server.url("/chunked-truncated"))
    r = client.get(local_server.url("/eof-body"))
    assert r.content == localserver.PLAIN_BODY and "content-length" not in r.headers


def test_latency_applies_to_every_route(local_server: LocalServer, client: httpx.Client) -> None:
    local_server.set_latency(0.15)
    started = time.monotonic()
    client.get(local_server.url("/status/404"))
    assert time.monotonic() - started >= 0.15


# ---------------------------------------------------------------------------
# dynamic routes and virtual hosts
# ---------------------------------------------------------------------------


def test_set_route_by_host_and_runtime_change(local_server: LocalServer, client: httpx.Client) -> None:
    local_server.set_route("http://www.lrt.lt/news/1", body="<p>first</p>", headers=[("X-Site", "lrt")])
    local_server.set_route("/news/1", status=404, body="generic")
    url = local_server.url("/news/1")
    r = client.get(url, headers={"Host": "www.lrt.lt"})
    assert (r.status_code, r.text, r.headers["x-site"]) == (200, "<p>first</p>", "lrt")
    assert client.get(url).status_code == 404  # other hosts get the path route
    local_server.set_route("http://www.lrt.lt/news/1", status=410, body="gone", gzip=True, chunked=[5, 5])
    r = client.get(url, headers={"Host": "WWW.LRT.LT."})
    assert (r.status_code, r.text) == (410, "gone")
    assert local_server.last_exchange("/news/1", host="www.lrt.lt").body == localserver.gzip_bytes(b"gone")
    local_server.remove_route("http://www.lrt.lt/news/1")
    assert client.get(url, headers={"Host": "www.lrt.lt"}).text == "generic"


def test_set_route_handler(local_server: LocalServer, client: httpx.Client) -> None:
    def handler(req: localserver.Request) -> localserver.Response:
        return localserver.html_response(f"hello {req.arg('name')}")

    local_server.set_route("/greet", handler=handler)
    assert client.get(local_server.url("/greet?name=ana")).text == "hello ana"


def test_proxy_mode_serves_any_http_and_https_hostname(
    local_server: LocalServer, local_ssl_context: ssl.SSLContext
) -> None:
    local_server.set_route("https://www.lrt.lt/a", body="secure page")
    with httpx.Client(proxy=local_server.proxy_url, verify=local_ssl_context, trust_env=False, timeout=5) as c:
        r = c.get("https://www.lrt.lt/a")
        assert (r.status_code, r.text) == (200, "secure page")
        assert c.get("http://www.lrt.lt/a").status_code == 404  # the route is https-only
        assert c.get("http://news.example/plain").content == localserver.PLAIN_BODY
    secure, plain = local_server.exchanges("/a", host="www.lrt.lt")
    assert (secure.scheme, secure.sni, plain.scheme) == ("https", "www.lrt.lt", "http")
    assert local_server.exchanges(method="CONNECT")[0].target == "www.lrt.lt:443"


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


def test_sni_certificate_for_arbitrary_hostname_raw_ssl(
    local_server: LocalServer, local_ssl_context: ssl.SSLContext
) -> None:
    with socket.create_connection(("127.0.0.1", local_server.https_port), timeout=5) as raw:
        with local_ssl_context.wrap_socket(raw, server_hostname="www.lrt.lt") as tls:
            assert ("DNS", "www.lrt.lt") in tls.getpeercert()["subjectAltName"]
            tls.sendall(b"GET /plain HTTP/1.1\r\nHost: www.lrt.lt\r\nConnection: close\r\n\r\n")
            _, body = split_response(recv_until_closed(tls))
    assert body == localserver.PLAIN_BODY
    ex = local_server.last_exchange("/plain")
    assert (ex.scheme, ex.sni, ex.host) == ("https", "www.lrt.lt", "www.lrt.lt")


class LoopbackBackend(httpcore.SyncBackend):
    """Resolve every hostname to 127.0.0.1 (what a test DNS override does)."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        return super().connect_tcp("127.0.0.1", port, timeout, local_address, socket_options)


def test_sni_with_httpcore_connecting_to_loopback(local_server: LocalServer) -> None:
    ctx = ssl.create_default_context(cafile=local_server.ca_pem_path)  # the PEM bundle path works too
    with httpcore.ConnectionPool(ssl_context=ctx, network_backend=LoopbackBackend()) as pool:
        r = pool.request("GET", local_server.https_url("/plain", hostname="evidence.example.org"))
    assert r.status == 200 and r.content == localserver.PLAIN_BODY
    assert local_server.last_exchange("/plain").sni == "evidence.example.org"


def test_untrusted_port_fails_verification(local_server: LocalServer, local_ssl_context: ssl.SSLContext) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(local_server.untrusted_https_url("/plain"), verify=local_ssl_context, trust_env=False)
    r = httpx.get(local_server.untrusted_https_url("/plain"), verify=False, trust_env=False)
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("hostname", "message"),
    [
        ("untrusted.example.org", "unable to get local issuer certificate"),
        ("expired.example.org", "certificate has expired"),
        ("wronghost.example.org", "Hostname mismatch"),
    ],
)
def test_broken_certificate_hostnames(
    local_server: LocalServer, local_ssl_context: ssl.SSLContext, hostname: str, message: str
) -> None:
    with socket.create_connection(("127.0.0.1", local_server.https_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match=message):
            local_ssl_context.wrap_socket(raw, server_hostname=hostname)


# ---------------------------------------------------------------------------
# several loopback addresses, and the benchmark process
# ---------------------------------------------------------------------------


def test_multi_host_server(multi_host_server: LocalServer) -> None:
    assert set(multi_host_server.ports) == {"127.0.0.1", *localserver.EXTRA_HOSTS}
    for ip in ("127.0.0.2", "127.0.0.9"):
        r = httpx.get(multi_host_server.url("/plain", host_ip=ip), trust_env=False)
        assert r.status_code == 200
        assert multi_host_server.last_exchange("/plain", host_ip=ip).local[0] == ip
    assert len(multi_host_server.exchanges("/plain")) == 2


def test_bench_process(tmp_path: Path) -> None:
    script = Path(localserver.__file__)
    args = [sys.executable, str(script), "--bench-articles", "10", "--hosts", "127.0.0.2-3", "--latency", "0.01"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as proc:
        try:
            info = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
            assert set(info["hosts"]) == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
            base = info["http"][1]
            r = httpx.get(f"{base}/bench/article/3", trust_env=False)
            assert r.status_code == 200 and 18_000 < len(r.content) < 24_000
            assert r.content == localserver.bench_article_page(3)
            assert httpx.get(f"{base}/bench/article/10", trust_env=False).status_code == 404
            https = httpx.get(
                f"{info['https'][0]}/plain", verify=ssl.create_default_context(cafile=info["ca_pem"]), trust_env=False
            )
            assert https.status_code == 200
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert not os.path.exists(info["ca_pem"])  # cleaned up on SIGTERM


def test_parse_hosts() -> None:
    assert localserver.parse_hosts("127.0.0.2-127.0.0.4,127.0.0.9") == [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.9",
    ]
    assert localserver.parse_hosts("127.0.0.5-6") == ["127.0.0.5", "127.0.0.6"]
    with pytest.raises(ValueError):
        LocalServer(["10.0.0.1"])
