"""The capture engine: fetch cited URLs and preserve every exchange as WARC/1.1 evidence.

Flow for one URL: refuse what may not be fetched; fetch hop by hop (each redirect is its own
request/response pair); spool each body to disk while hashing it; write the records; then,
once the bytes are fsynced, commit the capture to the catalogue together with its custody-log
entry. Captures are committed in small groups so that a run of a thousand pages does not pay a
thousand fsyncs, and a kill at any moment leaves only an unreferenced tail, never a catalogue
row that points at missing bytes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import os
import random
import re
import sqlite3
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import httpx

from . import __version__, client, custody, parallel
from .archive import Archive
from .catalogue import (
    ensure_source,
    ensure_sources,
    format_time,
    insert,
    last_good_capture,
    one,
    sources_without_capture,
    to_json,
    transaction,
    update,
    utc_now,
)
from .cookies import ChainCookies
from .errors import ArchiveWriteError, InputError, UsageError, shown, storage_failure
from .check.verdicts import capture_observation, capture_verdict
from .records import record_intact
from .urls import host_of, request_target, request_url, validate_url
from .warcwriter import (
    new_record_id,
    RecordBlock,
    RecordSpec,
    WarcWriter,
    WrittenRecord,
    recover_interrupted,
    warc_fields,
)
from .tlsinfo import tls_info, validate_by_handshake
from .wire import NoStatusLine, find_recording

DEFAULT_USER_AGENT = f"evarchive/{__version__} (evidence archiver; +python-httpx)"
RENAMED_TE_HEADER = b"X-Original-Transfer-Encoding"
REVISIT_PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
RETRY_STATUSES = {429, 500, 502, 503, 504}
SPOOL_IN_MEMORY = 1 << 20  # bodies up to 1 MiB stay in memory; larger ones go to archive/tmp

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], dt.datetime]


def _utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CaptureSettings:
    """Every knob of a capture run; the defaults are no more aggressive than a browser."""

    concurrency: int = 48
    per_host: int = 6
    connect_timeout: float = 15.0
    read_timeout: float = 30.0
    total_timeout: float = 300.0
    max_body: int = 1 << 30
    retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0
    max_redirects: int = 20
    user_agent: str = DEFAULT_USER_AGENT
    proxy: str | None = None
    insecure: bool = False
    ca_file: str | None = None
    resolve: dict[str, tuple[str, int]] = field(default_factory=dict)
    max_warc_size: int = 1 << 30
    commit_every: int = 64
    commit_interval: float = 0.25
    workers: int | None = None  # processes for large runs; None: one per core (at most 2)
    sleep: Sleep = field(default=asyncio.sleep, repr=False)
    clock: Clock = field(default=_utc_clock, repr=False)

    def __post_init__(self) -> None:
        """One validation for every command that talks to the network (capture, archive, check,
        diff): a bad value is a usage error before anything is fetched or written."""
        at_least_one = {"--concurrency": self.concurrency, "--per-host": self.per_host,
                        "--workers": 1 if self.workers is None else self.workers, "--warc-size": self.max_warc_size}
        positive = {"--timeout": self.total_timeout, "--connect-timeout": self.connect_timeout,
                    "--read-timeout": self.read_timeout}
        problems = [f"{name} must be at least 1" for name, value in at_least_one.items() if value < 1]
        problems += [f"{name} must be more than 0 seconds" for name, value in positive.items() if value <= 0]
        problems += [f"{name} must not be negative" for name, value in
                     {"--retries": self.retries, "--max-body": self.max_body}.items() if value < 0]
        if problems:
            raise UsageError("; ".join(problems))
        client.validate_proxy(self.proxy)

    def public(self) -> dict[str, Any]:
        """Settings as written to warcinfo and the run row: no credentials, no callables."""
        data = {k: v for k, v in asdict(self).items() if k not in ("sleep", "clock", "proxy")}
        data["proxy"] = _proxy_kind(self.proxy)
        data["resolve"] = {k: list(v) for k, v in self.resolve.items()}
        return data


def _proxy_kind(proxy: str | None) -> str | None:
    """Only the kind of proxy goes into provenance: never its address or credentials."""
    return urlsplit(proxy).scheme.lower() if proxy else None


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


@dataclass
class CaptureOutcome:
    """What happened to one URL; ``status`` is captured, revisited or failed."""

    url: str
    status: str
    source_id: int | None = None
    capture_id: int | None = None
    http_status: int | None = None
    final_url: str | None = None
    payload_sha256: str | None = None
    payload_size: int | None = None
    warc_file: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    truncated: bool = False
    findings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        return type(exc).__name__, f"{type(exc).__name__}: {_root_message(exc) or 'timed out'}"
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__, _root_message(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return "OSError", str(exc)
    return type(exc).__name__, str(exc)


def _root_message(exc: BaseException) -> str:
    messages = []
    seen: BaseException | None = exc
    while seen is not None and len(messages) < 4:
        text = str(seen)
        if text and text not in messages:
            messages.append(text)
        seen = seen.__cause__ or seen.__context__
    return "; ".join(messages)


# --------------------------------------------------------------------------- WARC records

@dataclass
class PendingCapture:
    """A capture whose records are written but not yet committed to the catalogue."""

    row: dict[str, Any]
    records: list[WrittenRecord]
    outcome: CaptureOutcome
    end_offset: int | None
    artefacts: list[dict[str, Any]] = field(default_factory=list)  # browser engine only


def _http_block(hop: CapturedHop) -> RecordBlock:
    return RecordBlock(hop.response_head, hop.body, hop.body_length, hop.block_sha256)


def _revisit_target(db: Any, source_id: int, payload_sha256: str,
                    warcs_dir: Path | None = None) -> dict[str, Any] | None:
    """The record a revisit should refer to, when the last good capture had this same payload.

    One cheap query decides the common cases (a new source, a changed page); only a matching
    payload goes on to find the original response and check that its bytes are still intact.
    """
    last = db.conn.execute(
        "SELECT payload_sha256, http_status FROM captures WHERE source_id = ? AND status = 'ok' "
        "ORDER BY id DESC LIMIT 1", [source_id]).fetchone()
    if last is None or last[0] != payload_sha256 or last[1] != 200:
        return None
    return _previous_response(db, source_id, warcs_dir)


def _previous_response(db: Any, source_id: int, warcs_dir: Path | None = None) -> dict[str, Any] | None:
    """The original response record of the last good capture, for a revisit's Refers-To.

    With ``warcs_dir``, only while that record's bytes are still intact on disk: a revisit that
    points at a damaged or lost record preserves nothing, so the payload is written in full.
    """
    last = last_good_capture(db, source_id)
    if not last or last["http_status"] != 200:
        return None
    original_id = last["refers_to_capture_id"] or last["id"]
    original = one(db, "SELECT * FROM captures WHERE id = ?", [original_id])
    record = one(db, "SELECT * FROM capture_records WHERE capture_id = ? AND "
                     "record_type = 'response' ORDER BY id DESC LIMIT 1", [original_id])
    if not original or not record:
        return None
    if warcs_dir is not None and not record_intact(warcs_dir, record):
        return None
    return {"capture": original, "record": record, "payload_sha256": last["payload_sha256"]}


def write_hop_records(writer: WarcWriter, hop: CapturedHop, date: str,
                      revisit_of: dict[str, Any] | None) -> list[WrittenRecord]:
    """Request + response (or revisit) records of one exchange, each naming the other."""
    request_id, response_id = new_record_id(), new_record_id()
    ip = [("WARC-IP-Address", hop.server_ip)] if hop.server_ip else []
    if revisit_of is not None:
        original = revisit_of["record"]
        response_spec = RecordSpec(
            "revisit", hop.url, date, RecordBlock(hop.response_head),
            content_type="application/http; msgtype=response",
            headers=[*ip, ("WARC-Concurrent-To", request_id), ("WARC-Profile", REVISIT_PROFILE),
                     ("WARC-Refers-To", original["record_id"]),
                     ("WARC-Refers-To-Target-URI", original["target_uri"]),
                     ("WARC-Refers-To-Date", revisit_of["capture"]["warc_date"])],
            payload_sha256=hop.payload_sha256, record_id=response_id)
    else:
        truncated = [("WARC-Truncated", "length")] if hop.truncated else []
        response_spec = RecordSpec(
            "response", hop.url, date, _http_block(hop),
            content_type="application/http; msgtype=response",
            headers=[*ip, ("WARC-Concurrent-To", request_id), *truncated],
            payload_sha256=hop.payload_sha256, record_id=response_id)
    request_spec = RecordSpec(
        "request", hop.url, date, RecordBlock(hop.request_bytes),
        content_type="application/http; msgtype=request",
        headers=[*ip, ("WARC-Concurrent-To", response_id)], record_id=request_id)
    return [writer.write(request_spec), writer.write(response_spec)]


def _content_verdict(hops: list[CapturedHop]) -> dict[str, Any]:
    """Whether the capture holds the cited page, by the classifier ``check`` uses: a soft 404 or
    a wall is preserved as it was served, and never counts as support for a claim."""

    wall, verdict = capture_verdict(capture_observation(hops))
    return {"wall": wall, "content_verdict": verdict}


def _chain_of(hops: list[CapturedHop]) -> list[dict[str, Any]]:
    return [{"url": h.url, "status": h.status, "location": h.location} for h in hops]


def provenance_fields(cited_url: str, hops: list[CapturedHop], settings: CaptureSettings,
                      started: str, ended: str, attempts_note: str | None,
                      revisit_of: dict[str, Any] | None) -> list[tuple[str, Any]]:
    final = hops[-1]
    tls = final.tls or {}
    fields: list[tuple[str, Any]] = [
        ("software", f"evarchive/{__version__}"),
        ("httpx-version", httpx.__version__),
        ("cited-url", cited_url),
        ("request-url", hops[0].url),
        ("final-url", final.url),
        ("capture-started", started),
        ("capture-ended", ended),
        ("redirect-chain", _chain_of(hops)),
        ("http-status", str(final.status)),
        ("http-version", final.http_version),
        ("server-ip", final.server_ip or ""),
        ("server-port", str(final.server_port or "")),
        ("payload-sha256", final.payload_sha256),
        ("payload-size", str(final.body_length)),
        ("truncated", "true" if final.truncated else "false"),
        ("user-agent", settings.user_agent),
        ("proxy", _proxy_kind(settings.proxy) or "none"),
        ("transfer-encoding", "stored de-chunked; header renamed to "
                              + RENAMED_TE_HEADER.decode()),
        ("cookies", "none at the start of the capture; only cookies set during its own redirect "
                    "chain were sent, as received (see the request records)"),
    ]
    if tls:
        fields += [("tls-version", tls.get("version") or ""), ("tls-cipher", tls.get("cipher") or ""),
                   ("tls-leaf-sha256", tls.get("leaf_sha256") or ""),
                   ("tls-validated", tls.get("validation") or "")]
    if any(h.head_reconstructed for h in hops):
        fields.append(("response-head", "reconstructed from parsed headers (wire bytes unavailable)"))
    for hop in hops:
        fields += [("finding", f"{hop.url}: {text}") for text in hop.findings]
        fields += [("note", f"{hop.url}: {text}") for text in hop.notes]
    if revisit_of:
        fields.append(("revisit-of-capture", str(revisit_of["capture"]["id"])))
    if attempts_note:
        fields.append(("note", attempts_note))
    return fields


# --------------------------------------------------------------------------- the run

class CaptureRun:
    """Captures a list of URLs into one archive; one instance per process and run."""

    def __init__(self, archive: Archive, settings: CaptureSettings,
                 on_result: Callable[[CaptureOutcome], None] | None = None) -> None:
        self.archive = archive
        self.db = archive.db
        self.settings = settings
        self.on_result = on_result
        self.writer = WarcWriter(archive.warcs_dir, archive.locks_dir, archive.db,
                                 max_size=settings.max_warc_size,
                                 warcinfo={"httpx": httpx.__version__,
                                           "settings": settings.public()})
        self.pending: list[PendingCapture] = []
        self._last_commit = time.monotonic()
        self.run_id: int | None = None
        self.source_ids: dict[str, int] = {}
        self.committed: list[CaptureOutcome] = []  # in commit order; only what the catalogue holds
        self._stopped: BaseException | None = None  # the storage failure that ended the run

    # ----------------------------------------------------------------- orchestration
    async def run(self, urls: list[str]) -> list[CaptureOutcome]:
        try:
            self.run_id = self._start_run_row(len(urls))
            self.source_ids = ensure_sources(self.db, urls)
        except (OSError, sqlite3.Error) as exc:
            if storage_failure(exc) is None:
                raise
            raise self._stopped_error(exc, len(urls)) from exc
        global_limit = asyncio.Semaphore(self.settings.concurrency)
        host_limits: dict[str, asyncio.Semaphore] = {}
        async with build_client(self.settings) as client:
            fetcher = Fetcher(client, self.settings, self.archive.tmp_dir)

            async def one_url(url: str) -> None:
                host = host_of(url)
                limit = host_limits.setdefault(host, asyncio.Semaphore(self.settings.per_host))
                # The host slot first: a task waiting for its host must not hold a global slot.
                async with limit, global_limit:
                    await self.capture_one(fetcher, url)

            tasks = [asyncio.ensure_future(one_url(u)) for u in urls]
            try:
                await asyncio.gather(*tasks)
                self._finish_or_stop()
            except StorageError as exc:
                # Stop every other task before anything else: none may write after the failure.
                self._stopped = self._stopped or exc.__cause__ or exc
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._abandon_storage()
                raise self._stopped_error(self._stopped, len(urls)) from exc
            except BaseException:
                self._finish()  # Ctrl-C: keep what is complete, close the file cleanly
                raise
        order = {u: i for i, u in enumerate(urls)}
        return sorted(self.committed, key=lambda o: order.get(o.url, 0))

    def _finish(self) -> None:
        self.commit_pending()
        self.writer.close()
        self._end_run_row()

    def _finish_or_stop(self) -> None:
        try:
            self._finish()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError() from exc

    def _stopped_error(self, cause: BaseException, total: int) -> ArchiveWriteError:
        reason = storage_failure(cause) or f"{type(cause).__name__}: {cause}"
        return stopped_by_storage(reason, len(self.committed), total)

    def _abandon_storage(self) -> None:
        """After a failed write: commit only what is provably on disk, then seal the file.

        A failed write may leave part of a gzip member in the file, so the writer never appends
        again; the file is sealed as interrupted and the partial member is its unreferenced tail.
        A waiting capture is committed only once its records are fsynced and read back whole at
        the offsets it names; any other is left uncommitted, for ``capture --pending``. If even
        the catalogue cannot be written (a full disk), the next run seals the file.
        """
        try:
            self.writer.sync()
            self.pending = [item for item in self.pending
                            if all(record_intact(self.archive.warcs_dir, r.as_row()) for r in item.records)]
            self.commit_pending()
        except (OSError, sqlite3.Error):
            self.pending = []
        self.writer.abandon()
        try:
            recover_interrupted(self.archive.warcs_dir, self.db)
            self._end_run_row()
        except (OSError, sqlite3.Error):
            pass

    async def capture_one(self, fetcher: Fetcher, url: str) -> CaptureOutcome:
        source_id = self.source_ids.get(url) or ensure_source(self.db, url)
        start = self.settings.clock()
        started = format_time(start)
        hops: list[CapturedHop] = []
        try:
            async with asyncio.timeout(self.settings.total_timeout):
                await fetcher.fetch_chain(url, hops)
        except BaseException as exc:
            if isinstance(exc, StorageError):
                self._stopped = self._stopped or exc.__cause__ or exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError, StorageError)):
                for hop in hops:
                    hop.body.close()
                raise
            kind, message = classify_exception(exc)
            message = client.redact_proxy(message, self.settings.proxy)
            # The hops received before the failure are evidence too (the redirect that led there).
            return self._record_safely(url, source_id, started, hops, failure=(kind, message))
        return self._record_safely(url, source_id, started, hops, failure=None)

    def _record_safely(self, url: str, source_id: int, started: str, hops: list[CapturedHop],
                       failure: tuple[str, str] | None) -> CaptureOutcome:
        if self._stopped is not None:  # a task that finishes after the failure records nothing
            for hop in hops:
                hop.body.close()
            raise StorageError() from self._stopped
        try:
            return self._record(url, source_id, started, hops, failure)
        except (OSError, sqlite3.Error) as exc:
            self._stopped = exc
            raise StorageError() from exc

    # ----------------------------------------------------------------- recording
    def _record(self, url: str, source_id: int, started: str, hops: list[CapturedHop],
                failure: tuple[str, str] | None) -> CaptureOutcome:
        try:
            ended = format_time(self.settings.clock())
            final = hops[-1] if hops else None
            if failure is None and final is not None and final.status >= 400:
                failure = ("HTTPStatus", f"HTTP {final.status} {final.reason}".strip())
            revisit_of = None
            if failure is None and final is not None and not final.truncated:
                revisit_of = _revisit_target(self.db, source_id, final.payload_sha256,
                                             self.archive.warcs_dir)
            records: list[WrittenRecord] = []
            if hops:
                records = self._write_records(url, hops, started, ended, revisit_of)
            extra = _content_verdict(hops) if failure is None and hops else None
            return self._queue(url, source_id, started, ended, hops, records, failure, revisit_of,
                               row_extra=extra)
        finally:
            for hop in hops:
                hop.body.close()

    def _write_records(self, url: str, hops: list[CapturedHop], started: str, ended: str,
                       revisit_of: dict[str, Any] | None) -> list[WrittenRecord]:
        self.writer.begin_capture()
        records: list[WrittenRecord] = []
        for index, hop in enumerate(hops):
            is_final = index == len(hops) - 1
            records += write_hop_records(self.writer, hop, started, revisit_of if is_final else None)
        response = records[-1]
        final = hops[-1]
        if final.tls and final.tls.get("chain_pem"):
            chain = "".join(final.tls["chain_pem"]).encode("ascii")
            records.append(self.writer.write(RecordSpec(
                "resource", f"urn:evarchive:tls-certificate-chain:{final.tls['leaf_sha256']}",
                started, RecordBlock(chain), content_type="application/pem-certificate-chain",
                headers=[("WARC-Concurrent-To", response.record_id)])))
        fields = provenance_fields(url, hops, self.settings, started, ended, None, revisit_of)
        records.append(self.writer.write(RecordSpec(
            "metadata", hops[0].url, started, RecordBlock(warc_fields(fields)),
            content_type="application/warc-fields",
            headers=[("WARC-Refers-To", response.record_id)])))
        return records

    def _queue(self, url: str, source_id: int, started: str, ended: str, hops: list[CapturedHop],
               records: list[WrittenRecord], failure: tuple[str, str] | None,
               revisit_of: dict[str, Any] | None, artefacts: list[dict[str, Any]] | None = None,
               row_extra: dict[str, Any] | None = None) -> CaptureOutcome:
        final = hops[-1] if hops else None
        tls = (final.tls if final else None) or {}
        status = "failed" if failure else ("revisited" if revisit_of else "captured")
        row = {
            "source_id": source_id, "run_id": self.run_id, "url_requested": url,
            "status": "failed" if failure else "ok",
            "kind": None if not records else ("revisit" if revisit_of else "response"),
            "started_at": started, "ended_at": ended, "warc_date": started if records else None,
            "final_url": final.url if final else None,
            "redirect_chain": to_json(_chain_of(hops)) if hops else None,
            "http_status": final.status if final else None,
            "server_ip": final.server_ip if final else None,
            "server_port": final.server_port if final else None,
            "http_version": final.http_version if final else None,
            "tls_version": tls.get("version"), "tls_cipher": tls.get("cipher"),
            "cert_chain_pem": to_json(tls["chain_pem"]) if tls.get("chain_pem") else None,
            "cert_sha256": tls.get("leaf_sha256"),
            "cert_validated": int(tls["validated"]) if tls else None,
            "insecure": int(self.settings.insecure), "proxy_used": int(bool(self.settings.proxy)),
            "content_type": final.headers.get("content-type") if final else None,
            "payload_size": final.body_length if final else None,
            "payload_sha256": final.payload_sha256 if final else None,
            "truncated": int(bool(final and final.truncated)),
            "warc_file": records[0].warc_file if records else None,
            "error_class": failure[0] if failure else None,
            "error_message": failure[1] if failure else None,
            "refers_to_capture_id": revisit_of["capture"]["id"] if revisit_of else None,
            **(row_extra or {}),
        }
        outcome = CaptureOutcome(
            url=url, status=status, source_id=source_id, http_status=row["http_status"],
            final_url=row["final_url"], payload_sha256=row["payload_sha256"],
            payload_size=row["payload_size"], warc_file=row["warc_file"],
            error_class=row["error_class"], error_message=row["error_message"],
            truncated=bool(row["truncated"]),
            findings=[f"{h.url}: {text}" for h in hops for text in h.findings])
        end = (records[-1].offset + records[-1].length) if records else None
        self.pending.append(PendingCapture(row, records, outcome, end, artefacts or []))
        if (len(self.pending) >= self.settings.commit_every
                or time.monotonic() - self._last_commit >= self.settings.commit_interval):
            self.commit_pending()
        return outcome

    def commit_pending(self) -> None:
        """fsync the WARC, then commit the waiting captures and their custody entries at once."""
        if not self.pending:
            return
        self.writer.sync()
        batch = self.pending
        entries = []
        with transaction(self.db):
            for item in batch:
                capture_id = insert(self.db, "captures", item.row)
                item.outcome.capture_id = capture_id
                for record in item.records:
                    insert(self.db, "capture_records", {"capture_id": capture_id, **record.as_row()})
                for artefact in item.artefacts:
                    insert(self.db, "capture_artefacts", {"capture_id": capture_id, **artefact})
                if item.end_offset is not None and item.row["warc_file"]:
                    self.db.execute(
                        "UPDATE warc_files SET referenced_size = MAX(referenced_size, ?) "
                        "WHERE name = ?", [item.end_offset, item.row["warc_file"]])
                details = {"capture_id": capture_id, "capture": item.row,
                           "records": [r.as_row() for r in item.records]}
                if item.outcome.findings:
                    details["findings"] = item.outcome.findings
                if item.artefacts:
                    details["artefacts"] = item.artefacts
                entries.append(("capture", item.row["url_requested"], details))
            custody.append_many(self.db, entries)
        self.pending = []  # only now: a batch whose transaction failed is still waiting
        self._last_commit = time.monotonic()
        self.committed.extend(item.outcome for item in batch)
        if self.on_result:
            for item in batch:
                self.on_result(item.outcome)

    # ----------------------------------------------------------------- run rows
    def _start_run_row(self, count: int) -> int:
        with transaction(self.db):
            return insert(self.db, "runs", {
                "command": f"capture ({count} URLs)", "started_at": utc_now(),
                "tool_version": __version__, "settings": to_json(self.settings.public()),
                "pid": _pid()})

    def _end_run_row(self) -> None:
        with transaction(self.db):
            update(self.db, "runs", self.run_id, {"ended_at": utc_now()})


def stopped_by_storage(reason: str, committed: int, total: int) -> ArchiveWriteError:
    """The exit-3 error of a capture run that the archive's storage stopped."""
    return ArchiveWriteError(
        f"writing the archive failed ({reason}); {committed} of the {total} captures of this run "
        "are committed, the rest were not. Free space (or fix the problem) and run "
        "`evarchive capture --pending` to finish.", reason)


def _pid() -> int:
    return os.getpid()


# --------------------------------------------------------------------------- public API

def read_url_list(urls: Iterable[str] = (), from_file: Path | None = None) -> list[str]:
    """The URLs given and those in ``from_file``, validated: call it before creating an archive."""
    chosen: list[str] = list(urls)
    if from_file is not None:
        try:
            text = from_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read URL list {shown(from_file)}: {exc}") from None
        chosen += [line.strip() for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    _refuse_invalid(chosen)
    return chosen


def select_urls(archive: Archive, urls: Iterable[str] = (), from_file: Path | None = None,
                pending: bool = False, everything: bool = False) -> list[str]:
    """The URLs a capture command works on, validated before anything is written."""
    chosen = read_url_list(urls, from_file)
    if pending:
        chosen += [row["url"] for row in _sources_without_good_capture(archive)]
    if everything:
        chosen += [row["url"] for row in archive.db.query("SELECT url FROM sources ORDER BY id")]
    _refuse_invalid(chosen)
    unique = list(dict.fromkeys(chosen))
    return unique


def _refuse_invalid(urls: list[str]) -> None:
    refused = []
    for url in urls:
        try:
            validate_url(url)
        except InputError as exc:
            refused.append(exc.message)
    if refused:
        raise InputError("nothing was captured:\n  " + "\n  ".join(refused))


def _sources_without_good_capture(archive: Archive) -> list[dict[str, Any]]:
    """Sources with no good capture, and sources whose last good capture is not intact."""
    rows = sources_without_capture(archive.db)
    damaged = _sources_with_damaged_capture(archive)
    if damaged:
        rows += [dict(row) for row in archive.db.query(
            f"SELECT * FROM sources WHERE id IN ({','.join('?' * len(damaged))}) ORDER BY id",
            sorted(damaged))]
    return rows


def _sources_with_damaged_capture(archive: Archive) -> set[int]:
    """Sources whose last good capture has a record that is not whole at its offsets.

    Only files a failed or killed run left (``interrupted``) are read: a cleanly closed file
    was written and fsynced in full before its captures were committed, whereas a run stopped
    by a failed write (by an older evarchive, before writes stopped at the first failure) could
    commit offsets that name the wrong bytes. ``verify --deep`` checks every file.
    """
    rows = archive.db.query(
        "SELECT c.source_id, r.warc_file, r.offset, r.length, r.member_sha256 "
        "FROM (SELECT source_id, MAX(id) AS id FROM captures WHERE status = 'ok' "
        "      GROUP BY source_id) c "
        "JOIN capture_records r ON r.capture_id = c.id "
        "JOIN warc_files w ON w.name = r.warc_file WHERE w.status = 'interrupted'")
    return {row["source_id"] for row in rows if not record_intact(archive.warcs_dir, row)}


def recover(archive: Archive) -> list[Any]:
    """Seal WARC files left open by a killed run; returns what was found (for a notice)."""
    return recover_interrupted(archive.warcs_dir, archive.db)


def _capture_share(archive_path: Path, settings: Any) -> Callable[[list[str], parallel.ResultBatch], None]:
    def work(urls: list[str], batch: parallel.ResultBatch) -> None:
        archive = Archive.open(archive_path)
        run = CaptureRun(archive, settings, on_result=batch.add)
        asyncio.run(run.run(urls))
        batch.flush()
        archive.close()
    return work


def capture_in_workers(archive: Archive, urls: list[str], settings: Any, workers: int,
                       on_result: Callable[[Any], None] | None) -> list[Any]:
    """Run one ``CaptureRun`` per worker process (``parallel`` forks them) and gather their
    outcomes in URL order."""
    shares = parallel.split_by_host(urls, workers)
    per_worker = replace(settings, concurrency=max(1, settings.concurrency // len(shares)))
    outcomes: list[Any] = []

    def gather(payload: list[Any]) -> None:
        outcomes.extend(payload)
        if on_result:
            for outcome in payload:
                on_result(outcome)

    try:
        parallel.run_in_workers(shares, _capture_share(archive.path, per_worker), gather, "capture",
                                "run `evarchive capture --pending` to finish")
    except ArchiveWriteError as exc:
        # A worker counts only its own captures; every outcome gathered here is a committed one.
        raise stopped_by_storage(exc.reason, len(outcomes), len(urls)) from exc
    order = {u: i for i, u in enumerate(urls)}
    return sorted(outcomes, key=lambda o: order.get(o.url, 0))


def capture_urls(archive: Archive, urls: list[str], settings: CaptureSettings | None = None,
                 on_result: Callable[[CaptureOutcome], None] | None = None) -> list[CaptureOutcome]:
    """Capture ``urls`` into ``archive`` (blocking); every attempt lands in the catalogue."""
    settings = settings or CaptureSettings()
    for url in urls:
        validate_url(url)
    client.validate_proxy(settings.proxy)
    unique = list(dict.fromkeys(urls))
    workers = parallel.worker_count(settings.workers, unique)
    if workers > 1 and not parallel.threads_other_than_main():
        return capture_in_workers(archive, unique, settings, workers, on_result)
    run = CaptureRun(archive, settings, on_result)
    with parallel.fewer_collections():
        return asyncio.run(run.run(unique))


__all__ = [
    "CaptureOutcome",
    "CaptureRun",
    "CaptureSettings",
    "Fetcher",
    "CapturedHop",
    "build_client",
    "capture_urls",
    "classify_exception",
    "recover",
    "select_urls",
]
