"""A small SOCKS5 proxy for the tests (RFC 1928 CONNECT, RFC 1929 username/password).

It forwards to loopback only: every requested (host, port) is looked up in ``routes`` (e.g.
``www.lrt.lt:443`` -> the local server's HTTPS port) and anything else is refused, so no test
traffic can leave the machine. ``requests`` records what clients asked for, which shows that
the host name travelled to the proxy (no DNS lookup on the client side).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import threading
from typing import Any


class Socks5Proxy:
    def __init__(self, routes: dict[tuple[str, int], tuple[str, int]],
                 credentials: tuple[str, str] | None = None) -> None:
        self.routes = routes
        self.credentials = credentials
        self.requests: list[tuple[str, int]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None

    def __enter__(self) -> Socks5Proxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"socks5://{auth}127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not await self._greet(reader, writer):
                return
            host, port = await self._read_request(reader)
            self.requests.append((host, port))
            target = self.routes.get((host, port))
            if target is None:
                writer.write(b"\x05\x02\x00\x01" + bytes(6))  # connection not allowed
                return
            up_reader, up_writer = await asyncio.open_connection(*target)
            writer.write(b"\x05\x00\x00\x01" + bytes(4) + struct.pack("!H", 0))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        wanted = 2 if self.credentials else 0
        if version != 5 or wanted not in methods:
            writer.write(b"\x05\xff")
            return False
        writer.write(bytes([5, wanted]))
        if not self.credentials:
            return True
        _ver, ulen = await reader.readexactly(2)
        user = (await reader.readexactly(ulen)).decode()
        plen = (await reader.readexactly(1))[0]
        password = (await reader.readexactly(plen)).decode()
        ok = (user, password) == self.credentials
        writer.write(b"\x01\x00" if ok else b"\x01\x01")
        return ok

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, int]:
        _ver, _cmd, _rsv, kind = await reader.readexactly(4)
        if kind == 3:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("ascii")
        elif kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        else:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        return host, port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
