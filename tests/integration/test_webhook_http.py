"""The meeting webhook on a real HTTP server (uvicorn on 127.0.0.1, the runtime's app) and a
real PostgreSQL: size refused before the body is read, signature before any parsing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glv_devtools.portal import accepted_for, ticket
from glv_runtime.http import build_http_app
from glv_runtime.unit_of_work import Database
from glv_scheduler.api import webhook_routes
from glv_scheduler.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import free_port
from tests.integration.conftest import tiny_catalog
from tests.integration.scheduler_use_case import apply, published_since, scheduler_database, use_case_at

SECRET = b"Zr8kQ2vWx5nT9bLm3cYh7pJd1sGf4aEu"
LIMIT = 256 * 1024
PATH = "/v1/webhooks/meetings"


class BodyMeter:
    """ASGI middleware: how many body bytes the application was handed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[int]:
    """The app under uvicorn on 127.0.0.1, configured as the services run it; its port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def db(scheduler_database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with scheduler_database(scheduler_database_url, tiny_catalog(tmp_path / "tiny.yaml")) as database:
        yield database


@pytest.fixture
async def server(db: Database) -> AsyncIterator[tuple[int, BodyMeter]]:
    meter = BodyMeter(build_http_app({}, webhook_routes(db, [SecretStr(SECRET.decode())], max_body_bytes=LIMIT)))
    async with serving(meter) as port:
        yield port, meter


def signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    stamp = int(time.time())
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(secret, stamp, body)}


async def _exchange(port: int, head: bytes, body_parts: AsyncIterator[bytes]) -> tuple[bytes, int]:
    """Send a request by hand, body as it comes, until the server answers; (answer, body bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    answer = asyncio.ensure_future(reader.read(4096))
    try:
        writer.write(head)
        async for part in body_parts:
            if answer.done():
                break
            writer.write(part)
            drained = asyncio.ensure_future(writer.drain())
            await asyncio.wait({drained, answer}, return_when=asyncio.FIRST_COMPLETED, timeout=10)
            if not drained.done():
                drained.cancel()  # the server stopped reading: it answered, or it hangs (the test fails)
                break
            if drained.exception() is not None:
                break  # the server closed the connection
            sent += len(part)
        return await asyncio.wait_for(answer, 10), sent
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""


async def _chunked(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    chunk = b"x" * size
    for _ in range(total // size):
        yield b"%x\r\n" % size + chunk + b"\r\n"
    yield b"0\r\n\r\n"


HUGE = 1 << 30  # 1 GiB: the server must never want to see it


async def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(
    server: tuple[int, BodyMeter],
) -> None:
    port, meter = server
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {HUGE}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed(b"").items()) + "\r\n"
    ).encode()
    # Only the headers go: a server that waited for the body would never answer.
    answer, _ = await _exchange(port, head, _nothing())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert meter.received == 0


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server: tuple[int, BodyMeter]) -> None:
    port, meter = server
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed(b"").items()) + "\r\n"
    ).encode()
    answer, sent = await _exchange(port, head, _chunked(HUGE))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The application read one chunk past the limit at most; the sender was stopped early
    # (what it got out sat in socket buffers at most, never in the server).
    assert meter.received <= LIMIT + 64 * 1024
    assert sent < 64 * 1024 * 1024, f"the server let {sent} bytes in before answering"
    print(f"chunked: the application read {meter.received} bytes, the sender got {sent} out before the 413")


async def test_a_bad_signature_is_refused_before_the_body_is_parsed(server: tuple[int, BodyMeter]) -> None:
    port, _ = server
    not_json = b"\x00\xff this is not JSON {{{"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        wrong_key = await client.post(
            PATH, content=not_json, headers=signed(not_json, b"Another-Key-9f8e7d6c5b4a3210zyxw")
        )
        unsigned = await client.post(PATH, content=not_json)
        # The same bytes, correctly signed, reach the parser: which is what says "not JSON".
        right_key = await client.post(PATH, content=not_json, headers=signed(not_json))
    assert (wrong_key.status_code, wrong_key.json()) == (401, {"error": "bad_signature"})
    assert (unsigned.status_code, unsigned.json()) == (401, {"error": "missing_timestamp"})
    assert right_key.status_code == 400
    assert right_key.json()["problems"] == ["<root>: json_invalid"]


async def test_a_signed_report_is_recorded(db: Database, server: tuple[int, BodyMeter]) -> None:
    port, _ = server
    now = datetime.now(UTC)
    filed = ticket(random.Random(7), portal_id="sim-portal", office_code="TNY", service_code="lelang", now=now)
    [(kind, assigned)] = await apply(
        db,
        use_case_at(lambda: now),
        accepted_for(filed.model_copy(update={"preferred_windows": []}), "TNY-261201-0001"),
    )
    assert kind == "SlotAssigned"
    starts = datetime.fromisoformat(assigned["starts_at"])
    report: dict[str, Any] = {
        "delivery_id": "delivery-1",
        "room_id": assigned["meeting"]["room_id"],
        "started_at": starts.isoformat(),
        "ended_at": (starts + timedelta(minutes=40)).isoformat(),
        "attendance": [
            {"role": "officer", "participant_ref": "TNY-01", "joined_at": starts.isoformat()},
            {
                "role": "stakeholder",
                "participant_ref": filed.stakeholder.stakeholder_ref,
                "joined_at": starts.isoformat(),
            },
        ],
        "artifacts": [],
    }
    body = json.dumps(report).encode()
    last = await db.pool.fetchval("SELECT coalesce(max(id), 0) FROM glv_outbox")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        first = await client.post(PATH, content=body, headers=signed(body))
        again = await client.post(PATH, content=body, headers=signed(body))
    assert (first.status_code, first.json()) == (200, {"status": "recorded", "events": 1})
    assert again.json() == {"status": "duplicate"}
    assert [kind for kind, _ in await published_since(db, last)] == ["SessionHeld"]
