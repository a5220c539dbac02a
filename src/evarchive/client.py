"""The HTTP client every network command shares (capture, check): httpx over a recording wire.

- HTTP/1.1 only, and no ``br``/``zstd`` content codings: what WARC readers and replay tools
  decode safely.
- One connection pool per origin. The pool size *is* the per-host limit (browsers open up to 6
  connections per host), and small pools keep httpcore's request-to-connection matching cheap
  when a run spans many hosts.
- No cookie jar: httpx's own jar would carry cookies from one capture into every later one
  (and breaks on non-ASCII cookies). Each redirect chain keeps its own cookies
  (``cookies.ChainCookies``); the client neither stores nor sends any.
- ``resolve`` points a host at another address (like curl's ``--resolve``) without touching the
  system's hosts file; TLS still validates the original name.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from urllib.parse import unquote

import httpcore
import httpx

from .errors import InputError
from .wire import RecordingBackend

ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ACCEPT_ENCODING = "gzip, deflate"


@dataclass
class ClientSettings:
    user_agent: str
    per_host: int = 6
    connect_timeout: float = 15.0
    read_timeout: float = 30.0
    proxy: str | None = None
    insecure: bool = False
    ca_file: str | None = None
    resolve: dict[str, tuple[str, int]] = field(default_factory=dict)


def build_ssl_context(insecure: bool, ca_file: str | None) -> ssl.SSLContext:
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca_file)
        if ca_file is None:
            try:
                import certifi

                ctx.load_verify_locations(certifi.where())
            except ImportError:  # the system store alone will do
                pass
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def validate_proxy(proxy: str | None) -> None:
    """Refuse an unusable proxy before anything is fetched or written."""
    if proxy is None:
        return
    try:
        url = httpx.URL(proxy)
    except httpx.InvalidURL as exc:
        raise InputError(f"malformed proxy URL: {exc}") from None
    if url.scheme.lower() not in PROXY_SCHEMES or not url.host:
        raise InputError(f"unsupported proxy {url.scheme}://...: use http://, https:// or socks5://HOST:PORT")


# With a proxy every connection goes to it, so any socket address in an error message is its.
_SOCKADDR = re.compile(r"\(\s*'[^']*'\s*,\s*\d+(?:\s*,\s*\d+){0,2}\s*\)")
PROXY_SHOWN = "<proxy>"


def redact_proxy(message: str, proxy: str | None) -> str:
    """`message` without the proxy's address, port or credentials: provenance records that a
    proxy was used, never where it is or how to log in to it (error messages reach the
    catalogue, the custody log and the output)."""
    if not proxy or not message:
        return message
    message = message.replace(proxy, PROXY_SHOWN)
    message = _SOCKADDR.sub(f"({PROXY_SHOWN})", message)
    secrets = set()
    try:
        url = httpx.URL(proxy)
    except httpx.InvalidURL:
        url = None
    if url is not None:
        host = url.host
        if url.port is not None:
            message = re.sub(rf"[\w.\-\[\]:]*:{url.port}(?!\d)", PROXY_SHOWN, message)
        secrets |= {host, f"[{host}]", url.username, url.password,
                    unquote(url.userinfo.decode("latin-1")) if url.userinfo else ""}
        raw = proxy.split("//", 1)[-1].rsplit("@", 1)
        if len(raw) == 2:  # the credentials as written (percent-encoded or not)
            secrets |= {raw[0], *raw[0].split(":", 1)}
    for secret in sorted((x for x in secrets if x), key=len, reverse=True):
        message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", PROXY_SHOWN, message)
    return message


_PROXY_AUTHORIZATION = re.compile(rb"(?im)^(proxy-authorization[ \t]*:)[^\r\n]*")


def redact_proxy_authorization(request_head: bytes) -> bytes:
    """A request as sent to an HTTP proxy carries its credentials (Proxy-Authorization): the
    request record keeps the header's name, never its value."""
    return _PROXY_AUTHORIZATION.sub(rb"\1 [withheld by evarchive: proxy credentials]", request_head)


def _proxy_pool(proxy: str, common: dict) -> httpcore.AsyncConnectionPool:
    url = httpx.URL(proxy)
    auth = (url.username, url.password) if url.username else None
    scheme = url.scheme.lower()
    if scheme in ("socks5", "socks5h"):
        # The proxy resolves host names (socks5h behaviour): no DNS query leaves this machine.
        target = httpcore.URL(scheme=b"socks5", host=url.raw_host, port=url.port, target=b"/")
        common = {k: v for k, v in common.items() if k != "keepalive_expiry"}
        return httpcore.AsyncSOCKSProxy(proxy_url=target, proxy_auth=auth, **common)
    if scheme in ("http", "https"):
        target = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=b"/")
        return httpcore.AsyncHTTPProxy(proxy_url=target, proxy_auth=auth, **common)
    raise InputError(f"unsupported proxy scheme {scheme!r}: use http://, https:// or socks5://")


class PerOriginTransport(httpx.AsyncBaseTransport):
    """Routes each request to the connection pool of its origin (scheme, host, port)."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._ssl: ssl.SSLContext | None = None
        self._backend = RecordingBackend(settings.resolve)
        self._pools: dict[tuple[bytes, bytes, int | None], httpx.AsyncHTTPTransport] = {}
        if settings.proxy:  # validate early: a bad proxy is a usage error, not 1000 failures
            self._new_pool(b"http")

    @property
    def ssl_context(self) -> ssl.SSLContext:
        # Loading the trust store costs tens of milliseconds: only runs that meet https pay it.
        if self._ssl is None:
            self._ssl = build_ssl_context(self._settings.insecure, self._settings.ca_file)
        return self._ssl

    def _new_pool(self, scheme: bytes) -> httpx.AsyncHTTPTransport:
        needs_tls = scheme == b"https" or (self._settings.proxy or "").startswith("https:")
        common = {"ssl_context": self.ssl_context if needs_tls else None,
                  "max_connections": self._settings.per_host,
                  "max_keepalive_connections": self._settings.per_host, "keepalive_expiry": 5.0,
                  "http1": True, "http2": False, "network_backend": self._backend}
        # httpx has no hook for a network backend, so its transport is only the shell that maps
        # httpcore's exceptions; the pool is the documented httpcore object. verify=False keeps
        # the shell from loading a trust store of its own.
        transport = httpx.AsyncHTTPTransport(verify=False, http1=True, http2=False)
        transport._pool = (_proxy_pool(self._settings.proxy, common) if self._settings.proxy
                           else httpcore.AsyncConnectionPool(**common))
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._new_pool(request.url.raw_scheme)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()


class _NoCookies(CookieJar):
    """A jar that never stores a cookie nor adds one to a request."""

    def extract_cookies(self, response: object, request: object) -> None:
        return None

    def add_cookie_header(self, request: object) -> None:
        return None


class HopByHopClient(httpx.AsyncClient):
    """Never judges a Location header: the caller follows redirects itself, hop by hop.

    httpx builds the next request even with follow_redirects=False, and raises on a Location it
    cannot build (``data:``, ``javascript:``), which would lose the redirect response itself: the
    caller decides what such a target means, with the response in hand."""

    def _build_redirect_request(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        try:
            return super()._build_redirect_request(request, response)
        except (httpx.InvalidURL, httpx.RemoteProtocolError):
            return None  # type: ignore[return-value]  # next_request is never used here


def build_client(settings: ClientSettings) -> httpx.AsyncClient:
    """An httpx client whose transport records wire bytes; redirects are followed by the caller."""
    timeout = httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                            write=settings.read_timeout, pool=None)
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
    return HopByHopClient(transport=PerOriginTransport(settings), headers=headers,
                          timeout=timeout, follow_redirects=False, trust_env=False,
                          cookies=_NoCookies())
