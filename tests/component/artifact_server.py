"""A small HTTP/1.1 server on 127.0.0.1 for the archive's fetch tests.

Raw asyncio rather than an ASGI app, so that a route can also misbehave the way a real
platform or network does: a body shorter than its Content-Length, a stall mid-body, a
connection closed before any answer. Every response closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names in lower case


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]

BLOCK = 64 * 1024


def blocks(total: int, block: int = BLOCK) -> Iterator[bytes]:
    """`total` bytes of deterministic content, `block` at a time (each block differs)."""
    pattern = bytes(range(256)) * (block // 256 + 1)
    sent, index = 0, 0
    while sent < total:
        size = min(block, total - sent)
        yield (index.to_bytes(8, "big") + pattern)[:size]
        sent += size
        index += 1


def sha256_of(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in {**headers, "Connection": "close"}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send(
    writer: asyncio.StreamWriter,
    status: int,
    headers: dict[str, str],
    body: bytes | Iterable[bytes] | AsyncIterable[bytes] = b"",
    *,
    chunked: bool = False,
) -> None:
    """A response; with chunked=True in chunked transfer coding (no Content-Length)."""
    if chunked:
        headers = {**headers, "Transfer-Encoding": "chunked"}
    writer.write(head(status, headers))
    parts: Iterable[bytes] | AsyncIterable[bytes] = [body] if isinstance(body, bytes) else body
    if isinstance(parts, AsyncIterable):
        async for part in parts:
            await _write(writer, part, chunked)
    else:
        for part in parts:
            await _write(writer, part, chunked)
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _write(writer: asyncio.StreamWriter, part: bytes, chunked: bool) -> None:
    if not part:
        return
    writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
    await writer.drain()


@dataclass
class ArtifactServer:
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def __aenter__(self) -> ArtifactServer:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Handlers that stall on purpose are still waiting: end them.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            handler = self.routes.get(request.path)
            if handler is None:
                await send(writer, 404, {"Content-Length": "0"})
            else:
                await handler(request, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    line, *header_lines = raw.decode("latin-1").split("\r\n")
    method, target, _version = line.split(" ", 2)
    path, _, query = target.partition("?")
    headers = {}
    for header in header_lines:
        if header:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
    return Request(method, path, query, headers)
