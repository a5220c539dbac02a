"""Fetching one URL hop by hop: redirects, retries, limits, each body spooled while hashed."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import random
import re
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import httpx

from .. import client
from ..cookies import ChainCookies
from ..errors import InputError
from ..tlsinfo import tls_info, validate_by_handshake
from ..urls import request_target, request_url
from ..wire import NoStatusLine, find_recording
from .settings import CaptureSettings

RENAMED_TE_HEADER = b"X-Original-Transfer-Encoding"
RETRY_STATUSES = {429, 500, 502, 503, 504}
SPOOL_IN_MEMORY = 1 << 20  # bodies up to 1 MiB stay in memory; larger ones go to archive/tmp


# --------------------------------------------------------------------------- results

@dataclass
class CapturedHop:
    """One request/response exchange of a capture."""

    url: str
    request_bytes: bytes
    response_head: bytes
    head_reconstructed: bool
    status: int
    reason: str
    http_version: str
    headers: httpx.Headers
    body: IO[bytes]
    body_length: int
    payload_sha256: str
    block_sha256: str
    truncated: bool
    server_ip: str | None
    server_port: int | None
    tls: dict[str, Any] | None
    location: str | None = None
    findings: list[str] = field(default_factory=list)  # what was wrong on the wire
    notes: list[str] = field(default_factory=list)  # e.g. a cookie that could not be kept


class CaptureFailure(Exception):
    """A capture that ended without usable evidence; ``kind`` is the catalogue's error class."""

    def __init__(self, kind: str, message: str, hops: list[CapturedHop] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hops = hops or []


class StorageError(Exception):
    """Writing the WARC, the catalogue or a body spool failed (full disk, I/O error): the run
    must stop. It is this machine's failure, never the site's: no capture row records it."""


class RetryableStatus(Exception):
    def __init__(self, hop: CapturedHop) -> None:
        super().__init__(f"HTTP {hop.status}")
        self.hop = hop


# --------------------------------------------------------------------------- HTTP client

def build_client(settings: CaptureSettings) -> httpx.AsyncClient:
    return client.build_client(client.ClientSettings(
        user_agent=settings.user_agent, per_host=settings.per_host,
        connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
        proxy=settings.proxy, insecure=settings.insecure, ca_file=settings.ca_file,
        resolve=settings.resolve))


# --------------------------------------------------------------------------- provenance

def _rename_transfer_encoding(head: bytes) -> tuple[bytes, bool]:
    """Rename Transfer-Encoding: the body is stored de-chunked, so no reader may de-chunk again."""
    renamed = re.sub(rb"(?im)^transfer-encoding(?=[ \t]*:)", RENAMED_TE_HEADER, head)
    return renamed, renamed != head


def _reconstruct_head(response: httpx.Response) -> bytes:
    lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}".encode("latin-1")]
    lines.extend(k + b": " + v for k, v in response.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


# --------------------------------------------------------------------------- fetching

class Fetcher:
    """Fetches one URL hop by hop, with retries, into spooled hops.

    Each chain starts with no cookies and keeps only those its own responses set (see
    ``cookies.py``): a capture never depends on what was captured before it.
    """

    method = "GET"

    def __init__(self, client: httpx.AsyncClient, settings: CaptureSettings, tmp_dir: Path) -> None:
        self.client = client
        self.settings = settings
        self.tmp_dir = tmp_dir

    async def fetch_chain(self, url: str, hops: list[CapturedHop] | None = None) -> list[CapturedHop]:
        """The hops to the final answer. Each hop received goes into `hops` at once, so a caller
        that passes its own list keeps the chain when a later hop fails (refused host, timeout)."""
        hops = [] if hops is None else hops
        seen: set[tuple[str, bytes | None]] = set()
        cookies = ChainCookies(self.settings.clock().timestamp())
        current = request_url(url)
        while True:
            # A redirect back to the same URL with a cookie just set is a cookie check, not a loop.
            state = (current, cookies.header(current))
            if state in seen:
                raise CaptureFailure("RedirectLoop", f"redirect loop back to {current}", hops)
            if len(hops) > self.settings.max_redirects:
                raise CaptureFailure("TooManyRedirects",
                                     f"more than {self.settings.max_redirects} redirects", hops)
            seen.add(state)
            hop = await self.fetch_with_retries(current, cookies)
            hops.append(hop)
            if hop.location is None:
                return hops
            try:
                current = request_url(urljoin(current, hop.location))
            except InputError as exc:
                raise CaptureFailure("RefusedRedirect", f"redirect refused: {exc.message}", hops) from None
            except ValueError as exc:  # urljoin on a malformed Location (an unclosed IPv6 bracket)
                raise CaptureFailure("RefusedRedirect", f"redirect refused: malformed Location {hop.location!r}: "
                                     f"{exc}", hops) from None

    async def fetch_with_retries(self, url: str, cookies: ChainCookies | None = None) -> CapturedHop:
        attempt = 0
        cookies = cookies if cookies is not None else ChainCookies(self.settings.clock().timestamp())
        while True:
            try:
                hop = await self.fetch_one(url, cookies)
                if hop.status not in RETRY_STATUSES or attempt >= self.settings.retries:
                    return hop
                delay = self._retry_delay(attempt, hop.headers.get("retry-after"))
                if delay is None:
                    return hop
                hop.body.close()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError,
                    httpx.RemoteProtocolError, httpx.WriteError) as exc:
                if _is_certificate_error(exc) or attempt >= self.settings.retries:
                    raise
                delay = self._retry_delay(attempt, None)
                assert delay is not None
            attempt += 1
            await self.settings.sleep(delay)

    def _retry_delay(self, attempt: int, retry_after: str | None) -> float | None:
        """Seconds to wait before the next try; None when the server asks for too long."""
        if retry_after:
            wanted = _parse_retry_after(retry_after, self.settings.clock())
            if wanted is not None:
                return None if wanted > self.settings.max_retry_after else wanted
        backoff = self.settings.backoff_base * (2 ** attempt)
        return min(self.settings.backoff_max, backoff * (0.5 + random.random() / 2))

    async def fetch_one(self, url: str, cookies: ChainCookies | None = None) -> CapturedHop:
        if cookies is None:  # a hop on its own starts with no cookies, like a chain
            cookies = ChainCookies(self.settings.clock().timestamp())
        cookie = cookies.header(url)
        # The request line carries the URL as cited (httpx would re-encode "[]|{}^").
        request = self.client.build_request(
            self.method, url, headers={"Cookie": cookie} if cookie else None,
            extensions={"target": request_target(url)})
        try:
            response = await self.client.send(request, stream=True)
        except httpx.RemoteProtocolError as exc:
            if isinstance(exc.__cause__, NoStatusLine):
                raise CaptureFailure("HTTP09Response", str(exc.__cause__)) from None
            raise
        try:
            cookies.store(url, [v for k, v in response.headers.raw if k.lower() == b"set-cookie"])
            hop = await self._read_hop(url, response)
        finally:
            await response.aclose()
        hop.notes += cookies.notes
        cookies.notes.clear()
        return hop

    async def _read_hop(self, url: str, response: httpx.Response) -> CapturedHop:
        stream = response.extensions.get("network_stream")
        recording = find_recording(stream)
        head = bytes(recording.response_head) if recording else b""
        reconstructed = not head.endswith(b"\r\n\r\n")
        if reconstructed:
            head = _reconstruct_head(response)
        head, _ = _rename_transfer_encoding(head)
        request_bytes = bytes(recording.request_bytes) if recording else b""
        if self.settings.proxy:
            request_bytes = client.redact_proxy_authorization(request_bytes)
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        tls = tls_info(stream)
        if tls is not None:
            await self._add_validation(tls, url, peer)
        body, length, payload_hex, block_hex, truncated = await self._spool_body(response, head)
        findings = recording.exchange_findings() if recording else []
        location = response.headers.get("location") if 300 <= response.status_code < 400 else None
        return CapturedHop(url=url, request_bytes=request_bytes, response_head=head,
                   head_reconstructed=reconstructed, status=response.status_code,
                   reason=response.reason_phrase, http_version=response.http_version,
                   headers=response.headers, body=body, body_length=length,
                   payload_sha256=payload_hex, block_sha256=block_hex, truncated=truncated,
                   server_ip=None if self.settings.proxy or not peer else str(peer[0]),
                   server_port=None if self.settings.proxy or not peer else int(peer[1]),
                   tls=tls, location=location, findings=findings)

    async def _add_validation(self, tls: dict[str, Any], url: str, peer: Any) -> None:
        if not self.settings.insecure:
            tls["validated"], tls["validation"] = True, "validated during the TLS handshake"
            return
        if not peer or self.settings.proxy:
            tls["validated"], tls["validation"] = False, "not validated (captured with --insecure)"
            return
        ok, why = await validate_by_handshake(str(peer[0]), int(peer[1]), urlsplit(url).hostname or "",
                                              self.settings.ca_file, tls.get("leaf_sha256"),
                                              self.settings.connect_timeout)
        tls["validated"] = ok
        tls["validation"] = f"captured with --insecure; {why}"

    async def _spool_body(self, response: httpx.Response, head: bytes
                          ) -> tuple[IO[bytes], int, str, str, bool]:
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=self.tmp_dir)
        payload = hashlib.sha256()
        block = hashlib.sha256(head)
        length = 0
        truncated = False
        limit = self.settings.max_body
        try:
            relay = await self._open_relay(response)
            # Pieces as they arrive (httpcore reads at most 64 KiB at a time): re-chunking would
            # hold a relayed body back until a whole chunk had come.
            async for chunk in response.aiter_raw():
                if length + len(chunk) > limit:
                    chunk = chunk[: limit - length]
                    truncated = True
                try:
                    body.write(chunk)  # past 1 MiB this writes to archive/tmp
                except OSError as exc:
                    raise StorageError() from exc
                payload.update(chunk)
                block.update(chunk)
                length += len(chunk)
                if relay is not None:  # only once it is on the spool: what is relayed was recorded
                    await relay(chunk)
                if truncated:
                    break
        except BaseException:
            try:
                body.close()
            except OSError:  # closing a spool whose disk is full flushes and fails again: the cause stands
                pass
            raise
        return body, length, payload.hexdigest(), block.hexdigest(), truncated

    async def _open_relay(self, response: httpx.Response) -> Callable[[bytes], Awaitable[None]] | None:
        """Where each chunk of the body also goes as soon as it is spooled: nowhere for a capture;
        the browser engine's proxy relays it to the browser."""
        return None


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _parse_retry_after(value: str, now: dt.datetime) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """The catalogue's error class and a readable message for a failed fetch."""
    if isinstance(exc, CaptureFailure):
        return exc.kind, exc.message
    if _is_certificate_error(exc):
        return "CertificateError", f"TLS certificate not valid: {_root_message(exc)}"
    if isinstance(exc, asyncio.TimeoutError):
        return "TotalTimeout", "the capture took longer than the total timeout"
    if isinstance(exc, httpx.TimeoutException):
        # The libraries' own words here name a cancel scope by its memory address: not evidence.
        return type(exc).__name__, f"{type(exc).__name__}: {_TIMEOUT_WORDS.get(type(exc), 'timed out')}"
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__, _root_message(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return "OSError", str(exc)
    return type(exc).__name__, str(exc)


_TIMEOUT_WORDS = {
    httpx.ConnectTimeout: "no connection within the connect timeout",
    httpx.ReadTimeout: "the server sent nothing within the read timeout",
    httpx.WriteTimeout: "the request could not be sent within the write timeout",
    httpx.PoolTimeout: "no free connection within the timeout",
}


def _root_message(exc: BaseException) -> str:
    messages = []
    seen: BaseException | None = exc
    while seen is not None and len(messages) < 4:
        text = str(seen)
        if text and text not in messages:
            messages.append(text)
        seen = seen.__cause__ or seen.__context__
    return "; ".join(messages)
