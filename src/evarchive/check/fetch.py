"""How a check asks the live web: the capture engine's fetcher, per-host and total limits with
urgent follow-ups first, and every failure turned into an observation with an error kind.

The HTTP machinery is the capture engine's (same client, recording wire layer, retries,
Retry-After, backoff), so a check sees the web exactly as a capture does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..capture import CaptureFailure, CaptureSettings, Fetcher, StorageError, classify_exception
from ..capture import CapturedHop
from ..client import redact_proxy
from ..urls import host_of, request_url
from .settings import CHECK_MAX_BODY
from .verdicts import Hop, Observation

PROBE_PREFIX = "evarchive-probe-"

# One URL fetched hop by hop into the list it is given (``Fetcher.fetch_chain``): what was
# received before a failure stays in the list.
FetchChain = Callable[[str, list[CapturedHop]], Awaitable[Any]]


class MethodFetcher(Fetcher):
    """The capture engine's fetcher, with the request method chosen (HEAD)."""

    def __init__(self, client: httpx.AsyncClient, settings: CaptureSettings, tmp_dir: Path,
                 method: str = "GET") -> None:
        super().__init__(client, settings, tmp_dir)
        self.method = method


class LiveWeb:
    """Every request of a check run: its limits, its time limit, and its failures.

    The limits hold only while a request is out, not while a page is judged:
    politeness is about requests, and the next request to the host need not
    wait for our parsing. Per host first, then the total, so a request waiting
    for its busy host never holds a global slot. ``urgent`` requests (a probe,
    a second look, GET after HEAD) finish a source that is already under way,
    so they go before sources not yet started."""

    def __init__(self, settings: CaptureSettings, get: FetchChain, head: FetchChain) -> None:
        self.settings = settings
        self.chains = {"GET": get, "HEAD": head}
        self.total = Slots(settings.concurrency)
        self.per_host: dict[str, Slots] = {}
        # spooled bodies not yet released (by id): a source's are released once its evidence is
        # written, so a run of thousands of sources holds only those in flight and the probes
        self.open_hops: dict[int, CapturedHop] = {}

    async def fetch(self, url: str, method: str = "GET", urgent: bool = False) -> Observation:
        """One URL, hop by hop; a failure becomes an observation with an error kind, never an
        exception, unless it is this machine's: a full disk while a body is spooled
        (``StorageError``), or the run being stopped."""
        net = self.settings
        host_limit = self.per_host.setdefault(host_key(url), Slots(net.per_host))
        start = time.monotonic()
        hops: list[CapturedHop] = []  # filled hop by hop: what was received survives a later failure
        try:
            async with host_limit.slot(urgent), self.total.slot(urgent):
                async with asyncio.timeout(net.total_timeout):
                    await self.chains[method](url, hops)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError, StorageError):
            self._hold(hops)
            raise
        except BaseException as exc:  # noqa: BLE001 - every other failure is a verdict
            self._hold(hops)
            _, message = classify_exception(exc)
            obs = observation_of(url, hops)
            obs.error_kind = error_kind(exc)
            obs.error_message = timeout_message(exc, net) if obs.error_kind == "timeout" \
                else redact_proxy(message, net.proxy)
            obs.elapsed_ms = (time.monotonic() - start) * 1000
            return obs
        self._hold(hops)
        obs = observation_of(url, hops)
        obs.elapsed_ms = (time.monotonic() - start) * 1000
        return obs

    def _hold(self, hops: list[CapturedHop]) -> None:
        self.open_hops.update((id(hop), hop) for hop in hops)

    def release(self, hops: list[CapturedHop]) -> None:
        """Close the bodies of ``hops`` (their evidence is written, their verdict given)."""
        for hop in hops:
            if self.open_hops.pop(id(hop), None) is not None:
                with contextlib.suppress(OSError):  # a spool on a full disk fails to flush: no matter
                    hop.body.close()

    def close(self) -> None:
        self.release(list(self.open_hops.values()))


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




def error_kind(exc: BaseException) -> str:
    """Which kind of unreachable: dns, refused, timeout, tls, reset, network,
    protocol or redirect-loop (walks the exception's causes, which is where
    httpx keeps the socket error)."""
    if isinstance(exc, CaptureFailure):
        if exc.kind in ("RedirectLoop", "TooManyRedirects"):
            return "redirect-loop"
        return "protocol"
    for inner in causes(exc):
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
    text = " ".join(str(e) for e in causes(exc)).lower()
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


def causes(exc: BaseException) -> list[BaseException]:
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


def probe_url(url: str) -> str:
    """A path that cannot exist, next to the source (sites route by section
    and by extension, so /news/a.html is probed with /news/<random>.html)."""
    parts = urlsplit(url)
    directory, _, leaf = parts.path.rpartition("/")
    ext = ""
    if "." in leaf and len(leaf.rsplit(".", 1)[1]) <= 5:
        ext = "." + leaf.rsplit(".", 1)[1]
    path = f"{directory}/{PROBE_PREFIX}{secrets.token_hex(8)}{ext}"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def probe_key(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    directory = parts.path.rpartition("/")[0]
    leaf = parts.path.rpartition("/")[2]
    ext = leaf.rsplit(".", 1)[1] if "." in leaf else ""
    return parts.scheme, parts.netloc.lower(), f"{directory}/*.{ext}"



def host_key(url: str) -> str:
    """The per-host limit's key. ASCII hosts need no IDNA round trip (which
    costs more than the rest of a check's bookkeeping)."""
    try:
        host = urlsplit(url).hostname or ""
        return host.rstrip(".") if host.isascii() else host_of(url)
    except Exception:  # noqa: BLE001 - an unusable URL still gets a (failing) check
        return url


def observation_of(url: str, hops: list[CapturedHop]) -> Observation:
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


def timeout_message(exc: BaseException, net: CaptureSettings) -> str:
    """Which limit ran out, in words (httpx's own messages name cancel scopes)."""
    names = {type(e).__name__ for e in causes(exc)}
    if "ConnectTimeout" in names:
        return f"no connection within {net.connect_timeout:g} s"
    if "ReadTimeout" in names:
        return f"no data for {net.read_timeout:g} s"
    if "WriteTimeout" in names:
        return f"could not send the request within {net.read_timeout:g} s"
    return f"not finished within {net.total_timeout:g} s"
