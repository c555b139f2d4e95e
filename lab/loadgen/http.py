"""A lean HTTP/1.1 keep-alive client for the generator's hot path, and the HTTP operation.

Measured on this machine against the same server, one core: aiohttp's client tops out near 3 k
requests/s, which would make the generator the bottleneck; this client parses only the status
line, Content-Length / chunked framing and `Connection: close`, reuses prebuilt request bytes
and costs a fraction of that (see benchmarks/README.md). It speaks to our own servers, nginx
and the like; it is not a general-purpose client (no TLS, no redirects, no compression).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

from lab.loadgen.operation import CallResult

OK = CallResult()


class HttpError(Exception):
    """The server's answer could not be read as HTTP/1.1."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: Any = None  # asyncio's or uvloop's transport (not an asyncio.Transport subclass)
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self._try_complete(self.waiter)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("connection closed by the server"))

    def send(self, request: bytes, waiter: asyncio.Future[tuple[int, bool]]) -> None:
        assert self.transport is not None
        self.waiter = waiter
        self.transport.write(request)

    def _try_complete(self, waiter: asyncio.Future[tuple[int, bool]]) -> None:
        buffer = self.buffer
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        if not buffer.startswith(b"HTTP/1."):
            waiter.set_exception(HttpError("not an HTTP/1.x response"))
            return
        status = int(buffer[9:12])
        head = bytes(buffer[:head_end]).lower()
        body_start = head_end + 4
        length_at = head.find(b"\r\ncontent-length:")
        if length_at >= 0:
            line_end = head.find(b"\r\n", length_at + 2)
            length = int(head[length_at + 17 : line_end if line_end >= 0 else None])
            end = body_start + length
            if len(buffer) < end:
                return
        elif b"\r\ntransfer-encoding: chunked" in head:
            terminator = buffer.find(b"0\r\n\r\n", body_start)
            if terminator < 0:
                return
            end = terminator + 5
        elif status in (204, 304) or 100 <= status < 200:
            end = body_start
        else:
            waiter.set_exception(HttpError("response without Content-Length or chunked framing"))
            return
        keep_alive = b"\r\nconnection: close" not in head
        del buffer[:end]
        waiter.set_result((status, keep_alive))


class HttpClient:
    """A pool of keep-alive connections to one host:port, at most `connections` at once."""

    def __init__(self, url: str, connections: int = 64, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r}: only http://host[:port]/path URLs are supported")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.authority = parts.netloc
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)

    def build_request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
        """The bytes of one request, built once and sent many times."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.authority}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def send(self, request: bytes) -> int:
        """Send prebuilt request bytes; return the response status (the body is discarded)."""
        async with self._slots:
            connection = await self._connection()
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[tuple[int, bool]] = loop.create_future()
            timer = loop.call_later(self.timeout_s, _expire, waiter)
            try:
                connection.send(request, waiter)
                status, keep_alive = await waiter
            except BaseException:
                self._discard(connection)
                raise
            finally:
                timer.cancel()
            if keep_alive and not connection.closed:
                self._idle.append(connection)
            else:
                self._discard(connection)
            return status

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port), timeout=self.timeout_s
        )
        return protocol

    def _discard(self, connection: _Connection) -> None:
        connection.closed = True
        if connection.transport is not None:
            connection.transport.close()

    async def close(self) -> None:
        while self._idle:
            self._discard(self._idle.pop())


def _expire(waiter: asyncio.Future[tuple[int, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer in time"))


class HttpOperation:
    """One HTTP request per call; 2xx is ok, any other status is `http_<status>`."""

    def __init__(self, client: HttpClient, request: bytes, label: str) -> None:
        self.client = client
        self.request = request
        self.label = label
        self._ok = CallResult("ok", label)

    async def call(self, seq: int) -> CallResult:
        try:
            status = await self.client.send(self.request)
        except TimeoutError:
            return CallResult("timeout", self.label)
        except (ConnectionError, OSError):
            return CallResult("connection_error", self.label)
        except HttpError:
            return CallResult("protocol_error", self.label)
        return self._ok if 200 <= status < 300 else CallResult(f"http_{status}", self.label)

    def stats(self) -> dict[str, float]:
        return {}

    async def close(self) -> None:
        await self.client.close()


async def http_operation(params: dict[str, Any]) -> HttpOperation:
    """Factory for `lab.loadgen.http:http_operation`: url, method, body, headers, connections."""
    url = str(params["url"])
    client = HttpClient(
        url, connections=int(params.get("connections", 64)), timeout_s=float(params.get("timeout_s", 30))
    )
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = str(params.get("body", "")).encode()
    request = client.build_request(str(params.get("method", "GET")), path, body, params.get("headers"))
    return HttpOperation(client, request, str(params.get("label", "")))
