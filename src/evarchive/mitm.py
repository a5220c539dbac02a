"""The recording proxy between Chromium and the web: every browser request goes out through
evarchive's own HTTP client, so each sub-resource is recorded like a cited document.

Chromium talks to a loopback listener (one per capture, so each exchange belongs to exactly one
capture). Plain-HTTP requests arrive in absolute form; HTTPS arrives as a CONNECT tunnel that
is terminated here with a certificate issued on the fly by a CA that exists only for this run.
Chromium trusts that CA's leaf key and nothing else (``--ignore-certificate-errors-spki-list``);
the *real* server's certificate is checked by evarchive's client upstream, exactly as for the
HTTP engine. The body is relayed to the browser as it arrives, each chunk only once it is on the
capture's spool (bounded memory, the HTTP engine's limits): what it rendered is what was recorded,
and a body cut short (``--max-body``, a broken upstream) reaches the browser cut short too.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .capture import RETRY_STATUSES, CapturedHop, CaptureSettings, Fetcher, classify_exception
from .catalogue import format_time
from .cookies import ChainCookies
from .urls import request_target

MAX_REQUEST_HEAD = 64 * 1024
MAX_REQUEST_BODY = 16 << 20
# CapturedHop-by-hop headers (RFC 9110 section 7.6.1) concern one connection, not the exchange.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
              b"te", b"trailer", b"transfer-encoding", b"upgrade"}
# Codings the WARC tools here can read back (not br, not zstd); what the browser asked for is
# kept beside what was sent.
READABLE_CODINGS = {"gzip", "x-gzip", "deflate", "identity"}
UPSTREAM_ACCEPT_ENCODING = "gzip, deflate"  # when the browser names none
NO_BODY_STATUSES = {204, 304}
SEND_CHUNK = 256 * 1024
RELAY_HIGH_WATER = 1 << 20  # bytes waiting for the browser before the relay stops feeding it


# --------------------------------------------------------------------------- the run's CA

class RunAuthority:
    """A throw-away CA for one run, and one leaf key that every host certificate shares.

    Sharing the leaf key is what lets Chromium pin it: the SPKI hash of that key is the only
    certificate error the browser is told to ignore, so no other interception goes unnoticed.
    """

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="evarchive-ca-"))
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evarchive capture run CA")])
        self._ca_name = name
        self._ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._ca_key, hashes.SHA256()))
        self._key_path = self._dir / "leaf.key"
        self._key_path.write_bytes(self._leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self._contexts: dict[str, ssl.SSLContext] = {}

    @property
    def leaf_spki_sha256_b64(self) -> str:
        spki = self._leaf_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server-side TLS context presenting a certificate for ``host`` (cached)."""
        host = host.lower()
        ctx = self._contexts.get(host)
        if ctx is None:
            cert_path = self._dir / f"{hashlib.sha256(host.encode()).hexdigest()[:24]}.pem"
            cert_path.write_bytes(self._issue(host).public_bytes(serialization.Encoding.PEM)
                                  + self._ca_cert.public_bytes(serialization.Encoding.PEM))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_path, self._key_path)
            ctx.set_alpn_protocols(["http/1.1"])  # never HTTP/2: one exchange per request
            self._contexts[host] = ctx
        return ctx

    def _issue(self, host: str) -> x509.Certificate:
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self._ca_name).public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .sign(self._ca_key, hashes.SHA256()))

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


# --------------------------------------------------------------------------- exchanges

@dataclass
class Exchange:
    """One browser request and what evarchive recorded for it."""

    method: str
    url: str
    started: str
    browser_accept_encoding: str | None
    sent_accept_encoding: str | None = None
    hop: CapturedHop | None = None
    error_class: str | None = None
    error_message: str | None = None


class RelayBroken(Exception):
    """A retry after part of a body already went to the browser: the exchange cannot be replayed."""


class BodyRelay:
    """Relays one response to the browser while it is being spooled: the head as received (minus
    hop-by-hop fields), then each recorded chunk. Known lengths keep their Content-Length; others
    go chunked. An answer that may be retried (a retryable status) is not relayed but sent whole
    once final, so the browser only ever sees the exchange that was recorded.

    The browser never slows the recording down: a browser that reads slower than the server
    sends (a huge page it is still laying out) stops being fed once RELAY_HIGH_WATER bytes wait
    for it, and gets the rest from the spool when the exchange is recorded."""

    def __init__(self, writer: asyncio.StreamWriter, method: str) -> None:
        self.writer = writer
        self.method = method
        self.started = False
        self.chunked = False
        self.sent = 0  # body bytes handed to the browser so far
        self.lagging = False

    async def open(self, response: httpx.Response) -> Any:
        if self.started:
            raise RelayBroken("the upstream connection failed after part of the body was relayed")
        status = response.status_code
        if self.method == "HEAD" or status in NO_BODY_STATUSES or status < 200 or status in RETRY_STATUSES:
            return None
        length = response.headers.get("content-length")
        self.chunked = (length is None or not length.isdigit()
                        or "transfer-encoding" in response.headers)
        self.started = True
        self.writer.write(_head(status, response.reason_phrase, response.headers.raw,
                                None if self.chunked else int(length)))
        return self.send

    async def send(self, chunk: bytes) -> None:
        if self.lagging or not chunk:
            return
        if self.writer.transport.get_write_buffer_size() > RELAY_HIGH_WATER:
            self.lagging = True
            return
        self._write(chunk)

    async def finish(self, hop: CapturedHop) -> bool:
        """Hand over what the browser has not had yet, from the spool, and end the body; False
        when the connection must close (a cut body: the browser sees the load fail short, as the
        record says)."""
        if self.sent < hop.body_length:
            hop.body.seek(self.sent)
            while chunk := hop.body.read(SEND_CHUNK):
                self._write(chunk)
                await self.writer.drain()
        if hop.truncated:
            await self.writer.drain()
            return False
        if self.chunked:
            self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()
        return True

    def _write(self, chunk: bytes) -> None:
        self.writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk)
        self.sent += len(chunk)


class ExchangeFetcher(Fetcher):
    """A Fetcher for one browser request: the browser's method, headers and body."""

    def __init__(self, client: httpx.AsyncClient, settings: CaptureSettings, tmp_dir: Path,
                 method: str, headers: list[tuple[bytes, bytes]], content: bytes,
                 relay: BodyRelay | None = None) -> None:
        super().__init__(client, settings, tmp_dir)
        self.method = method
        self.headers = headers
        self.content = content
        self.relay = relay

    async def fetch_one(self, url: str, cookies: ChainCookies | None = None) -> CapturedHop:
        # The browser keeps its own cookies (a fresh context per capture) and sends them in its
        # headers, so the chain's cookie jar of the HTTP engine is not used here.
        request = self.client.build_request(self.method, url, headers=self.headers,
                                            content=self.content or None,
                                            extensions={"target": request_target(url)})
        response = await self.client.send(request, stream=True)
        try:
            return await self._read_hop(url, response)
        finally:
            await response.aclose()

    async def _open_relay(self, response: httpx.Response) -> Any:
        return await self.relay.open(response) if self.relay is not None else None


@dataclass
class ParsedRequest:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


class BadProxyRequest(Exception):
    pass


async def read_request(reader: asyncio.StreamReader) -> ParsedRequest | None:
    """One request from the browser, or None when it closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadProxyRequest("request head cut short") from None
    except asyncio.LimitOverrunError:
        raise BadProxyRequest("request head too large") from None
    lines = head[:-4].split(b"\r\n")
    try:
        method, target, _version = lines[0].decode("latin-1").split(" ", 2)
    except ValueError:
        raise BadProxyRequest("malformed request line") from None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise BadProxyRequest("malformed header line")
        headers.append((name.strip(), value.strip()))
    request = ParsedRequest(method.upper(), target, headers, b"")
    request.body = await _read_body(reader, request)
    return request


async def _read_body(reader: asyncio.StreamReader, request: ParsedRequest) -> bytes:
    length = request.header(b"content-length")
    if length is not None:
        size = int(length)
        if size > MAX_REQUEST_BODY:
            raise BadProxyRequest("request body too large")
        return await reader.readexactly(size)
    if (request.header(b"transfer-encoding") or b"").lower().endswith(b"chunked"):
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
            if len(body) > MAX_REQUEST_BODY:
                raise BadProxyRequest("request body too large")
    return b""


# --------------------------------------------------------------------------- the proxy

@dataclass
class ProxySession:
    """The loopback listener of one capture and everything that went through it."""

    client: httpx.AsyncClient
    settings: CaptureSettings
    tmp_dir: Path
    authority: RunAuthority
    clock: Any
    exchanges: list[Exchange] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                                  limit=MAX_REQUEST_HEAD)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def release_bodies(self) -> None:
        for exchange in self.exchanges:
            if exchange.hop is not None:
                exchange.hop.body.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve_plain(reader, writer)
        except (BadProxyRequest, ValueError) as exc:
            self.refused.append(str(exc))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.LimitOverrunError):
            pass  # the browser went away: nothing half-sent is evidence
        except asyncio.CancelledError:
            pass  # close() ends idle keep-alive connections; the handler's task simply ends
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve_plain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            if request.method == "CONNECT":
                host, _, port = request.target.rpartition(":")
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await writer.start_tls(self.authority.server_context(host.strip("[]")))
                await self._serve_tunnel(reader, writer, host, int(port))
                return
            if not request.target.lower().startswith("http://"):
                raise BadProxyRequest(f"not an absolute http URL: {request.target[:200]}")
            if not await self._answer(request, request.target, writer):
                return

    async def _serve_tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            host: str, port: int) -> None:
        authority = host if port == 443 else f"{host}:{port}"
        while (request := await read_request(reader)) is not None:
            if not await self._answer(request, f"https://{authority}{request.target}", writer):
                return

    async def _answer(self, request: ParsedRequest, url: str, writer: asyncio.StreamWriter) -> bool:
        """Fetch and record one exchange, then hand the browser what was recorded."""
        asked = request.header(b"accept-encoding")
        exchange = Exchange(request.method, url, _now(self.clock),
                            asked.decode("latin-1") if asked is not None else None)
        self.exchanges.append(exchange)
        headers = [(k, v) for k, v in request.headers
                   if k.lower() not in HOP_BY_HOP and k.lower() not in (b"host", b"accept-encoding",
                                                                        b"content-length")]
        exchange.sent_accept_encoding = upstream_accept_encoding(exchange.browser_accept_encoding)
        headers.append((b"Accept-Encoding", exchange.sent_accept_encoding.encode("latin-1")))
        relay = BodyRelay(writer, request.method)
        fetcher = ExchangeFetcher(self.client, self.settings, self.tmp_dir, request.method,
                                  headers, request.body, relay)
        try:
            if request.method in ("GET", "HEAD"):
                exchange.hop = await fetcher.fetch_with_retries(url)
            else:  # never repeat a request that may change something on the server
                exchange.hop = await fetcher.fetch_one(url)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure is reported to the browser
            exchange.error_class, exchange.error_message = classify_exception(exc)
            if relay.started:  # part of the body is out: closing is how the browser learns
                return False
            body = f"evarchive could not fetch {url}: {exchange.error_message}\n".encode()
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
            return True
        if relay.started:
            return await relay.finish(exchange.hop)
        await _send_recorded(writer, exchange.hop, request.method)
        return True


def upstream_accept_encoding(asked: str | None) -> str:
    """The browser's own Accept-Encoding without the codings the WARC tools here cannot read
    back: "identity" stays "identity" (media and range requests ask for it, and a coded range
    would not be the bytes asked for); gzip, deflate when the browser names none."""
    if asked is None:
        return UPSTREAM_ACCEPT_ENCODING
    kept = [token.strip() for token in asked.split(",")
            if token.split(";")[0].strip().lower() in READABLE_CODINGS]
    return ", ".join(kept) or "identity"


def _head(status: int, reason: str, raw_headers: list[tuple[bytes, bytes]], length: int | None,
          bodiless: bool = False) -> bytes:
    """A response head for the browser: the headers as received without the hop-by-hop ones,
    framed by ``length`` (None: chunked) unless the response has no body."""
    lines = [f"HTTP/1.1 {status} {reason}".encode("latin-1")]
    for name, value in raw_headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP or (lowered == b"content-length" and not bodiless):
            continue
        lines.append(name + b": " + value)
    if not bodiless:
        lines.append(b"Content-Length: " + str(length).encode() if length is not None
                     else b"Transfer-Encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _send_recorded(writer: asyncio.StreamWriter, hop: CapturedHop, method: str) -> None:
    """A recorded response sent whole (one that had no body to relay, or that could have been
    retried): same status, headers and encoded body."""
    bodiless = method == "HEAD" or hop.status in NO_BODY_STATUSES or hop.status < 200
    writer.write(_head(hop.status, hop.reason, hop.headers.raw, hop.body_length, bodiless))
    if not bodiless:
        hop.body.seek(0)
        while chunk := hop.body.read(SEND_CHUNK):
            writer.write(chunk)
            await writer.drain()
    await writer.drain()


def _now(clock: Any) -> str:
    return format_time(clock())


def refuse_cookies(client: httpx.AsyncClient) -> None:
    """The browser keeps its own cookies; the shared client must neither store nor add any."""
    import http.cookiejar

    client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


__all__ = ["Exchange", "ExchangeFetcher", "ProxySession", "RunAuthority", "refuse_cookies"]
