"""A recording network layer under httpx: the exact bytes sent and the response head received.

httpx hands us decoded data only. Evidence needs the request as it went on the wire and the
status line and headers as the server sent them, so evarchive plugs this backend into httpcore:
each stream copies what is written, and what is read until the end of the response head.
Body bytes are not copied here (they are streamed to disk by the capture engine via
``aiter_raw``, which gives them de-chunked and still content-encoded).

HTTP/1.1 without pipelining sends one request at a time per connection, so a write that follows
a read starts a new exchange on a kept-alive connection.

Because it sees every byte, this layer also guards the parser (h11) above it: it finds where
each response ends and poisons a connection that carried bytes beyond it (they must never be
read as the next capture's response); it names an answer without a status line (HTTP/0.9)
instead of letting it pass for a disconnect; and when Transfer-Encoding and Content-Length
conflict, it hands the parser the head without Content-Length (Transfer-Encoding governs, RFC
9112 section 6.3) while the evidence keeps the head exactly as received.
"""

from __future__ import annotations

import re
import ssl
import typing

import httpcore
import idna
from httpcore._backends.auto import AutoBackend
from httpcore._utils import is_socket_readable

HEAD_END = re.compile(rb"\n\r?\n")  # h11 also accepts bare LF line ends
MAX_HEAD = 256 * 1024  # a response head larger than this is not plausible; stop copying
MAX_CHUNK_LINE = 16 * 1024
SAMPLE = 64  # bytes of a surplus kept for the finding
_HTTP_REQUEST = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ ")


class NoStatusLine(httpcore.RemoteProtocolError):
    """The server answered with bytes that do not begin with an HTTP status line (HTTP/0.9)."""


class ResponseFraming:
    """Where the current response ends on the wire (RFC 9112 section 6.3), so that bytes after it
    are seen: fixed length, chunked, or unknown (read until close, tunnels: never surplus)."""

    def __init__(self, length: int | None = None, chunked: bool = False) -> None:
        self.left = length if length is not None else 0
        self.tracked = chunked or length is not None
        self.chunked = chunked
        self.state = "size" if chunked else "data"
        self.line = bytearray()
        self.done = self.tracked and not chunked and self.left == 0

    def feed(self, data: bytes) -> int:
        """Consume one read; returns how many of its bytes lie beyond the end of the response."""
        if not self.tracked:
            return 0
        pos, size = 0, len(data)
        while pos < size and not self.done:
            if self.state == "data":
                take = min(self.left, size - pos)
                pos += take
                self.left -= take
                if self.left == 0:
                    if not self.chunked:
                        self.done = True
                    else:
                        self.state, self.left = "crlf", 2
                continue
            if self.state == "crlf":
                take = min(self.left, size - pos)
                pos += take
                self.left -= take
                if self.left == 0:
                    self.state = "size"
                continue
            newline = data.find(b"\n", pos)
            stop = size if newline < 0 else newline + 1
            self.line += data[pos:stop]
            pos = stop
            if len(self.line) > MAX_CHUNK_LINE:
                self.tracked = False  # not chunked framing we understand: the parser decides
                return 0
            if newline >= 0:
                self._end_of_line(bytes(self.line).strip())
                self.line.clear()
                if not self.tracked:
                    return 0
        return size - pos if self.done else 0

    def _end_of_line(self, line: bytes) -> None:
        if self.state == "trailer":
            self.done = not line
            return
        try:
            self.left = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            self.tracked = False
            return
        self.state = "data" if self.left else "trailer"


def _header_values(head: bytes, name: bytes) -> list[bytes]:
    values = []
    for line in head.split(b"\n")[1:]:
        key, colon, value = line.partition(b":")
        if colon and key.strip().lower() == name:
            values.append(value.strip())
    return values


def _without_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\n")
    kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower() != name]
    return b"\n".join([lines[0], *kept])


class RecordingStream(httpcore.AsyncNetworkStream):
    """Wraps a network stream; keeps the current exchange's request bytes and response head.

    It also watches where each response ends. Bytes that arrive beyond the end of a response
    (a Content-Length shorter than what was sent) would otherwise be parsed as the answer to the
    next request on the kept-alive connection, so such a connection is poisoned: it reports
    itself readable (httpcore then closes it instead of reusing it) and refuses any further
    request. The surplus is kept for the exchange's findings.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream, connect_host: str, connect_port: int) -> None:
        self._inner = inner
        self.connect_host = connect_host
        self.connect_port = connect_port
        self.poisoned = False
        self._info_cache: dict[str, typing.Any] = {}
        self._new_exchange()

    def _new_exchange(self) -> None:
        self.request_bytes = bytearray()
        self.response_head = bytearray()
        self.findings: list[str] = []
        self.surplus = 0
        self.surplus_sample = b""
        self._head_complete = False
        self._reading = False
        self._pending = bytearray()  # head bytes read but not yet handed to the HTTP parser
        self._scan_from = 0  # the head's end is not before this offset of _pending
        self._framing = ResponseFraming()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self.poisoned:
            # httpcore retries the request on another connection when it sees this.
            raise httpcore.ConnectionNotAvailable()
        if self._reading:
            self._new_exchange()
        self.request_bytes += buffer
        await self._inner.write(buffer, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._reading = True
        if self._head_complete or not _HTTP_REQUEST.match(self.request_bytes):
            data = await self._inner.read(max_bytes, timeout)
            self._track(data)
            return data
        return await self._read_head(max_bytes, timeout)

    async def _read_head(self, max_bytes: int, timeout: float | None) -> bytes:
        # The whole head is gathered before the parser sees any of it (the parser waits for the
        # whole head anyway), so that its framing can be judged first.
        while True:
            released = self._take_head()
            if released is not None:
                return released
            data = await self._inner.read(max_bytes, timeout)
            if not data:
                self._head_complete = True
                released = bytes(self._pending)
                self._pending.clear()
                return released
            self._pending += data

    def _take_head(self) -> bytes | None:
        """The next complete head (and what follows it) for the parser; None: read more."""
        if not self._pending:
            return None
        start = bytes(self._pending[:5]).lstrip(b"\r\n")
        if start and not b"HTTP/".startswith(start[:5]):
            raise NoStatusLine(
                "the server answered without an HTTP status line (an HTTP/0.9-style response, "
                f"or not HTTP at all); its answer began {bytes(self._pending[:SAMPLE])!r}")
        match = HEAD_END.search(self._pending, self._scan_from)
        if match is None:
            if len(self._pending) <= MAX_HEAD:
                self._scan_from = max(0, len(self._pending) - 2)  # a head dripped byte by byte
                return None
            self.response_head = bytearray(self._pending)
            self._head_complete = True
            released = bytes(self._pending)
            self._pending.clear()
            return released
        head = bytes(self._pending[: match.end()])
        del self._pending[: match.end()]
        self._scan_from = 0
        if head[9:10] == b"1" and not head.startswith(b"HTTP/1.1 101"):
            return head  # informational (1xx): the final head follows
        self.response_head = bytearray(head)
        self._head_complete = True
        released = self._start_body(head)
        rest = bytes(self._pending)
        self._pending.clear()
        self._track(rest)
        return released + rest

    def _start_body(self, head: bytes) -> bytes:
        """Decide how the response body is framed; returns the head the parser is to see."""
        method = bytes(self.request_bytes).split(b" ", 1)[0].upper()
        try:
            status = int(head[9:12])
        except ValueError:
            return head
        if status == 101 or (method == b"CONNECT" and 200 <= status < 300):
            return head  # the connection becomes a tunnel
        if method == b"HEAD" or status in (204, 304) or status < 200:
            self._framing = ResponseFraming(length=0)
            return head
        encodings = _header_values(head, b"transfer-encoding")
        lengths = _header_values(head, b"content-length")
        if encodings:
            chunked = encodings[-1].lower().split(b",")[-1].strip() == b"chunked"
            if lengths:
                # RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length, and browsers
                # read such responses. The parser is handed the head without Content-Length
                # (an invalid one would make it refuse the response); the evidence keeps the
                # head as sent, and the conflict is a finding.
                shown = b", ".join(lengths).decode("latin-1")
                self.findings.append(
                    "conflicting framing headers: Transfer-Encoding: "
                    f"{b', '.join(encodings).decode('latin-1')} with Content-Length: {shown}; "
                    "the body was read by Transfer-Encoding, which governs (RFC 9112 section 6.3)")
                head = _without_header(head, b"content-length")
            self._framing = ResponseFraming(chunked=chunked)
            return head
        values = {v.strip() for value in lengths for v in value.split(b",")}
        if len(values) == 1:
            value = values.pop()
            if value.isdigit():
                self._framing = ResponseFraming(length=int(value))
        return head

    def _track(self, data: bytes) -> None:
        extra = self._framing.feed(data) if data else 0
        if extra:
            if not self.surplus:
                self.surplus_sample = bytes(data[len(data) - extra:][:SAMPLE])
            self.surplus += extra
            self.poisoned = True

    def exchange_findings(self) -> list[str]:
        """What was wrong on the wire in the current exchange, in words for the provenance."""
        found = list(self.findings)
        if self.surplus:
            found.append(
                f"the server sent at least {self.surplus} bytes beyond the end of this response "
                f"(as framed by its headers), beginning {self.surplus_sample!r}; they are not part "
                "of this capture, and the connection was closed and not reused")
        return found

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
            if self.poisoned:
                return True  # httpcore closes an idle connection that is readable
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
