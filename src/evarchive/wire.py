"""A recording network layer under httpx: the exact bytes sent and the response head received.

httpx hands us decoded data only. Evidence needs the request as it went on the wire and the
status line and headers as the server sent them, so evarchive plugs this backend into httpcore:
each stream copies what is written, and what is read until the end of the response head.
Body bytes are not copied here (they are streamed to disk by the capture engine via
``aiter_raw``, which gives them de-chunked and still content-encoded).

HTTP/1.1 without pipelining sends one request at a time per connection, so a write that follows
a read starts a new exchange on a kept-alive connection.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import idna
from httpcore._backends.auto import AutoBackend
from httpcore._utils import is_socket_readable

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 256 * 1024  # a response head larger than this is not plausible; stop copying


class RecordingStream(httpcore.AsyncNetworkStream):
    """Wraps a network stream; keeps the current exchange's request bytes and response head."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, connect_host: str, connect_port: int) -> None:
        self._inner = inner
        self.connect_host = connect_host
        self.connect_port = connect_port
        self.request_bytes = bytearray()
        self.response_head = bytearray()
        self._head_complete = False
        self._reading = False
        self._scan_from = 0
        self._info_cache: dict[str, typing.Any] = {}

    def _new_exchange(self) -> None:
        self.request_bytes = bytearray()
        self.response_head = bytearray()
        self._head_complete = False
        self._reading = False
        self._scan_from = 0

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._reading:
            self._new_exchange()
        self.request_bytes += buffer
        await self._inner.write(buffer, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        self._reading = True
        if not self._head_complete and data:
            self._copy_head(data)
        return data

    def _copy_head(self, data: bytes) -> None:
        self.response_head += data
        end = self.response_head.find(HEAD_END, max(0, self._scan_from - 3))
        if end >= 0:
            # Informational 1xx heads precede the real one; keep scanning past them.
            head = bytes(self.response_head[: end + 4])
            if head[9:10] == b"1" and not head.startswith(b"HTTP/1.1 101"):
                del self.response_head[: end + 4]
                self._scan_from = 0
                if self.response_head:
                    rest = bytes(self.response_head)
                    self.response_head = bytearray()
                    self._copy_head(rest)
                return
            del self.response_head[end + 4:]
            self._head_complete = True
        elif len(self.response_head) > MAX_HEAD:
            self._head_complete = True
        else:
            self._scan_from = len(self.response_head)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        # After TLS starts (directly, or after a proxy's CONNECT) the exchange begins afresh:
        # what we record is the plaintext inside the tunnel.
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return RecordingStream(tls, self.connect_host, self.connect_port)

    def get_extra_info(self, info: str) -> typing.Any:
        # anyio rebuilds a dict of attributes on every lookup, and httpcore asks "is_readable"
        # of every pooled connection for every request: cache what cannot change.
        if info == "is_readable":
            sock = self.get_extra_info("socket")
            return sock is not None and is_socket_readable(sock)
        if info not in self._info_cache:
            self._info_cache[info] = self._inner.get_extra_info(info)
        return self._info_cache[info]


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Opens recording streams; ``resolve`` maps a host name to a fixed (ip, port).

    The mapping is the capture layer's own equivalent of curl's ``--resolve``: tests and
    researchers can point a host at another address without touching the system's hosts file,
    while the Host header, SNI and certificate check still use the original name.
    """

    def __init__(self, resolve: dict[str, tuple[str, int]] | None = None) -> None:
        self._inner = AutoBackend()
        # httpcore hands us the IDNA (ASCII) form of the host; accept either spelling.
        self._resolve = {_ascii_host(k): v for k, v in (resolve or {}).items()}

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        target_host, target_port = self._resolve.get(host.lower(), (host, port))
        stream = await self._inner.connect_tcp(target_host, target_port, timeout=timeout,
                                               local_address=local_address,
                                               socket_options=socket_options)
        return RecordingStream(stream, target_host, target_port)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for captures")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _ascii_host(host: str) -> str:
    host = host.rstrip(".").lower()
    return host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")


def find_recording(stream: typing.Any) -> RecordingStream | None:
    """The recording stream behind a response's ``network_stream`` extension, if any."""
    return stream if isinstance(stream, RecordingStream) else None
