"""The one local HTTP/HTTPS server used by every evarchive test and benchmark.

It is a real HTTP/1.1 server written directly on ``asyncio.Protocol`` (not
``http.server``) so that tests control the exact bytes on the wire: chunked
framing, duplicate and non-UTF-8 headers, lying Content-Length, stalls and
hangs.  It never talks to anything but loopback.

Two ways to run it:

* in-process, in a background thread with its own event loop (pytest)::

      with LocalServer(ca=trustme.CA()) as server:
          httpx.get(server.url("/plain"))

* as a separate process (benchmarks)::

      python tests/localserver.py --bench-articles 1000 \
          --hosts 127.0.0.2-127.0.0.9 --latency 0.05

  prints one JSON line (addresses, ports, CA bundle path) and serves until
  killed.

Listening: every host IP gets an HTTP port, a trusted HTTPS port and an HTTPS
port whose certificates come from an untrusted CA.  The server tries to use
the same port number on every IP so a hostname -> IP mapping is enough to
spread a site over several addresses.

TLS: leaf certificates are issued on demand for whatever SNI name the client
sends, so any hostname validates against ``ca_pem_path``.  SNI name prefixes
select broken certificates for failure tests:

* ``untrusted.<name>`` - issued by the untrusted CA
* ``expired.<name>``   - expired a day ago
* ``wronghost.<name>`` - issued for ``wrong-host.invalid`` only

Virtual hosts: routing is by (scheme, Host, path).  Tests either send a Host
header, connect through the server used as an HTTP proxy (absolute-form
requests for http, ``CONNECT`` tunnels for https; see ``proxy_url``), or map
names to the loopback IPs in their own transport.

Log: every request is appended to ``server.log`` as soon as it is parsed; the
response fields (status, head bytes, body bytes after content-encoding and
before transfer-encoding, their SHA-256) are final *before* the last byte of
the response is handed to the socket, so a client that has read a complete
response can assert on the log without waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import http
import inspect
import ipaddress
import itertools
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlsplit

import trustme

# --------------------------------------------------------------------------
# Constants and deterministic content
# --------------------------------------------------------------------------

DEFAULT_HOST = "127.0.0.1"
EXTRA_HOSTS: tuple[str, ...] = tuple(f"127.0.0.{i}" for i in range(2, 10))

MAX_HEAD_BYTES = 64 * 1024  # larger request heads get 431
LOG_BODY_LIMIT = 8 * 1024 * 1024  # bodies above this are hashed but not kept
KEEPALIVE_IDLE_SECONDS = 120.0
READ_BUFFER_HIGH = 4 * 1024 * 1024  # pause reading a connection above this

LARGE_BLOCK_SIZE = 64 * 1024
LARGE_PIECE_SIZE = 4 * LARGE_BLOCK_SIZE  # bytes per write for /large

SOFT404_TEXT = "Sorry, the page you requested could not be found"


def _html_page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body>\n{body}\n</body></html>\n"
    ).encode()


PLAIN_BODY = _html_page("Plain page", "<h1>Plain page</h1>\n<p>This is the plain test page.</p>")
GZIP_DECODED_BODY = _html_page(
    "Gzip page", "<h1>Gzip page</h1>\n" + "<p>Compressed with gzip, sent with Content-Length.</p>\n" * 40
)
CHUNKED_BODY = _html_page(
    "Chunked page", "<h1>Chunked page</h1>\n" + "<p>Sent with Transfer-Encoding: chunked.</p>\n" * 40
)
CHUNKED_GZIP_DECODED_BODY = _html_page(
    "Chunked gzip page", "<h1>Chunked gzip</h1>\n" + "<p>Gzip body, chunked on the wire.</p>\n" * 40
)


HTTP09_BODY = b"<html>An answer in HTTP/0.9: no status line, no headers.</html>\n"
SMUGGLE_BODY = b"the declared body"
SMUGGLED_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nforged"


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (mtime 0) so digests of gzip routes are stable."""
    return gzip.compress(data, compresslevel=6, mtime=0)


GZIP_BODY = gzip_bytes(GZIP_DECODED_BODY)
CHUNKED_GZIP_BODY = gzip_bytes(CHUNKED_GZIP_DECODED_BODY)


@functools.lru_cache(maxsize=1)
def _large_block() -> bytes:
    # SHA-256 in counter mode: deterministic across Python versions and
    # incompressible, so transfer speed is not flattered by compression.
    digests = (hashlib.sha256(b"evarchive-large-%d" % i).digest() for i in range(LARGE_BLOCK_SIZE // 32))
    return b"".join(digests)


@functools.lru_cache(maxsize=1)
def _large_piece() -> bytes:
    return _large_block() * (LARGE_PIECE_SIZE // LARGE_BLOCK_SIZE)


def large_body_pieces(size: int) -> Iterator[memoryview]:
    """The body of ``/large?size=size`` as views, never built in memory."""
    piece = memoryview(_large_piece())
    full, rest = divmod(size, len(piece))
    for _ in range(full):
        yield piece
    if rest:
        yield piece[:rest]


def large_body_bytes(size: int) -> bytes:
    """The whole ``/large`` body; only sensible for small sizes."""
    return b"".join(large_body_pieces(size))


@functools.lru_cache(maxsize=64)
def large_body_sha256(size: int) -> str:
    """Hex SHA-256 of the body served by ``/large?size=size``."""
    digest = hashlib.sha256()
    for piece in large_body_pieces(size):
        digest.update(piece)
    return digest.hexdigest()


_WORDS = (
    "council minister report budget election court ruling village river forest "
    "energy grid railway harbour museum archive witness statement evidence "
    "investigation journalist interview spokesperson agency contract tender "
    "hospital school teachers students farmers harvest weather storm bridge "
    "parliament committee hearing amendment vote coalition opposition mayor "
    "district police prosecutor audit documents records funding project delay "
    "official source data survey percent million euro annual quarter region"
).split()


def _sentences(seed: str, count: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 18))]
        out.append(" ".join(words).capitalize() + ".")
    return out


def article_main_text(slug: str, edited: bool = False) -> list[str]:
    """Paragraphs of the main text of ``/article/<slug>`` (or the edited one).

    The edited version rewrites the second paragraph and appends a
    correction, so "same article, changed text" tests have a real diff.
    """
    paragraphs = [" ".join(_sentences(f"{slug}/{i}", 4)) for i in range(5)]
    if edited:
        paragraphs[1] = " ".join(_sentences(f"{slug}/edited", 4))
        paragraphs.append("Correction: an earlier version of this article misstated the figures.")
    return paragraphs


_NAV = (
    '<header><a href="/">Daily Evidence</a>'
    '<nav><a href="/news">News</a> <a href="/world">World</a> <a href="/business">Business</a> '
    '<a href="/sport">Sport</a> <a href="/login-wall">Log in</a></nav></header>'
)


def _footer(counter: int) -> str:
    # Changes on every request so "boilerplate differs, main text equal" is real.
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"<footer><p>Page generated {stamp} UTC, request #{counter}.</p><p>&copy; Daily Evidence</p></footer>"


def article_page(slug: str, edited: bool, counter: int) -> bytes:
    paras = "\n".join(f"<p>{p}</p>" for p in article_main_text(slug, edited))
    main = f"<main><article><h1>Article {slug}</h1>\n{paras}\n</article></main>"
    aside = '<aside><h2>Most read</h2><ul><li><a href="/article/other">Other story</a></li></ul></aside>'
    return _html_page(f"Article {slug}", f"{_NAV}\n{main}\n{aside}\n{_footer(counter)}")


@functools.lru_cache(maxsize=4096)
def bench_article_page(n: int) -> bytes:
    """~20 KB of realistic, deterministic article HTML for benchmarks."""
    rng = random.Random(f"bench-{n}")
    nav = " ".join(f'<a href="/section/{w}">{w.title()}</a>' for w in rng.sample(_WORDS, 30))
    paras = "\n".join(f"<p>{' '.join(_sentences(f'bench-{n}-{i}', 6))}</p>" for i in range(28))
    related = "".join(f'<li><a href="/bench/article/{(n * 7 + k) % 100003}">Related {k}</a></li>' for k in range(12))
    head_meta = (
        f'<meta name="description" content="Benchmark article {n}"><link rel="canonical" href="/bench/article/{n}">'
    )
    body = (
        f"<header>{nav}</header>\n<main><article><h1>Benchmark article {n}</h1>\n{paras}\n</article></main>\n"
        f"<aside><ul>{related}</ul></aside>\n<footer><p>&copy; Bench Media</p></footer>"
    )
    return _html_page(f"Benchmark article {n}", head_meta + body)


@functools.lru_cache(maxsize=1)
def _one_line_block() -> bytes:
    # About 60 KiB of prose without a newline, repeated to any length.
    return (" ".join(_sentences("one-line", 600)) + " ").encode()


def one_line_page_response(size: int, edition: str = "1") -> Response:
    """An HTML page of exactly ``size`` bytes on a single line, whose article
    is one paragraph starting "Edition <edition>."; streamed, never built in
    memory (100 MB costs the test process nothing)."""
    head = ("<!DOCTYPE html><html><head><title>One long line</title></head><body><main>"
            f"<article><h1>One long line</h1><p>Edition {edition}. ").encode()
    tail = b"</p></article></main></body></html>"
    if size < len(head) + len(tail):
        raise ValueError(f"size must be at least {len(head) + len(tail)}")

    async def body() -> AsyncIterator[bytes]:
        yield head
        block, left = memoryview(_one_line_block()), size - len(head) - len(tail)
        while left > 0:
            piece = block[:left]
            yield piece  # type: ignore[misc]  # memoryview: no copy
            left -= len(piece)
        yield tail

    return Response(200, body(), [(b"Content-Type", b"text/html; charset=utf-8")], length=size)


@functools.lru_cache(maxsize=2)
def gzip_bomb(size: int) -> bytes:
    """A valid gzip stream that inflates to ``size`` bytes of one-line HTML
    (1 GiB in about 1.5 MB). Built in under a second: one deflate block of
    "boom " words, ended by a full flush so that it stands alone, repeated."""
    head = b"<!DOCTYPE html><html><head><title>Bomb</title></head><body><main><p>"
    chunk = b"boom " * (1 << 18)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(size - len(head), len(chunk))
    last = packer.compress(chunk[:rest]) + packer.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(chunk[:rest], crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, mtime 0
    return header + first + block * count + last + struct.pack("<II", crc, size & 0xFFFFFFFF)


def gzip_bomb_response(size: int) -> Response:
    headers = [(b"Content-Type", b"text/html; charset=utf-8"), (b"Content-Encoding", b"gzip")]
    return Response(200, gzip_bomb(size), headers)


# --------------------------------------------------------------------------
# Requests, responses and the exchange log
# --------------------------------------------------------------------------

HeaderInput = tuple[str | bytes, str | bytes]
Body = bytes | AsyncIterator[bytes]


def _as_bytes(value: str | bytes) -> bytes:
    # str header values go out as latin-1 so tests can write "caf\xe9" directly.
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _headers(items: Iterable[HeaderInput]) -> list[tuple[bytes, bytes]]:
    return [(_as_bytes(k), _as_bytes(v)) for k, v in items]


class ClientGone(Exception):
    """The client closed the connection while the server was busy with it."""


class AbortResponse(Exception):
    """Raised by a streamed body to drop the connection mid-response on purpose."""


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    """One parsed request, as the handlers and the log see it."""

    method: str
    target: str  # exactly as on the request line
    path: str  # still percent-encoded
    query: str
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes  # every byte received for this request, head and body framing included
    scheme: str
    host: str  # lower-case, without port
    client: tuple[str, int]
    local: tuple[str, int]
    sni: str | None
    keep_alive: bool
    conn: _Connection | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """First value of a request header (case-insensitive), latin-1 decoded."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    @functools.cached_property
    def args(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def arg(self, name: str, default: str = "") -> str:
        return self.args.get(name, default)

    def float_arg(self, name: str, default: float) -> float:
        try:
            return float(self.args.get(name, default))
        except ValueError:
            raise BadRequest(400, f"bad number for {name}") from None

    def int_arg(self, name: str, default: int) -> int:
        try:
            return int(self.args.get(name, default))
        except ValueError:
            raise BadRequest(400, f"bad integer for {name}") from None

    @property
    def origin(self) -> str:
        host = self.header("host") or f"{self.local[0]}:{self.local[1]}"
        return f"{self.scheme}://{host}"

    async def sleep(self, seconds: float) -> None:
        """Sleep, but give up as soon as the client goes away."""
        if self.conn is not None:
            await self.conn.sleep(seconds)

    async def wait_gone(self) -> None:
        """Wait until the client disconnects (or the server stops)."""
        if self.conn is not None:
            await self.conn.sleep(float("inf"))


@dataclass
class Response:
    """What a handler returns; the writer adds framing headers unless told not to."""

    status: int = 200
    body: Body = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    reason: bytes | None = None
    length: int | None = None  # Content-Length for streamed bodies, or a lie for bytes bodies
    chunked: bool = False
    chunk_sizes: Sequence[int] | None = None  # how a bytes body is split into chunks
    close: bool = False  # close the connection after this response
    frame: bool = True  # add Content-Length / Transfer-Encoding / Connection: close
    delay: float = 0.0  # before the status line
    raw: bytes | None = None  # sent as the whole response instead: no status line, no headers


def html_response(body: bytes | str, status: int = 200, headers: Iterable[HeaderInput] = ()) -> Response:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return Response(status, data, [(b"Content-Type", b"text/html; charset=utf-8"), *_headers(headers)])


def redirect_response(location: str, status: int = 302) -> Response:
    page = _html_page("Moved", f'<p>Moved to <a href="{location}">{location}</a>.</p>')
    return Response(status, page, [(b"Location", _as_bytes(location)), (b"Content-Type", b"text/html; charset=utf-8")])


@dataclass
class Exchange:
    """One request the server received and what it sent back.

    ``body`` is the response payload as sent, after any content-encoding and
    before transfer-encoding (so for ``/gzip`` it is the gzip bytes, for
    ``/chunked`` the de-chunked bytes).  It is ``None`` when above
    ``LOG_BODY_LIMIT``; ``body_sha256`` and ``body_size`` are always set once
    the exchange is finished.  ``complete`` is False when the client left or
    the server stopped mid-response (``error`` says which).
    """

    seq: int
    request: Request
    started: float  # time.monotonic()
    status: int | None = None
    response_head: bytes = b""
    body: bytes | None = None
    body_size: int = 0
    body_sha256: str | None = None
    complete: bool = False
    finished: bool = False
    error: str | None = None
    _hash: Any = field(default=None, repr=False, compare=False)
    _parts: list[bytes] | None = field(default=None, repr=False, compare=False)

    # Shortcuts so tests rarely need ``.request``.
    method = property(lambda self: self.request.method)
    path = property(lambda self: self.request.path)
    target = property(lambda self: self.request.target)
    host = property(lambda self: self.request.host)
    scheme = property(lambda self: self.request.scheme)
    client = property(lambda self: self.request.client)
    local = property(lambda self: self.request.local)
    sni = property(lambda self: self.request.sni)
    raw_request = property(lambda self: self.request.raw)

    @property
    def response_headers(self) -> list[tuple[bytes, bytes]]:
        lines = self.response_head.split(b"\r\n")[1:]
        return [(k, v.strip()) for k, _, v in (line.partition(b":") for line in lines) if k]

    def response_header(self, name: str) -> bytes | None:
        key = name.lower().encode("latin-1")
        return next((v for k, v in self.response_headers if k.lower() == key), None)

    def _add_body(self, piece: bytes | memoryview) -> None:
        if self._hash is None:
            self._hash, self._parts = hashlib.sha256(), []
        self._hash.update(piece)
        self.body_size += len(piece)
        if self._parts is not None:
            if self.body_size <= LOG_BODY_LIMIT:
                self._parts.append(bytes(piece))
            else:
                self._parts = None

    def _finish(self, complete: bool, error: str | None = None) -> None:
        if self.finished:
            return
        digest = self._hash or hashlib.sha256()
        self.body_sha256 = digest.hexdigest()
        self.body = b"".join(self._parts) if self._parts is not None else (b"" if self._hash is None else None)
        self._hash, self._parts = None, None
        self.complete, self.error, self.finished = complete, error, True
        self.request.conn = None  # do not keep closed connections alive via the log


@dataclass(frozen=True)
class HostPorts:
    http: int
    https: int
    https_untrusted: int


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


def _tls_server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["http/1.1"])  # we only speak HTTP/1.1
    return ctx


class _Certificates:
    """Server TLS contexts with on-demand leaf certificates chosen by SNI."""

    def __init__(self, trusted: trustme.CA, untrusted: trustme.CA, ips: Sequence[str]) -> None:
        self._cas = {"trusted": trusted, "untrusted": untrusted}
        self._cache: dict[tuple[str, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._default_ids = ("localhost", *ips, "::1")
        self.listener = {kind: self._listener_context(kind) for kind in self._cas}

    def _listener_context(self, kind: str) -> ssl.SSLContext:
        ctx = _tls_server_context()
        # Clients send no SNI for IP-address URLs; this cert covers those.
        self._cas[kind].issue_cert(*self._default_ids).configure_cert(ctx)
        ctx.sni_callback = functools.partial(self._on_sni, kind)
        return ctx

    def _on_sni(self, kind: str, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.evarchive_sni = server_name  # type: ignore[attr-defined]  # read back for the log
        if server_name:
            # A name trustme cannot issue for keeps the default certificate.
            with contextlib.suppress(Exception):
                sslobj.context = self.context_for(kind, server_name)

    def context_for(self, kind: str, name: str) -> ssl.SSLContext:
        key = (kind, name.lower())
        with self._lock:  # sni callbacks run in the loop, but CONNECT may race a test thread
            ctx = self._cache.get(key)
            if ctx is None:
                ctx = self._cache[key] = self._issue(kind, key[1])
        return ctx

    def _issue(self, kind: str, name: str) -> ssl.SSLContext:
        ca = self._cas["untrusted" if kind == "untrusted" or name.startswith("untrusted.") else "trusted"]
        if name.startswith("expired."):
            now = datetime.now(UTC)
            cert = ca.issue_cert(name, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
        elif name.startswith("wronghost."):
            cert = ca.issue_cert("wrong-host.invalid")
        else:
            cert = ca.issue_cert(name)
        ctx = _tls_server_context()
        cert.configure_cert(ctx)
        return ctx


# --------------------------------------------------------------------------
# The connection protocol: a small buffered reader/writer on asyncio.Protocol
# --------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """Byte-level connection state; the HTTP logic lives in LocalServer."""

    def __init__(self, server: LocalServer, scheme: str) -> None:
        self.server = server
        self.scheme = scheme
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.gone = False  # EOF or lost: nobody is reading our bytes any more
        self.sni: str | None = None
        self.client: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._sleepers: set[asyncio.Future[None]] = set()
        self._write_paused = False
        self._read_paused = False
        self.task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol callbacks ---------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.client = transport.get_extra_info("peername")[:2]
        self.local = transport.get_extra_info("sockname")[:2]
        self._read_sni()
        self.task = self.loop.create_task(self.server._serve_connection(self))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > READ_BUFFER_HIGH and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._mark_gone()
        # Keep plain TCP half-open so a half-closing client still gets its
        # response; asyncio's SSL layer ignores (and warns about) True.
        return self.sni is None and self.scheme == "http"

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._mark_gone()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- helpers used by the server ----------------------------------------

    def _read_sni(self) -> None:
        sslobj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if sslobj is not None:
            self.sni = getattr(sslobj, "evarchive_sni", None)

    def _wake_reader(self) -> None:
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)

    def _mark_gone(self) -> None:
        self.gone = True
        self._wake_reader()
        for fut in self._sleepers:
            if not fut.done():
                fut.set_result(None)

    async def _wait_data(self, timeout: float | None) -> bool:
        """Wait for more bytes or EOF; False if the timeout fired first."""
        before = len(self.buf)
        self._data_waiter = fut = self.loop.create_future()
        timer = self.loop.call_later(timeout, _resolve, fut) if timeout else None
        try:
            await fut
        finally:
            self._data_waiter = None
            if timer is not None:
                timer.cancel()
        return self.eof or len(self.buf) > before

    def _consume(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        if self._read_paused and len(self.buf) < READ_BUFFER_HIGH // 2:
            self._read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return data

    async def read_until(self, sep: bytes, limit: int, idle: float | None = None) -> bytes | None:
        """Bytes up to and including ``sep``; None on EOF before any byte."""
        start = 0
        while True:
            idx = self.buf.find(sep, start)
            if idx >= 0:
                return self._consume(idx + len(sep))
            if len(self.buf) > limit:
                raise BadRequest(431, "request head too large")
            if self.eof:
                if self.buf.strip():
                    raise BadRequest(400, "incomplete request head")
                return None
            start = max(0, len(self.buf) - len(sep) + 1)
            if not await self._wait_data(idle if not self.buf else None):
                return None  # idle keep-alive connection: let it go

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.eof:
                raise ClientGone("EOF in request body")
            await self._wait_data(None)
        return self._consume(n)

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ClientGone("connection closed")
        self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and self.transport is not None and not self.transport.is_closing():
            self._drain_waiter = self.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self.transport is None or self.transport.is_closing():
            raise ClientGone("connection closed")

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking early (with ClientGone) if the client disconnects."""
        if self.gone:
            raise ClientGone("client disconnected")
        if seconds <= 0:
            return
        fut = self.loop.create_future()
        timer = None if seconds == float("inf") else self.loop.call_later(seconds, _resolve, fut)
        self._sleepers.add(fut)
        try:
            await fut
        finally:
            self._sleepers.discard(fut)
            if timer is not None:
                timer.cancel()
        if self.gone:
            raise ClientGone("client disconnected")

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        """Turn this connection into TLS (server side) for a CONNECT tunnel."""
        assert self.transport is not None
        new = await self.loop.start_tls(self.transport, self, ctx, server_side=True)
        if new is None:
            raise ClientGone("TLS tunnel closed")
        self.transport = new  # type: ignore[assignment]
        self.scheme = "https"
        self._read_sni()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# --------------------------------------------------------------------------
# HTTP request parsing and response writing
# --------------------------------------------------------------------------


def _parse_head(head: bytes) -> tuple[str, str, str, list[tuple[bytes, bytes]]]:
    lines = head.lstrip(b"\r\n")[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise BadRequest(400, "bad request line")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, "bad header line")
        headers.append((name, value.strip(b" \t")))
    method, target, version = (p.decode("latin-1") for p in parts)
    return method, target, version, headers


def _header_tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [t.strip().lower() for k, v in headers if k.lower() == name for t in v.split(b",")]


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    values = {v.strip() for k, v in headers if k.lower() == b"content-length"}
    if not values:
        return 0
    if len(values) > 1 or not next(iter(values)).isdigit():
        raise BadRequest(400, "bad Content-Length")
    return int(next(iter(values)))


async def _read_chunked_body(conn: _Connection) -> tuple[bytes, bytes]:
    """Decoded body and the raw framed bytes of a chunked request body."""
    raw, body = bytearray(), bytearray()
    while True:
        line = await conn.read_until(b"\r\n", 1024)
        if line is None:
            raise ClientGone("EOF in chunked body")
        raw += line
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise BadRequest(400, "bad chunk size") from None
        if size == 0:
            trailer = await conn.read_until(b"\r\n", MAX_HEAD_BYTES)  # no trailers supported: just CRLF
            raw += trailer or b""
            return bytes(body), bytes(raw)
        data = await conn.read_exactly(size + 2)
        raw += data
        body += data[:-2]


def _split_target(target: str) -> tuple[str | None, str | None, str, str]:
    """(scheme, host, path, query) of an origin-form or absolute-form target."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return parts.scheme, parts.hostname, parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return None, None, path, query


def _normalise_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal
        return host[: host.find("]") + 1]
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.rstrip(".")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


def _chunk(data: bytes | memoryview) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), bytes(data))


def _split_for_chunks(body: bytes, sizes: Sequence[int] | None) -> list[bytes]:
    if sizes is None:  # a few unequal chunks by default
        n = len(body)
        sizes = [max(1, n // 7), max(1, n // 3), max(1, n // 4)]
    pieces, pos = [], 0
    for size in sizes:
        if pos >= len(body):
            break
        pieces.append(body[pos : pos + size])
        pos += size
    if pos < len(body):
        pieces.append(body[pos:])
    return pieces


def _has_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(k.lower() == name for k, _ in headers)


# --------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------

Handler = Callable[[Request], Response | Awaitable[Response]]
RouteKey = tuple[str | None, str | None, str]  # (scheme, host, path[?query])


def _route_key(url_or_path: str) -> RouteKey:
    """Key for a route: absolute URLs pin scheme and host, paths match any."""
    if url_or_path.startswith(("http://", "https://")):
        parts = urlsplit(url_or_path)
        path = _encode_path(parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return parts.scheme, _normalise_host(parts.netloc), path
    if not url_or_path.startswith("/"):
        raise ValueError(f"route must be an absolute URL or start with '/': {url_or_path!r}")
    return None, None, _encode_path(url_or_path)


def _encode_path(path: str) -> str:
    # Requests arrive percent-encoded; register non-ASCII paths the same way.
    return quote(path, safe="/%:@!$&'()*+,;=-._~?")


def _candidate_keys(req: Request) -> Iterator[RouteKey]:
    # Most specific first: URL routes (scheme+host) beat path routes, and an
    # exact path+query beats the bare path.
    targets = (f"{req.path}?{req.query}", req.path) if req.query else (req.path,)
    for scheme, host in ((req.scheme, req.host), (None, None)):
        for target in targets:
            yield scheme, host, target


def _static_handler(response: Response) -> Handler:
    def handler(_req: Request) -> Response:
        # A fresh Response each time: the writer must not share header lists.
        return Response(**{**response.__dict__, "headers": list(response.headers)})

    return handler


# --------------------------------------------------------------------------
# Hostile pages: /hostile/...
#
# The classes of hostile input the scenario test (tests/test_scenario.py)
# sends through the real CLI: a non-ASCII cookie, a response longer than its
# Content-Length, a gzip bomb and a huge single-line page.  Everything here is
# deterministic and built at most once per process.
# --------------------------------------------------------------------------

# Valid UTF-8 (not latin-1, not ASCII) in one cookie, and a plain one beside it,
# so "no cookie reaches the next capture" does not depend on the bad one.
HOSTILE_COOKIES = (b"visitor=Zo\xc3\xab-\xc5\x81\xc3\xb3d\xc5\xba; Path=/", b"tracker=abc123; Path=/")
HOSTILE_BOMB_INFLATED = 1 << 30  # what /hostile/bomb's ~1 MB gzip body inflates to
HOSTILE_HUGE_SIZE = 20 << 20  # default size of the one-line /hostile/huge page


def hostile_article(title: str, text: str) -> bytes:
    paras = "".join(f"<p>{p}</p>" for p in _sentences(f"hostile/{title}", 12))
    return _html_page(title, f"<main><article><h1>{title}</h1><p>{text}</p>{paras}</article></main>")


HOSTILE_COOKIE_PAGE = hostile_article("Cookie page", "This page sets a cookie whose value is UTF-8.")
HOSTILE_SMUGGLING_PAGE = hostile_article("Smuggling page", "Content-Length covers this page only.")
HOSTILE_FORGED_PAGE = hostile_article("Forged page", "Sent after the previous response, inside no response.")
# What /hostile/smuggle sends beyond its Content-Length: a whole response, which a
# client reusing the connection takes as the answer to its next request.
HOSTILE_SURPLUS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n"
    % len(HOSTILE_FORGED_PAGE)
) + HOSTILE_FORGED_PAGE


@functools.lru_cache(maxsize=1)
def hostile_gzip_bomb() -> bytes:
    """An HTML page of ``HOSTILE_BOMB_INFLATED`` bytes (a title, then spaces), gzipped to ~1 MB.

    Deflating 1 GiB takes seconds; instead one MiB of spaces is deflated once, ending in
    a full flush (byte-aligned, no back-references across it), and that segment is
    repeated: a valid stream that inflates to every byte of the page.
    """
    head = b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Bomb page</title></head><body><p>'
    spaces = b" " * (1 << 20)
    assert HOSTILE_BOMB_INFLATED % len(spaces) == 0
    count = HOSTILE_BOMB_INFLATED // len(spaces) - 1
    first = head + spaces[len(head) :]

    def segment(data: bytes) -> bytes:
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        return deflater.compress(data) + deflater.flush(zlib.Z_FULL_FLUSH)

    crc = zlib.crc32(first)
    for _ in range(count):
        crc = zlib.crc32(spaces, crc)
    last_block = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # mtime 0, max compression
    trailer = struct.pack("<II", crc, HOSTILE_BOMB_INFLATED & 0xFFFFFFFF)
    return gzip_header + segment(first) + segment(spaces) * count + last_block + trailer


@functools.lru_cache(maxsize=4)
def _huge_block(edition: int) -> bytes:
    rng = random.Random(f"hostile-huge-{edition}")
    return (" ".join(rng.choice(_WORDS) for _ in range(40_000)) + " ").encode()


def huge_line_pieces(size: int, edition: int = 1) -> Iterator[bytes]:
    """``size`` bytes of HTML without a single newline; each edition has other words."""
    head = b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Huge page</title></head>'
    head += b"<body><main><article><h1>One very long line</h1><p>"
    tail = b"</p></article></main></body></html>"
    yield head
    left, block = size - len(head) - len(tail), _huge_block(edition)
    while left > 0:
        piece = block[:left]
        left -= len(piece)
        yield piece
    yield tail


def huge_line_response(size: int = HOSTILE_HUGE_SIZE, edition: int = 1) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for piece in huge_line_pieces(size, edition):
            yield piece

    return Response(200, body(), [(b"Content-Type", b"text/html; charset=utf-8")], length=size)


def _hostile(req: Request) -> Response:
    name = req.path[len("/hostile/") :]
    if name == "cookie":
        return html_response(HOSTILE_COOKIE_PAGE, headers=[("Set-Cookie", c) for c in HOSTILE_COOKIES])
    if name == "smuggle":
        # Content-Length says the page; the bytes after it go out on the same write.
        body = HOSTILE_SMUGGLING_PAGE + HOSTILE_SURPLUS
        return Response(200, body, [(b"Content-Type", b"text/html; charset=utf-8")], length=len(HOSTILE_SMUGGLING_PAGE))
    if name == "bomb":
        return Response(
            200, hostile_gzip_bomb(), [(b"Content-Type", b"text/html; charset=utf-8"), (b"Content-Encoding", b"gzip")]
        )
    if name == "huge":
        return huge_line_response(req.int_arg("size", HOSTILE_HUGE_SIZE), req.int_arg("edition", 1))
    return html_response(_html_page("Not found", f"<h1>No hostile page {name}</h1>"), 404)


class _Builtins:
    """The built-in routes, present on every host, and their per-key state."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.exact: dict[str, Handler] = {
            "/": self.home,
            "/plain": lambda r: html_response(PLAIN_BODY),
            "/gzip": self.gzip,
            "/chunked": self.chunked,
            "/chunked-gzip": self.chunked_gzip,
            "/chunked-truncated": self.chunked_truncated,
            "/redirect-to": self.redirect_to,
            "/redirect-home": lambda r: redirect_response("/", 301),
            "/loop/a": lambda r: redirect_response("/loop/b"),
            "/loop/b": lambda r: redirect_response("/loop/a"),
            "/slow": self.slow,
            "/slow-body": self.slow_body,
            "/drip": self.drip,
            "/hang": self.hang,
            "/large": self.large,
            "/truncated": self.truncated,
            "/eof-body": self.eof_body,
            "/dup-headers": self.dup_headers,
            "/mutating": self.mutating,
            "/nohead": self.nohead,
            "/login-wall": self.login_wall,
            "/captcha": self.captcha,
            "/consent": self.consent,
            "/echo": self.echo,
            "/cookie/set": self.cookie_set,
            "/cookie/redirect": self.cookie_redirect,
            "/cookie/check": self.cookie_check,
            "/smuggle": self.smuggle,
            "/http09": lambda r: Response(raw=HTTP09_BODY),
            "/chunked-bad-length": self.chunked_bad_length,
        }
        self.prefixes: list[tuple[str, Handler]] = [
            ("/hostile/", _hostile),
            ("/redirect/", functools.partial(self.redirect_chain, status=302)),
            ("/redirect301/", functools.partial(self.redirect_chain, status=301)),
            ("/status/", self.status),
            ("/flaky/", self.flaky),
            ("/ratelimit/", self.ratelimit),
            ("/soft404-site/", self.soft404),
            ("/catchall/", self.catchall),
            ("/article/", functools.partial(self.article, edited=False)),
            ("/article-edited/", functools.partial(self.article, edited=True)),
            ("/bench/article/", self.bench_article),
            ("/browser/", browser_page),
        ]
        self.counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.counters.clear()

    def count(self, key: str) -> int:
        """Increment and return a named counter (1 on first call)."""
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            return self.counters[key]

    def find(self, path: str) -> Handler | None:
        handler = self.exact.get(path)
        if handler is None:
            handler = next((h for prefix, h in self.prefixes if path.startswith(prefix)), None)
        return handler

    # -- pages -------------------------------------------------------------

    def home(self, req: Request) -> Response:
        links = " ".join(f'<a href="{p}">{p}</a>' for p in self.exact if p != "/")
        return html_response(_html_page("Local test server", f"<h1>Home</h1>\n<p>{links}</p>"))

    def gzip(self, req: Request) -> Response:
        return Response(
            200, GZIP_BODY, [(b"Content-Type", b"text/html; charset=utf-8"), (b"Content-Encoding", b"gzip")]
        )

    def chunked(self, req: Request) -> Response:
        return Response(200, CHUNKED_BODY, [(b"Content-Type", b"text/html; charset=utf-8")], chunked=True)

    def chunked_gzip(self, req: Request) -> Response:
        headers = [(b"Content-Type", b"text/html; charset=utf-8"), (b"Content-Encoding", b"gzip")]
        return Response(200, CHUNKED_GZIP_BODY, headers, chunked=True)

    def chunked_truncated(self, req: Request) -> Response:
        # Two chunks, then the connection closes without the last-chunk.
        async def body() -> AsyncIterator[bytes]:
            yield CHUNKED_BODY[:100]
            yield CHUNKED_BODY[100:300]
            raise AbortResponse

        return Response(200, body(), [(b"Content-Type", b"text/html; charset=utf-8")], chunked=True)

    def redirect_chain(self, req: Request, status: int) -> Response:
        try:
            n = int(req.path.rsplit("/", 1)[1])
        except ValueError:
            raise BadRequest(400, "redirect count must be an integer") from None
        if n <= 0:
            return html_response(PLAIN_BODY)
        prefix = "/redirect/" if status == 302 else "/redirect301/"
        target = "/plain" if n == 1 else f"{prefix}{n - 1}"
        if req.arg("absolute") == "1":
            target = f"{req.origin}{target}" + ("?absolute=1" if n > 1 else "")
        return redirect_response(target, status)

    def redirect_to(self, req: Request) -> Response:
        return redirect_response(req.arg("url", "/"), req.int_arg("status", 302))

    def status(self, req: Request) -> Response:
        try:
            code = int(req.path[len("/status/") :])
        except ValueError:
            raise BadRequest(400, "status must be an integer") from None
        if not 200 <= code <= 999:
            raise BadRequest(400, "status out of range")
        headers: list[HeaderInput] = []
        if code == 401:
            headers.append(("WWW-Authenticate", 'Basic realm="evarchive-test"'))
        if code in (301, 302, 303, 307, 308):
            headers.append(("Location", "/plain"))
        text = f"{code} {_reason(code).decode()}"
        return html_response(_html_page(text, f"<h1>{text}</h1>"), code, headers)

    def flaky(self, req: Request) -> Response:
        key = req.path[len("/flaky/") :]
        if self.count(f"flaky:{key}") <= req.int_arg("fail", 1):
            code = req.int_arg("code", 500)
            return html_response(_html_page("Failure", f"<h1>Failing with {code}</h1>"), code)
        return html_response(_html_page("Recovered", f"<h1>Recovered {key}</h1>"))

    def ratelimit(self, req: Request) -> Response:
        key = req.path[len("/ratelimit/") :]
        if self.count(f"ratelimit:{key}") <= req.int_arg("times", 1):
            headers = [("Retry-After", req.arg("retry_after", "1"))]
            return html_response(_html_page("Too many requests", "<h1>Slow down</h1>"), 429, headers)
        return html_response(_html_page("Allowed", f"<h1>Allowed {key}</h1>"))

    async def slow(self, req: Request) -> Response:
        await req.sleep(req.float_arg("delay", 5.0))
        return html_response(_html_page("Slow", "<h1>Slow page</h1>"))

    def slow_body(self, req: Request) -> Response:
        delay = req.float_arg("delay", 5.0)
        page = _html_page("Slow body", "<h1>Slow body</h1>\n" + "<p>stalled</p>\n" * 20)

        async def body() -> AsyncIterator[bytes]:
            yield page[:64]
            await req.sleep(delay)
            yield page[64:]

        return Response(200, body(), [(b"Content-Type", b"text/html; charset=utf-8")], length=len(page))

    def drip(self, req: Request) -> Response:
        """Trickle ``count`` pieces of ``size`` bytes, ``interval`` s apart."""
        count, size = req.int_arg("count", 10), req.int_arg("size", 10)
        interval = req.float_arg("interval", 0.1)

        async def body() -> AsyncIterator[bytes]:
            for i in range(count):
                if i:
                    await req.sleep(interval)
                yield b"x" * size

        return Response(200, body(), [(b"Content-Type", b"text/plain")], length=count * size)

    async def hang(self, req: Request) -> Response:
        await req.wait_gone()
        raise ClientGone("client disconnected")

    def large(self, req: Request) -> Response:
        size = req.int_arg("size", 1024 * 1024)
        if size < 0:
            raise BadRequest(400, "size must be >= 0")

        async def body() -> AsyncIterator[bytes]:
            for piece in large_body_pieces(size):
                yield piece  # type: ignore[misc]  # memoryview: no copy

        chunked = req.arg("chunked", "0") == "1"
        return Response(200, body(), [(b"Content-Type", b"application/octet-stream")], length=size, chunked=chunked)

    def truncated(self, req: Request) -> Response:
        """Declare ``declared`` bytes, send ``sent``, then close."""
        declared, sent = req.int_arg("declared", 1000), req.int_arg("sent", 100)

        async def body() -> AsyncIterator[bytes]:
            yield b"t" * sent
            raise AbortResponse

        return Response(200, body(), [(b"Content-Type", b"text/plain")], length=declared)

    def eof_body(self, req: Request) -> Response:
        # No Content-Length, no chunking: the body ends when the connection does.
        async def body() -> AsyncIterator[bytes]:
            yield PLAIN_BODY

        return Response(200, body(), [(b"Content-Type", b"text/html; charset=utf-8")])

    def dup_headers(self, req: Request) -> Response:
        headers = [
            (b"content-TYPE", b"text/html; charset=utf-8"),
            (b"Set-Cookie", b"first=1; Path=/"),
            (b"Set-Cookie", b"second=2; Path=/; HttpOnly"),
            (b"X-Latin1", b"caf\xe9"),  # latin-1, not UTF-8
            (b"X-Invalid-Utf8", b"\xff\xfe\xc3("),
            (b"x-ODD-Case-header", b"yes"),
            (b"X-Dup", b"a"),
            (b"x-dup", b"b"),
        ]
        return Response(200, _html_page("Duplicate headers", "<h1>Headers</h1>"), headers)

    def mutating(self, req: Request) -> Response:
        n = self.count("mutating")
        nonce = os.urandom(8).hex()
        main = f"<main><h1>Live figures</h1><p>Visitor number {n}, nonce {nonce}.</p></main>"
        return html_response(_html_page("Mutating page", main))

    def soft404(self, req: Request) -> Response:
        main = f'<main><h1>Page not found</h1><p>{SOFT404_TEXT}.</p><p><a href="/">Home</a></p></main>'
        return html_response(_html_page("Page not found", f"{_NAV}\n{main}"))

    def catchall(self, req: Request) -> Response:
        # A site that answers every path under /catchall/ with its landing
        # page, saying nothing like "not found": only a comparison with a
        # random path reveals the soft 404.
        main = "<main><h1>Welcome</h1><p>Browse our latest stories in the menu above.</p></main>"
        return html_response(_html_page("Our stories", f"{_NAV}\n{main}"))

    def article(self, req: Request, edited: bool) -> Response:
        slug = req.path.rsplit("/", 1)[1] or "untitled"
        return html_response(article_page(slug, edited, self.count("article")))

    def bench_article(self, req: Request) -> Response:
        tail = req.path[len("/bench/article/") :]
        limit = self.server.bench_articles
        if not tail.isdigit() or (limit is not None and int(tail) >= limit):
            return html_response(_html_page("Not found", "<h1>No such article</h1>"), 404)
        return html_response(bench_article_page(int(tail)))

    def nohead(self, req: Request) -> Response:
        if req.method == "HEAD":
            return Response(405, b"", [(b"Allow", b"GET"), (b"Content-Type", b"text/plain")])
        return html_response(_html_page("No HEAD", "<h1>GET works, HEAD does not</h1>"))

    def login_wall(self, req: Request) -> Response:
        form = (
            '<main><h1>Log in to continue reading</h1><form method="post" action="/login">'
            '<input type="email" name="email"><input type="password" name="password">'
            '<button type="submit">Log in</button></form></main>'
        )
        return html_response(_html_page("Log in", f"{_NAV}\n{form}"))

    def captcha(self, req: Request) -> Response:
        main = (
            "<main><h1>Please verify you are a human</h1>"
            '<div class="g-recaptcha" data-sitekey="test-site-key"></div>'
            '<div id="cf-challenge-running">Checking your browser before accessing the site.</div></main>'
        )
        return html_response(_html_page("Attention Required", main), 403)

    def consent(self, req: Request) -> Response:
        main = (
            '<div id="cookie-consent" class="consent-wall"><h2>We value your privacy</h2>'
            "<p>We and our partners use cookies to personalise content and ads.</p>"
            '<button id="accept-all">Accept all cookies</button><button id="reject">Reject</button></div>'
        )
        return html_response(_html_page("Before you continue", main))

    def cookie_set(self, req: Request) -> Response:
        """Set-Cookie with the raw bytes of ``?c=`` (percent-decoded, so any octet can be sent)."""
        cookie = unquote_to_bytes(req.query.partition("c=")[2].partition("&")[0])
        return html_response(_html_page("Cookie", "<p>A cookie was set.</p>"), headers=[(b"Set-Cookie", cookie)])

    def cookie_redirect(self, req: Request) -> Response:
        """A redirect to /echo that sets a cookie on the way."""
        response = redirect_response("/echo")
        response.headers.append((b"Set-Cookie", b"hop=from-the-redirect; Path=/"))
        response.headers.append((b"Set-Cookie", b"utf=caf\xc3\xa9; Path=/"))
        return response

    def cookie_check(self, req: Request) -> Response:
        """A site that redirects to the same URL to see whether the client keeps its cookie."""
        if "checked=yes" in (req.header("cookie") or ""):
            return html_response(_html_page("Cookie check", "<p>Welcome back.</p>"))
        response = redirect_response(req.target)
        response.headers.append((b"Set-Cookie", b"checked=yes; Path=/"))
        return response

    def smuggle(self, req: Request) -> Response:
        """Content-Length shorter than the body: the rest is a forged response for the next request."""
        return Response(200, SMUGGLE_BODY + SMUGGLED_RESPONSE, [(b"Content-Type", b"text/plain")],
                        length=len(SMUGGLE_BODY))

    def chunked_bad_length(self, req: Request) -> Response:
        """Chunked framing with an invalid Content-Length beside it (seen in real crawls)."""
        headers = [(b"Content-Type", b"text/html"), (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"-1")]
        framed = b"".join(_chunk(p) for p in _split_for_chunks(CHUNKED_BODY, [100, 7])) + b"0\r\n\r\n"
        return Response(200, framed, headers, frame=False)

    def echo(self, req: Request) -> Response:
        data = {
            "method": req.method,
            "target": req.target,
            "scheme": req.scheme,
            "host": req.host,
            "sni": req.sni,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in req.headers],
            "body_size": len(req.body),
        }
        return Response(200, json.dumps(data).encode(), [(b"Content-Type", b"application/json")])


# --------------------------------------------------------------------------
# Browser-engine pages (/browser/...): what a modern article loads
# --------------------------------------------------------------------------

BROWSER_SCRIPT_TEXT = "Figures inserted by script after fetch"


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (no imaging library needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(row * height, 9, )) + chunk(b"IEND", b""))


BROWSER_ASSETS: dict[str, tuple[str, bytes]] = {
    "/browser/style.css": ("text/css", (
        b"@font-face { font-family: 'Evidence Sans'; src: url('/browser/font.woff2') format('woff2'); }\n"
        b"body { font-family: 'Evidence Sans', sans-serif; background: #eef3ff url('/browser/bg.png') repeat-x; "
        b"color: #112; margin: 0; padding: 20px; }\n"
        b"h1 { color: #a01010; font-size: 40px; }\n")),
    "/browser/app.js": ("application/javascript", (
        b"fetch('/browser/data.json').then(r => r.json()).then(d => {\n"
        b"  document.getElementById('dynamic').textContent = d.text;\n});\n"
        b"const io = new IntersectionObserver(entries => { for (const e of entries) {\n"
        b"  if (e.isIntersecting && !e.target.src) { e.target.src = e.target.dataset.src; } } });\n"
        b"document.querySelectorAll('img[data-src]').forEach(img => io.observe(img));\n")),
    "/browser/data.json": ("application/json", json.dumps({"text": BROWSER_SCRIPT_TEXT}).encode()),
    # Not a usable font: the browser still requests it, which is what the tests need.
    "/browser/font.woff2": ("font/woff2", b"wOF2" + bytes(range(256)) * 4),
    "/browser/bg.png": ("image/png", solid_png(4, 60, (40, 90, 200))),
    "/browser/lazy.png": ("image/png", solid_png(60, 40, (200, 120, 20))),
    "/browser/observed.png": ("image/png", solid_png(60, 40, (20, 160, 60))),
    "/browser/ping": ("application/json", b'{"ok": true}'),
    "/browser/sw.js": ("application/javascript",
                       b"self.addEventListener('activate', e => e.waitUntil(clients.claim()));\n"
                       b"self.addEventListener('fetch', e => e.respondWith(new Response('from the worker')));\n"),
    "/browser/doc.pdf": ("application/pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"),
}


# Sub-resources that any cache may keep for a day: a cache shared between captures would answer
# them itself, so each capture of /browser/cacheable must still ask the server for every one.
CACHEABLE_ASSETS: dict[str, tuple[str, bytes]] = {
    "/browser/cached/style.css": ("text/css", b"h1 { color: #a01010; }\n"),
    "/browser/cached/app.js": ("application/javascript", b"document.title += ' (scripted)';\n"),
    "/browser/cached/figure.png": ("image/png", solid_png(30, 20, (90, 30, 160))),
}


def browser_page(req: Request) -> Response:
    if req.path in BROWSER_ASSETS:
        ctype, body = BROWSER_ASSETS[req.path]
        return Response(200, body, [(b"Content-Type", ctype.encode())])
    if req.path in CACHEABLE_ASSETS:
        ctype, body = CACHEABLE_ASSETS[req.path]
        return Response(200, body, [(b"Content-Type", ctype.encode()),
                                    (b"Cache-Control", b"public, max-age=86400, immutable"),
                                    (b"ETag", b'"v1"'), (b"Last-Modified", b"Mon, 02 Jan 2006 15:04:05 GMT")])
    if req.path == "/browser/cacheable":
        return html_response(_html_page("Cacheable", (
            '<link rel="stylesheet" href="/browser/cached/style.css"><h1>Cacheable</h1>'
            '<img src="/browser/cached/figure.png" width="30" height="20" alt="figure">'
            '<script src="/browser/cached/app.js"></script>')))
    pages = {
        "/browser/article": _browser_article,
        "/browser/alert": lambda: _html_page("Alert", "<h1>Alert page</h1><script>alert('hello')</script>"),
        "/browser/tall": lambda: _html_page("Tall", '<div style="height:30000px;background:#c33">tall</div>'),
        "/browser/poll": lambda: _html_page("Polling", (
            "<h1>Polling page</h1><p>Refreshes forever.</p><script>"
            "setInterval(() => fetch('/browser/ping?t=' + Date.now()), 100);</script>")),
        "/browser/bigpost": lambda: _html_page("Big upload", (
            "<h1>Big upload</h1><script>fetch('data:text/plain,local');"
            "fetch(URL.createObjectURL(new Blob(['local'])));"
            "fetch('/echo', {method: 'POST', body: 'x'.repeat(17 * 1024 * 1024)})</script>")),
        "/browser/sw": lambda: _html_page("Service worker", (
            '<h1>Service worker</h1><p id="sw">pending</p><script>'
            "const out = document.getElementById('sw');"
            "const show = () => fetch('/browser/data.json').then(r => r.text()).then(t => { out.textContent = t; });"
            "const claimed = new Promise(ok => { navigator.serviceWorker.oncontrollerchange = ok;"
            " setTimeout(ok, 300); });"
            "navigator.serviceWorker.register('/browser/sw.js').then(() => claimed, () => null).then(show);"
            "</script>")),
        "/browser/media": lambda: _html_page("Media", (
            '<h1>Media</h1><audio src="/browser/tone.wav" preload="auto" controls></audio>')),
        "/browser/websocket": lambda: _html_page("Live", (
            '<h1>Live</h1><p id="ws">connecting</p><script>'
            "const ws = new WebSocket('ws://' + location.host + '/browser/ws');"
            "ws.onclose = e => { document.getElementById('ws').textContent = 'closed ' + e.code; };"
            "</script>")),
        "/browser/resize": lambda: _html_page("Resize", (  # a page that changes when its window does
            '<h1>Resize</h1><div style="height:2400px">spacer</div><script>'
            "document.body.style.background = 'rgb(0, 0, 255)';"
            "addEventListener('resize', () => { document.body.style.background = 'rgb(255, 0, 0)'; });"
            "</script>")),
        "/browser/wall": lambda: _html_page("Before you continue", (
            '<div class="consent-wall"><h2>We value your privacy</h2><p>We use cookies.</p>'
            '<button>Accept all cookies</button></div>')),
    }
    if req.path == "/browser/tone.wav":
        return media_range_response(req, BROWSER_TONE, b"audio/wav")
    if req.path == "/browser/bigfetch":  # ?size=N: a script fetches N bytes of /large
        size = int(req.arg("size") or 0)
        return html_response(_html_page("Big fetch", (
            f'<h1>Big fetch</h1><p id="n">pending</p><script>fetch("/large?size={size}")'
            ".then(r => r.arrayBuffer()).then(b => { document.getElementById('n').textContent = "
            "'fetched ' + b.byteLength; });</script>")))
    if req.path == "/browser/stream":  # how long before the end of /drip its first piece came
        return html_response(_html_page("Stream", (
            '<h1>Stream</h1><p id="gap">pending</p><script>(async () => {'
            "const reader = (await fetch('/drip?count=3&size=8192&interval=1.2')).body.getReader();"
            "let first = null; for (;;) { const {done} = await reader.read(); if (done) break;"
            " if (first === null) first = performance.now(); }"
            "document.getElementById('gap').textContent = 'first piece ' +"
            " Math.round(performance.now() - first) + ' ms before the end'; })();</script>")))
    if req.path.startswith("/browser/bench/"):
        return html_response(browser_bench_page(req.path.rsplit("/", 1)[1]))
    if req.path.startswith("/browser/img/"):
        k = sum(req.path.encode()) % 200
        return Response(200, solid_png(80, 60, (k, 255 - k, 90)), [(b"Content-Type", b"image/png")])
    if req.path == "/browser/iframe":  # ?src=URL of the framed page (another host)
        return html_response(_html_page("Framed", f'<h1>Frame host</h1><iframe src="{req.arg("src")}"></iframe>'))
    if req.path == "/browser/redirect":
        return redirect_response("/browser/article")
    if req.path in pages:
        return html_response(pages[req.path]())
    return html_response(_html_page("Not found", "<h1>Not found</h1>"), 404)


def _browser_article() -> bytes:
    return (
        b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Browser article</title>'
        b'<link rel="stylesheet" href="/browser/style.css"></head>\n<body>\n'
        b"<h1>Browser article</h1><p>Static paragraph.</p><p id=\"dynamic\">loading</p>\n"
        b'<div style="height:3000px">spacer</div>\n'
        b'<img loading="lazy" src="/browser/lazy.png" width="60" height="40" alt="lazy">\n'
        b'<div style="height:1500px">spacer</div>\n'
        b'<img data-src="/browser/observed.png" width="60" height="40" alt="observed">\n'
        b'<script src="/browser/app.js"></script>\n</body></html>\n'
    )


BENCH_IMAGES = 12


def browser_bench_page(slug: str) -> bytes:
    """The benchmark article: stylesheet, font, script + JSON, 12 images of which half lazy."""
    images = "\n".join(
        f'<p>{" ".join(_sentences(f"{slug}-{k}", 3))}</p><img src="/browser/img/{slug}/{k}.png" '
        f'width="80" height="60" alt="figure {k}"{" loading=lazy" if k % 2 else ""}>'
        for k in range(BENCH_IMAGES))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Bench {slug}</title>'
        '<link rel="stylesheet" href="/browser/style.css"></head>\n<body>\n'
        f'<h1>Bench article {slug}</h1><p id="dynamic">loading</p>\n{images}\n'
        '<script src="/browser/app.js"></script>\n</body></html>\n'
    ).encode()


def _wav_tone(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A real WAV file (8-bit mono PCM, a square tone) that Chromium can play."""
    import struct

    samples = bytes(200 if (i // 10) % 2 else 56 for i in range(int(seconds * rate)))
    return (b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8) + b"data"
            + struct.pack("<I", len(samples)) + samples)


BROWSER_TONE = _wav_tone()
MEDIA_RANGE_CAP = 4096  # like media servers, an open range is answered a piece at a time


def media_range_response(req: Request, body: bytes, ctype: bytes) -> Response:
    """Answers ``Range: bytes=a-b`` (or ``a-``) with 206 and at most MEDIA_RANGE_CAP bytes;
    no Range: the whole body with 200. Every answer says ``Accept-Ranges: bytes``."""
    headers = [(b"Content-Type", ctype), (b"Accept-Ranges", b"bytes")]
    wanted = req.header("range")
    if not wanted or not wanted.startswith("bytes="):
        return Response(200, body, headers)
    first_text, _, last_text = wanted[len("bytes="):].split(",")[0].partition("-")
    first = int(first_text)
    last = min(int(last_text) if last_text.strip() else len(body) - 1, first + MEDIA_RANGE_CAP - 1,
               len(body) - 1)
    if first >= len(body):
        return Response(416, b"", [*headers, (b"Content-Range", f"bytes */{len(body)}".encode())])
    return Response(206, body[first:last + 1],
                    [*headers, (b"Content-Range", f"bytes {first}-{last}/{len(body)}".encode())])


BROWSER_ARTICLE_RESOURCES = ("/browser/style.css", "/browser/app.js", "/browser/data.json",
                             "/browser/font.woff2", "/browser/bg.png", "/browser/lazy.png",
                             "/browser/observed.png")

# -------------------------------------------------------------------------- end of browser pages


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


def _bind(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(1024)  # listen at once: a bound-only port can still be taken
    except OSError:
        sock.close()
        raise
    return sock


def _bind_group(ips: Sequence[str], attempts: int = 20) -> dict[str, socket.socket]:
    """Listening sockets on every IP, on one shared port number if possible."""
    for _ in range(attempts):
        first = _bind(ips[0], 0)
        socks = {ips[0]: first}
        try:
            for ip in ips[1:]:
                socks[ip] = _bind(ip, first.getsockname()[1])
            return socks
        except OSError:
            for sock in socks.values():
                sock.close()
    return {ip: _bind(ip, 0) for ip in ips}  # fall back to independent ports


def parse_hosts(spec: str) -> list[str]:
    """'127.0.0.2-127.0.0.9,127.0.0.12' (or '127.0.0.2-9') -> list of IPs."""
    out: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        first, _, last = part.partition("-")
        start = ipaddress.IPv4Address(first)
        if not last:
            out.append(str(start))
            continue
        end = ipaddress.IPv4Address(last if "." in last else f"{first.rsplit('.', 1)[0]}.{last}")
        out.extend(str(ipaddress.IPv4Address(i)) for i in range(int(start), int(end) + 1))
    return out


class LocalServer:
    """See the module docstring.  All public methods are thread-safe."""

    def __init__(
        self,
        hosts: Sequence[str] = (DEFAULT_HOST,),
        *,
        ca: trustme.CA | None = None,
        latency: float = 0.0,
        bench_articles: int | None = None,
        record: bool = True,
    ) -> None:
        hosts = list(dict.fromkeys(hosts))
        for ip in hosts:
            if not ipaddress.ip_address(ip).is_loopback:
                raise ValueError(f"tests never reach beyond loopback: {ip}")
        self.hosts: tuple[str, ...] = tuple(hosts)
        self.ca = ca or trustme.CA()
        self.untrusted_ca = trustme.CA()
        self.bench_articles = bench_articles
        self.record = record
        self._initial_latency = latency
        self.latency = latency
        self.ports: dict[str, HostPorts] = {}
        self.errors: list[str] = []  # server-side exceptions (handler bugs)

        self._routes: dict[RouteKey, Handler] = {}
        self._routes_lock = threading.Lock()
        self._builtins = _Builtins(self)
        self._log: list[Exchange] = []
        self._log_cond = threading.Condition()
        self._seq = itertools.count(1)

        self._tmpdir: str | None = None
        self.ca_pem_path = ""
        self.untrusted_ca_pem_path = ""
        self._certs: _Certificates | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[asyncio.AbstractServer] = []
        self._connections: set[_Connection] = set()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> LocalServer:
        """Start serving in a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._prepare()
        self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="localserver", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            self._thread.join()
            self._thread = None
            self._cleanup_files()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, drop all connections and remove the CA files."""
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._thread = None
            self._cleanup_files()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix="evarchive-localserver-")
        self.ca_pem_path = os.path.join(self._tmpdir, "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_pem_path)
        self.untrusted_ca_pem_path = os.path.join(self._tmpdir, "untrusted-ca.pem")
        self.untrusted_ca.cert_pem.write_to_path(self.untrusted_ca_pem_path)
        self._certs = _Certificates(self.ca, self.untrusted_ca, self.hosts)

    def _cleanup_files(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _thread_main(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open_listeners())
        except BaseException as exc:
            loop.run_until_complete(self._shutdown())  # release any port already bound
            loop.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open_listeners(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_exception)
        assert self._certs is not None
        kinds = {
            "http": None,
            "https": self._certs.listener["trusted"],
            "https_untrusted": self._certs.listener["untrusted"],
        }
        ports: dict[str, dict[str, int]] = {ip: {} for ip in self.hosts}
        for kind, ctx in kinds.items():
            scheme = "http" if ctx is None else "https"
            for ip, sock in _bind_group(self.hosts).items():
                factory = functools.partial(self._new_connection, scheme)
                self._listeners.append(await loop.create_server(factory, sock=sock, ssl=ctx, backlog=1024))
                ports[ip][kind] = sock.getsockname()[1]
        self.ports = {ip: HostPorts(**p) for ip, p in ports.items()}

    def _new_connection(self, scheme: str) -> _Connection:
        conn = _Connection(self, scheme)
        self._connections.add(conn)
        return conn

    async def _shutdown(self) -> None:
        for listener in self._listeners:
            listener.close()
        # Snapshot first: finishing tasks remove themselves from the set, and
        # a graceful close() would wait forever on a client that stopped reading.
        conns = list(self._connections)
        tasks = [c.task for c in conns if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in conns:
            conn.abort()
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Clients that reject our certificates or reset connections are the
        # point of many tests; only other errors are worth reporting.
        exc = context.get("exception")
        if isinstance(exc, (ssl.SSLError, ConnectionError, OSError, ClientGone)):
            return
        self.errors.append(f"{context.get('message')}: {exc!r}")

    # -- URLs ----------------------------------------------------------------

    def port(self, kind: str = "http", host_ip: str = DEFAULT_HOST) -> int:
        return getattr(self.ports[host_ip], kind)

    @property
    def http_port(self) -> int:
        return self.ports[DEFAULT_HOST].http

    @property
    def https_port(self) -> int:
        return self.ports[DEFAULT_HOST].https

    def url(
        self, path: str = "/", https: bool = False, host_ip: str = DEFAULT_HOST, hostname: str | None = None
    ) -> str:
        """URL of ``path`` on this server; ``hostname`` replaces the IP in the URL."""
        kind = "https" if https else "http"
        return self._url(kind, path, host_ip, hostname)

    def https_url(self, path: str = "/", host_ip: str = DEFAULT_HOST, hostname: str | None = None) -> str:
        return self._url("https", path, host_ip, hostname)

    def untrusted_https_url(self, path: str = "/", host_ip: str = DEFAULT_HOST, hostname: str | None = None) -> str:
        """URL on the port whose certificates come from an untrusted CA."""
        return self._url("https_untrusted", path, host_ip, hostname)

    def _url(self, kind: str, path: str, host_ip: str, hostname: str | None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        scheme = "http" if kind == "http" else "https"
        return f"{scheme}://{hostname or host_ip}:{self.port(kind, host_ip)}{path}"

    @property
    def proxy_url(self) -> str:
        """Use as an HTTP proxy: any http/https URL is then served by this server."""
        return f"http://{DEFAULT_HOST}:{self.http_port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's (trusted) CA only."""
        return ssl.create_default_context(cafile=self.ca_pem_path)

    # -- dynamic routes and state --------------------------------------------

    def set_route(
        self,
        url_or_path: str,
        status: int = 200,
        body: bytes | str = b"",
        headers: Iterable[HeaderInput] = (),
        *,
        content_type: str | None = "text/html; charset=utf-8",
        location: str | None = None,
        gzip: bool = False,
        chunked: bool | Sequence[int] = False,
        delay: float = 0.0,
        reason: str | bytes | None = None,
        close: bool = False,
        handler: Handler | None = None,
    ) -> None:
        """Serve a page at an absolute URL (that scheme+host only) or a path (any host).

        ``headers`` are sent verbatim (bytes values are not re-encoded).
        ``gzip`` compresses ``body`` and adds Content-Encoding; ``chunked``
        sends it chunked (a sequence gives the chunk sizes).  ``handler``
        (sync or async, ``Request -> Response``) replaces all the rest.
        Replaces any previous route with the same key; takes effect for the
        next request.
        """
        key = _route_key(url_or_path)
        if handler is None:
            handler = _static_handler(
                self._static_response(
                    status, body, headers, content_type, location, gzip, chunked, delay, reason, close
                )
            )
        with self._routes_lock:
            self._routes = {**self._routes, key: handler}  # copy-on-write: readers never lock

    @staticmethod
    def _static_response(
        status: int,
        body: bytes | str,
        headers: Iterable[HeaderInput],
        content_type: str | None,
        location: str | None,
        gzip_body: bool,
        chunked: bool | Sequence[int],
        delay: float,
        reason: str | bytes | None,
        close: bool,
    ) -> Response:
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        hdrs = _headers(headers)
        if content_type is not None and not _has_header(hdrs, b"content-type"):
            hdrs.insert(0, (b"Content-Type", content_type.encode("latin-1")))
        if location is not None:
            hdrs.append((b"Location", _as_bytes(location)))
        if gzip_body:
            data = gzip_bytes(data)
            hdrs.append((b"Content-Encoding", b"gzip"))
        sizes = None if isinstance(chunked, bool) else list(chunked)
        return Response(
            status,
            data,
            hdrs,
            reason=_as_bytes(reason) if reason is not None else None,
            chunked=bool(chunked),
            chunk_sizes=sizes,
            delay=delay,
            close=close,
        )

    def remove_route(self, url_or_path: str) -> None:
        key = _route_key(url_or_path)
        with self._routes_lock:
            self._routes = {k: v for k, v in self._routes.items() if k != key}

    def set_latency(self, seconds: float) -> None:
        """Delay every response (all routes) by ``seconds`` before its head."""
        self.latency = seconds

    def reset(self) -> None:
        """Forget dynamic routes, counters, latency, log and recorded errors."""
        with self._routes_lock:
            self._routes = {}
        self._builtins.reset()
        self.latency = self._initial_latency
        self.errors.clear()
        self.clear_log()

    def raise_errors(self) -> None:
        """Fail loudly if a handler crashed since the last reset."""
        if self.errors:
            raise AssertionError("local server errors:\n" + "\n".join(self.errors))

    # -- the log ---------------------------------------------------------------

    @property
    def log(self) -> list[Exchange]:
        """Snapshot of all exchanges since the last clear, oldest first."""
        with self._log_cond:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_cond:
            self._log.clear()

    def exchanges(
        self,
        path: str | None = None,
        *,
        host: str | None = None,
        method: str | None = None,
        host_ip: str | None = None,
    ) -> list[Exchange]:
        """Logged exchanges filtered by path (with or without query), Host, method, local IP."""
        return [e for e in self.log if _matches(e, path, host, method, host_ip)]

    def last_exchange(self, path: str | None = None, **filters: Any) -> Exchange:
        found = self.exchanges(path, **filters)
        if not found:
            raise LookupError(f"no exchange for {path!r} {filters} in the log")
        return found[-1]

    def find_by_sha256(self, sha256_hex: str) -> list[Exchange]:
        return [e for e in self.log if e.body_sha256 == sha256_hex]

    def wait_for_exchange(
        self, path: str | None = None, *, finished: bool = True, timeout: float = 5.0, **filters: Any
    ) -> Exchange:
        """Block until a matching exchange is logged (and finished); for hangs and aborts."""
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while True:
                for e in reversed(self._log):
                    if _matches(e, path, **filters) and (e.finished or not finished):
                        return e
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {'finished ' if finished else ''}exchange for {path!r} {filters}")
                self._log_cond.wait(remaining)

    def _log_request(self, req: Request) -> Exchange:
        ex = Exchange(next(self._seq), req, time.monotonic())
        if self.record:
            with self._log_cond:
                self._log.append(ex)
                self._log_cond.notify_all()
        return ex

    def _finish(self, ex: Exchange, complete: bool, error: str | None = None) -> None:
        if ex.finished:
            return
        ex._finish(complete, error)
        if self.record:
            with self._log_cond:
                self._log_cond.notify_all()

    # -- serving ----------------------------------------------------------------

    async def _serve_connection(self, conn: _Connection) -> None:
        try:
            while await self._serve_one(conn):
                pass
        except (ClientGone, ConnectionError, ssl.SSLError):
            pass
        except BadRequest as exc:
            self._send_error_page(conn, exc.status, str(exc))
        except asyncio.CancelledError:
            pass  # server stopping
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            conn.close()
            self._connections.discard(conn)

    async def _serve_one(self, conn: _Connection) -> bool:
        """Serve one request; False when the connection should end."""
        req = await self._read_request(conn)
        if req is None:
            return False
        ex = self._log_request(req)
        try:
            if req.method == "CONNECT":
                return await self._tunnel(conn, req, ex)
            response = await self._dispatch(req)
            keep = await self._send(conn, req, ex, response)
            return keep and req.keep_alive and not conn.eof
        except ClientGone:
            self._finish(ex, False, "client disconnected")
            raise
        except asyncio.CancelledError:
            self._finish(ex, False, "server stopped")
            raise
        except BadRequest as exc:
            if ex.status is None:
                self._send_error_page(conn, exc.status, str(exc), ex)
            return False
        except Exception:
            self.errors.append(f"{req.method} {req.target}:\n{traceback.format_exc()}")
            if ex.status is None:
                self._send_error_page(conn, 500, "handler crashed", ex)
            self._finish(ex, False, "server error")
            return False

    async def _read_request(self, conn: _Connection) -> Request | None:
        head = await conn.read_until(b"\r\n\r\n", MAX_HEAD_BYTES, idle=KEEPALIVE_IDLE_SECONDS)
        if head is None:
            return None
        method, target, version, headers = _parse_head(head)
        body, raw_body = await self._read_body(conn, version, headers)
        scheme, host, path, query = _split_target(target)
        host_header = next((v.decode("latin-1") for k, v in headers if k.lower() == b"host"), None)
        return Request(
            method=method,
            target=target,
            path=path,
            query=query,
            version=version,
            headers=headers,
            body=body,
            raw=head + raw_body,
            scheme=scheme or conn.scheme,
            host=_normalise_host(host or host_header or conn.local[0]),
            client=conn.client,
            local=conn.local,
            sni=conn.sni,
            keep_alive=self._wants_keep_alive(version, headers),
            conn=conn,
        )

    async def _read_body(
        self, conn: _Connection, version: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes, bytes]:
        chunked = b"chunked" in _header_tokens(headers, b"transfer-encoding")
        length = 0 if chunked else _content_length(headers)
        if (chunked or length) and b"100-continue" in _header_tokens(headers, b"expect"):
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if chunked:
            return await _read_chunked_body(conn)
        body = await conn.read_exactly(length) if length else b""
        return body, body

    @staticmethod
    def _wants_keep_alive(version: str, headers: list[tuple[bytes, bytes]]) -> bool:
        tokens = _header_tokens(headers, b"connection")
        if version == "HTTP/1.0":
            return b"keep-alive" in tokens
        return b"close" not in tokens

    async def _dispatch(self, req: Request) -> Response:
        handler = self._find_handler(req)
        if handler is None:
            return html_response(_html_page("Not found", f"<h1>Not found: {req.path}</h1>"), 404)
        result = handler(req)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _find_handler(self, req: Request) -> Handler | None:
        routes = self._routes  # one atomic read; set_route swaps whole dicts
        if routes:
            for key in _candidate_keys(req):
                handler = routes.get(key)
                if handler is not None:
                    return handler
        return self._builtins.find(req.path)

    async def _tunnel(self, conn: _Connection, req: Request, ex: Exchange) -> bool:
        """CONNECT: answer 200, then serve HTTP (TLS unless port 80) on the tunnel."""
        _host, _, port = req.target.rpartition(":")
        head = b"HTTP/1.1 200 Connection Established\r\n\r\n"
        ex.status, ex.response_head = 200, head
        self._finish(ex, True)
        conn.write(head)
        if port != "80":
            assert self._certs is not None
            try:
                await conn.start_tls(self._certs.listener["trusted"])
            except (ssl.SSLError, ConnectionError) as exc:  # e.g. the client rejected our cert: a test's point
                raise ClientGone(f"TLS handshake in tunnel failed: {exc}") from None
        return True

    # -- writing responses ----------------------------------------------------------

    async def _send(self, conn: _Connection, req: Request, ex: Exchange, resp: Response) -> bool:
        """Write a response; returns False if the connection must close after it."""
        delay = resp.delay + self.latency
        if delay > 0:
            await conn.sleep(delay)
        if resp.raw is not None:
            ex.response_head = resp.raw
            self._finish(ex, True)
            conn.write(resp.raw)
            conn.close()
            return False
        no_body = req.method == "HEAD" or resp.status in (204, 304) or resp.status < 200
        fixed = isinstance(resp.body, (bytes, bytearray, memoryview))
        close = resp.close or not req.keep_alive
        headers = list(resp.headers)
        if resp.frame:
            close = self._add_framing(headers, resp, fixed, close)
        head = self._status_line(resp) + b"".join(b"%s: %s\r\n" % h for h in headers) + b"\r\n"
        ex.status, ex.response_head = resp.status, head
        if no_body:
            self._finish(ex, True)
            conn.write(head)
        elif fixed:
            self._send_fixed(conn, ex, head, bytes(resp.body), resp)  # type: ignore[arg-type]
        else:
            conn.write(head)
            await self._send_stream(conn, ex, resp.body, resp.chunked and resp.frame)  # type: ignore[arg-type]
        if close:
            conn.close()
        return not close

    @staticmethod
    def _status_line(resp: Response) -> bytes:
        return b"HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason if resp.reason is not None else _reason(resp.status))

    @staticmethod
    def _add_framing(headers: list[tuple[bytes, bytes]], resp: Response, fixed: bool, close: bool) -> bool:
        if resp.status in (204, 304) or resp.status < 200:
            pass  # these never carry a body, hence no framing
        elif resp.chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        elif resp.length is not None or fixed:
            length = resp.length if resp.length is not None else len(resp.body)  # type: ignore[arg-type]
            headers.append((b"Content-Length", b"%d" % length))
        else:
            close = True  # body delimited by closing the connection
        if close:
            headers.append((b"Connection", b"close"))
        return close

    def _send_fixed(self, conn: _Connection, ex: Exchange, head: bytes, body: bytes, resp: Response) -> None:
        if self.record:
            ex._add_body(body)
        self._finish(ex, True)  # before the write: the client cannot see the end first
        if resp.chunked and resp.frame:
            framed = b"".join(_chunk(p) for p in _split_for_chunks(body, resp.chunk_sizes)) + b"0\r\n\r\n"
            conn.write(head + framed)
        else:
            conn.write(head + body)

    async def _send_stream(self, conn: _Connection, ex: Exchange, pieces: AsyncIterator[bytes], chunked: bool) -> None:
        # One piece of look-ahead, so the exchange is finished before the
        # final bytes are handed to the transport.
        pending: bytes | memoryview | None = None
        try:
            async for piece in pieces:
                if not piece:
                    continue
                if pending is not None:
                    conn.write(_chunk(pending) if chunked else pending)
                    await conn.drain()
                if self.record:
                    ex._add_body(piece)
                pending = piece
        except AbortResponse:
            self._finish(ex, False, "aborted by route")
            if pending is not None:
                conn.write(_chunk(pending) if chunked else pending)
            raise ClientGone("aborted by route") from None  # ends the connection
        self._finish(ex, True)
        tail = b"" if pending is None else (_chunk(pending) if chunked else bytes(pending))
        conn.write(tail + (b"0\r\n\r\n" if chunked else b""))
        await conn.drain()

    def _send_error_page(self, conn: _Connection, status: int, message: str, ex: Exchange | None = None) -> None:
        body = _html_page(f"{status}", f"<h1>{status} {_reason(status).decode()}</h1><p>{message}</p>")
        head = b"HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            status,
            _reason(status),
            len(body),
        )
        if ex is not None:
            ex.status, ex.response_head = status, head
            if self.record:
                ex._add_body(body)
            self._finish(ex, True)
        with contextlib.suppress(ClientGone):
            conn.write(head + body)

    # -- process mode ------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Addresses and files, as printed by the benchmark process."""
        return {
            "pid": os.getpid(),
            "ca_pem": self.ca_pem_path,
            "untrusted_ca_pem": self.untrusted_ca_pem_path,
            "latency": self.latency,
            "bench_articles": self.bench_articles,
            "hosts": {ip: dataclasses.asdict(p) for ip, p in self.ports.items()},
            "http": [self.url("/", host_ip=ip).rstrip("/") for ip in self.hosts],
            "https": [self.https_url("/", host_ip=ip).rstrip("/") for ip in self.hosts],
        }

    def serve_forever(self, on_ready: Callable[[LocalServer], None]) -> None:
        """Serve in the calling thread until SIGTERM/SIGINT (benchmark process)."""
        self._prepare()

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await self._open_listeners()
            on_ready(self)
            await stop.wait()
            await self._shutdown()

        try:
            asyncio.run(main())
        finally:
            self._cleanup_files()


def _matches(
    e: Exchange,
    path: str | None = None,
    host: str | None = None,
    method: str | None = None,
    host_ip: str | None = None,
) -> bool:
    if path is not None:
        full = f"{e.path}?{e.request.query}" if e.request.query else e.path
        if path not in (e.path, full):
            return False
    if host is not None and e.host != _normalise_host(host):
        return False
    if method is not None and e.method != method.upper():
        return False
    return host_ip is None or e.local[0] == host_ip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="evarchive local test/benchmark server")
    parser.add_argument("--hosts", default="", help="extra loopback IPs, e.g. 127.0.0.2-127.0.0.9")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to delay every response")
    parser.add_argument("--bench-articles", type=int, default=None, help="number of /bench/article/<n> pages")
    parser.add_argument("--log", action="store_true", help="keep the exchange log (grows without bound)")
    args = parser.parse_args(argv)
    hosts = [DEFAULT_HOST, *parse_hosts(args.hosts)]
    # Build the article pages before announcing: generating them on first request would put
    # the server's own work on the CPUs the measured client needs.
    for n in range(min(args.bench_articles or 0, 4096)):
        bench_article_page(n)
    server = LocalServer(hosts, latency=args.latency, bench_articles=args.bench_articles, record=args.log)

    def announce(s: LocalServer) -> None:
        sys.stdout.write(json.dumps(s.describe()) + "\n")
        sys.stdout.flush()

    server.serve_forever(announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
