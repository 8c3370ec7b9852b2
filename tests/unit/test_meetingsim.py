"""The meeting-platform simulator: its recordings match what it declares, each fault misbehaves as
the archive's tests expect, a large recording streams in little memory, and its webhook is one the
scheduler accepts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from glv_devtools.meetingsim import (
    WEBHOOK_PATH,
    ChatLine,
    Fault,
    MeetingPlatform,
    plaintext_marker,
    report_meeting,
)
from glv_scheduler.webhooks import MeetingEnded, parse_meeting_ended, verify
from glv_schemas.events import Artifact, Attendance

ROOM = "glv-room-0123456789abcdefghijk"  # the scheduler wants 22+ characters
SECRET = b"meetingsim-webhook-secret-0123456789"
STARTED = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
async def platform() -> AsyncIterator[MeetingPlatform]:
    async with MeetingPlatform() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def by_kind(artifacts: list[Artifact]) -> dict[str, Artifact]:
    return {artifact.kind: artifact for artifact in artifacts}


async def test_artifacts_are_what_the_platform_declares(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    artifacts = platform.add_session(ROOM, video_bytes=3 << 20, audio_bytes=100_000, started_at=STARTED)
    assert [a.kind for a in artifacts] == ["video", "audio", "chat"]
    for artifact in artifacts:
        url = str(artifact.url)
        assert url.startswith(f"{platform.base_url}/recordings/")
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == artifact.content_type
        assert int(response.headers["content-length"]) == artifact.size_bytes == len(response.content)
        assert hashlib.sha256(response.content).hexdigest() == artifact.sha256
        assert platform.gets(artifact.kind, ROOM) == 1
        assert platform.bytes_served(artifact.kind, ROOM) == artifact.size_bytes
    declared = by_kind(artifacts)
    assert (declared["video"].content_type, declared["audio"].content_type) == ("video/mp4", "audio/ogg")
    assert str(declared["video"].url).endswith("/video.mp4")


async def test_content_is_deterministic_per_room_and_kind(client: httpx.AsyncClient) -> None:
    async with MeetingPlatform() as one, MeetingPlatform() as two:
        first = by_kind(one.add_session(ROOM, video_bytes=5000, audio_bytes=5000, started_at=STARTED))
        again = by_kind(two.add_session(ROOM, video_bytes=5000, audio_bytes=5000, started_at=STARTED))
        other = by_kind(two.add_session(ROOM + "x", video_bytes=5000, audio_bytes=5000, started_at=STARTED))
    assert {k: a.sha256 for k, a in first.items()} == {k: a.sha256 for k, a in again.items()}
    assert first["video"].sha256 != first["audio"].sha256
    assert first["video"].sha256 != other["video"].sha256
    # Unguessable: the same room on another platform run gets another token.
    assert str(first["video"].url).split("/")[-2] != str(again["video"].url).split("/")[-2]


async def test_plaintext_marker_recurs_in_the_plaintext(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    artifacts = by_kind(platform.add_session(ROOM, video_bytes=2 << 20, audio_bytes=64 * 1024))
    video = (await client.get(str(artifacts["video"].url))).content
    audio = (await client.get(str(artifacts["audio"].url))).content
    chat = (await client.get(str(artifacts["chat"].url))).content
    marker = plaintext_marker(ROOM, "video")
    assert len(marker) >= 16
    assert video.count(marker) >= (2 << 20) // 4096 - 1
    assert audio.count(plaintext_marker(ROOM, "audio")) >= 15 and marker not in audio
    assert chat.count(plaintext_marker(ROOM, "chat")) == len(json.loads(chat)["messages"])
    assert video.startswith(b"\x00\x00\x00\x20ftyp") and audio.startswith(b"OggS")


async def test_default_chat_is_indonesian_json_with_html_to_escape(
    platform: MeetingPlatform, client: httpx.AsyncClient
) -> None:
    chat = by_kind(platform.add_session(ROOM, video_bytes=10, audio_bytes=10, started_at=STARTED))["chat"]
    document = (await client.get(str(chat.url))).json()
    assert document["room_id"] == ROOM
    messages = document["messages"]
    assert len(messages) >= 3
    assert {m["role"] for m in messages} == {"officer", "stakeholder", "guest"}
    assert set(messages[0]) == {"at", "participant_ref", "role", "name", "text"}
    assert all(datetime.fromisoformat(m["at"]).utcoffset() == timedelta(0) for m in messages)
    assert datetime.fromisoformat(messages[0]["at"]) > STARTED
    assert any("<script>alert(1)</script>" in m["text"] for m in messages)
    assert any("Selamat pagi" in m["text"] for m in messages)


async def test_a_given_chat_is_served_as_given(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    lines = [ChatLine(STARTED, "stakeholder-9", "stakeholder", "Ani", "Halo — apa kabar?")]
    chat = by_kind(platform.add_session(ROOM, video_bytes=0, audio_bytes=0, chat=lines))["chat"]
    response = await client.get(str(chat.url))
    assert response.json() == {
        "room_id": ROOM,
        "messages": [
            {
                "at": "2026-12-01T02:00:00+00:00",
                "participant_ref": "stakeholder-9",
                "role": "stakeholder",
                "name": "Ani",
                "text": "Halo — apa kabar?",
            }
        ],
    }
    assert hashlib.sha256(response.content).hexdigest() == chat.sha256


async def test_unknown_and_removed_recordings_are_404(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    video = by_kind(platform.add_session(ROOM, video_bytes=10, audio_bytes=10))["video"]
    assert (await client.get(f"{platform.base_url}/recordings/guess/video.mp4")).status_code == 404
    assert (await client.get(str(video.url).replace("video.mp4", "video.ogg"))).status_code == 404
    with pytest.raises(ValueError, match="already"):
        platform.add_session(ROOM, video_bytes=10, audio_bytes=10)
    platform.remove_session(ROOM)
    assert (await client.get(str(video.url))).status_code == 404


async def test_head_and_byte_ranges(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    video = by_kind(platform.add_session(ROOM, video_bytes=(1 << 20) + 500, audio_bytes=10))["video"]
    url = str(video.url)
    whole = (await client.get(url)).content
    head = await client.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == video.size_bytes
    assert head.headers["accept-ranges"] == "bytes"
    # Across the block boundary, and a suffix.
    part = await client.get(url, headers={"Range": "bytes=1048000-1048999"})
    assert part.status_code == 206 and part.content == whole[1048000:1049000]
    assert part.headers["content-range"] == f"bytes 1048000-1048999/{video.size_bytes}"
    tail = await client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole[-100:]
    beyond = await client.get(url, headers={"Range": f"bytes={video.size_bytes}-"})
    assert beyond.status_code == 416
    assert platform.gets("video", ROOM) == 4  # HEAD is not a GET


# ---------------------------------------------------------------------- faults ->


async def test_late_answers_404_first(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    audio = by_kind(platform.add_session(ROOM, video_bytes=10, audio_bytes=1000, faults={"audio": Fault.late(2)}))[
        "audio"
    ]
    statuses = [(await client.get(str(audio.url))).status_code for _ in range(3)]
    assert statuses == [404, 404, 200]
    assert platform.gets("audio", ROOM) == 3
    assert platform.gets("video", ROOM) == 0


async def test_redirect(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    target = "http://169.254.169.254/latest/meta-data/"
    video = by_kind(
        platform.add_session(ROOM, video_bytes=10, audio_bytes=10, faults={"video": Fault.redirect_to(target)})
    )["video"]
    response = await client.get(str(video.url))
    assert response.status_code == 302 and response.headers["location"] == target


async def test_wrong_type(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    video = by_kind(platform.add_session(ROOM, video_bytes=5000, audio_bytes=10, faults={"video": Fault.wrong_type()}))[
        "video"
    ]
    response = await client.get(str(video.url))
    assert video.content_type == "video/mp4"
    assert response.headers["content-type"].startswith("text/html")
    assert hashlib.sha256(response.content).hexdigest() == video.sha256


async def test_bad_checksum(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    chat = by_kind(platform.add_session(ROOM, video_bytes=10, audio_bytes=10, faults={"chat": Fault.bad_checksum()}))[
        "chat"
    ]
    response = await client.get(str(chat.url))
    assert len(response.content) == chat.size_bytes
    assert chat.sha256 is not None and hashlib.sha256(response.content).hexdigest() != chat.sha256


async def test_oversized_goes_far_past_the_declared_size_without_a_length(
    platform: MeetingPlatform, client: httpx.AsyncClient
) -> None:
    video = by_kind(platform.add_session(ROOM, video_bytes=1000, audio_bytes=10, faults={"video": Fault.oversized()}))[
        "video"
    ]
    assert video.size_bytes == 1000
    received = 0
    async with client.stream("GET", str(video.url)) as response:
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > 4 << 20:
                break  # what a careful reader does, far later than it should
    assert received > 4 << 20


async def test_truncated_closes_after_half(platform: MeetingPlatform, client: httpx.AsyncClient) -> None:
    size = 600_000
    video = by_kind(platform.add_session(ROOM, video_bytes=size, audio_bytes=10, faults={"video": Fault.truncated()}))[
        "video"
    ]
    received = 0
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("GET", str(video.url)) as response:
            assert int(response.headers["content-length"]) == size
            async for chunk in response.aiter_raw():
                received += len(chunk)
    assert received == size // 2


async def test_slow_is_throttled_and_stops_when_the_reader_goes(
    platform: MeetingPlatform, client: httpx.AsyncClient
) -> None:
    rate = 200_000
    video = by_kind(
        platform.add_session(ROOM, video_bytes=10 << 20, audio_bytes=10, faults={"video": Fault.slow(rate)})
    )["video"]
    received, began = 0, time.monotonic()
    async with client.stream("GET", str(video.url)) as response:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if time.monotonic() - began > 0.5:
                break
    elapsed = time.monotonic() - began
    assert 0 < received <= rate * elapsed + 64 * 1024
    await asyncio.sleep(0.3)
    served = platform.bytes_served("video", ROOM)
    await asyncio.sleep(0.5)
    assert platform.bytes_served("video", ROOM) == served < video.size_bytes


def test_faults_only_for_known_kinds() -> None:
    platform = MeetingPlatform(port=1)  # never started: add_session needs no server
    with pytest.raises(ValueError, match="unknown kinds"):
        platform.add_session(ROOM, video_bytes=1, audio_bytes=1, faults={"screen": Fault.truncated()})


# ---------------------------------------------------------------------- memory ->


async def test_a_300_mb_recording_streams_in_little_memory(
    platform: MeetingPlatform, client: httpx.AsyncClient
) -> None:
    size = 300 * 1000 * 1000
    tracemalloc.start()
    try:
        video = by_kind(platform.add_session(ROOM, video_bytes=size, audio_bytes=10))["video"]
        digest, received = hashlib.sha256(), 0
        async with client.stream("GET", str(video.url)) as response:
            async for chunk in response.aiter_raw():
                digest.update(chunk)
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size and digest.hexdigest() == video.sha256
    assert peak < 10 << 20, f"peak {peak} bytes"


# ------------------------------------------------------------------- reporting ->


async def test_report_meeting_sends_what_the_scheduler_verifies() -> None:
    received: list[MeetingEnded] = []

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        verify(SECRET, request.headers, body, datetime.now(UTC))  # raises if unsigned or stale
        received.append(parse_meeting_ended(body))
        return JSONResponse({"status": "recorded"}, status_code=200)

    scheduler = Starlette(routes=[Route(WEBHOOK_PATH, webhook, methods=["POST"])])
    artifacts = MeetingPlatform(port=1).add_session(ROOM, video_bytes=10, audio_bytes=10)
    attendance = [
        Attendance(role="officer", participant_ref="officer-1", joined_at=STARTED),
        Attendance(role="stakeholder", participant_ref="stakeholder-1", joined_at=STARTED + timedelta(minutes=1)),
    ]
    transport = httpx.ASGITransport(app=scheduler)
    async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as http:
        status = await report_meeting(
            "http://scheduler/",
            SECRET,
            room_id=ROOM,
            started_at=STARTED,
            ended_at=STARTED + timedelta(minutes=30),
            attendance=attendance,
            artifacts=artifacts,
            delivery_id="delivery-1",
            client=http,
        )
        assert status == 200
        assert (
            await report_meeting(
                f"http://scheduler{WEBHOOK_PATH}",
                SECRET,
                room_id=ROOM,
                started_at=STARTED,
                ended_at=STARTED + timedelta(minutes=30),
                attendance=attendance,
                artifacts=artifacts,
                client=http,
            )
            == 200
        )
    first, second = received
    assert first.delivery_id == "delivery-1" and second.delivery_id != "delivery-1"
    assert first.room_id == ROOM and first.attendance == attendance and first.artifacts == artifacts


async def test_report_meeting_over_the_network() -> None:
    # A real POST: a wrong secret is refused by the same check the scheduler makes.
    statuses: list[int] = []

    async def webhook(request: Request) -> JSONResponse:
        try:
            verify(SECRET, request.headers, await request.body(), datetime.now(UTC))
        except Exception:
            statuses.append(401)
            return JSONResponse({"error": "bad_signature"}, status_code=401)
        statuses.append(200)
        return JSONResponse({"status": "recorded"})

    async def report(url: str, secret: bytes) -> int:
        ended = STARTED + timedelta(minutes=5)
        return await report_meeting(
            url, secret, room_id=ROOM, started_at=STARTED, ended_at=ended, attendance=[], artifacts=[]
        )

    # Served by the platform's own server, for want of a scheduler in a unit test.
    async with MeetingPlatform() as platform:
        platform.app.router.routes.append(Route(WEBHOOK_PATH, webhook, methods=["POST"]))
        assert await report(platform.base_url, SECRET) == 200
        assert await report(platform.base_url, b"another-secret") == 401
    assert statuses == [200, 401]
