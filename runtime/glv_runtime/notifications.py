"""LISTEN on a channel and set an event on each notification; reconnects on its own.

NOTIFY only shortens the wait: the woken loop also polls, which is what makes it
correct when a notification is lost (PostgreSQL restarted, the connection dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import asyncpg

# A DSN, or a function that opens a connection the way the service's pool does (TLS included).
Connect: TypeAlias = Callable[[], Awaitable["asyncpg.Connection[Any]"]]
DsnOrConnect: TypeAlias = str | Connect


async def connect(target: DsnOrConnect) -> asyncpg.Connection[Any]:
    return await (asyncpg.connect(target) if isinstance(target, str) else target())


async def listen(dsn: DsnOrConnect, channel: str, wake: asyncio.Event, stopping: asyncio.Event, retry_s: float) -> None:
    while not stopping.is_set():
        conn: asyncpg.Connection[Any] | None = None
        try:
            conn = await connect(dsn)
            await conn.add_listener(channel, lambda *_: wake.set())
            while not conn.is_closed() and not stopping.is_set():
                await asyncio.sleep(retry_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await asyncio.sleep(retry_s)
        finally:
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close()
