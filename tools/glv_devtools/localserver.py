"""An HTTP server on this machine for the dev tools (the gateway sink, the meeting-platform
simulator): started on the caller's event loop, on a port bound before uvicorn starts (port 0
gets a free one with no window for a race), stopped on request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: in a test the test's loop owns the signals, and
    a command line stops the server through `request_stop()`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalHttpServer:
    """Serves `app`; `async with` runs it on the caller's loop, `serve` lines up `start`,
    `request_stop` and `wait_stopped`."""

    def __init__(
        self, app: Starlette, *, name: str, host: str = "127.0.0.1", port: int = 0, graceful_s: int | None = None
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._name = name
        self._graceful_s = graceful_s
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=self._graceful_s
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=self._name)
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError(f"{self._name} stopped while starting")
            await asyncio.sleep(0.01)

    def request_stop(self) -> None:
        """Stop serving (after the requests in hand); `wait_stopped()` returns then."""
        if self._server is not None:
            self._server.should_exit = True

    async def wait_stopped(self) -> None:
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        self.request_stop()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)
        self._server = self._task = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
