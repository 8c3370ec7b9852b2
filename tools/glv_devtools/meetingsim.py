"""A video-meeting platform on 127.0.0.1, for the demo and the tests. It plays the platform after a
session: it serves the session's recordings (video, audio, chat log) over HTTP, as the platform
declares them in its webhook, and reports the meeting to GLV's scheduler with that signed webhook.

    GET|HEAD /recordings/<token>/video.mp4 | audio.ogg | chat.json      (single byte ranges too)

Content is deterministic pseudo-random bytes per (room, kind), made on the fly from one 1 MiB
block: a 500 MB video is never held in memory. It can misbehave on purpose, per artifact (`Fault`):
a body far over the declared size, the wrong type, a body cut short, a wrong checksum, 404 for the
first N requests, a redirect, or a throttled body slow enough to kill its reader mid-download.

    python -m glv_devtools.meetingsim --port 8098 [--session ROOM_ID ...]

In a test:

    async with MeetingPlatform() as platform:   # a free port
        artifacts = platform.add_session(room_id, video_bytes=5 << 20, audio_bytes=1 << 20,
                                         faults={"video": Fault.late(2)})
        await report_meeting(scheduler_url, secret, room_id=room_id, started_at=..., ended_at=...,
                             attendance=[...], artifacts=artifacts)
        assert platform.gets("video", room_id) == 3
        assert plaintext_marker(room_id, "video") not in stored_bytes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import re
import secrets
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Literal, Protocol, get_args

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Send

# The scheduler's own signing and payload: what this sends is by construction what it verifies.
from glv_devtools.localserver import LocalHttpServer
from glv_scheduler.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, MeetingEnded, sign
from glv_schemas.events import Artifact, ArtifactKind, Attendance

WEBHOOK_PATH = "/v1/webhooks/meetings"  # glv_scheduler.api.webhook_routes

Role = Literal["officer", "stakeholder", "guest"]
FaultName = Literal["oversized", "wrong_type", "truncated", "bad_checksum", "late", "redirect_to", "slow"]

KINDS: tuple[ArtifactKind, ...] = get_args(ArtifactKind)
_FORMATS: dict[str, tuple[str, str]] = {  # kind -> (Content-Type, file extension)
    "video": ("video/mp4", "mp4"),
    "audio": ("audio/ogg", "ogg"),
    "chat": ("application/json", "json"),
}
# The first bytes of each block, so that a reader sniffing the content sees the declared type.
_MAGIC: dict[str, bytes] = {
    "video": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",  # an ISO BMFF ftyp box
    "audio": b"OggS\x00\x02",  # an Ogg page, beginning of stream
}
_BLOCK = 1 << 20  # the repeated unit of generated content
_RECORD = 4096  # the plaintext marker is repeated this often...
_MARKER_AT = 64  # ...at this offset in each record, clear of the magic bytes
_CHUNK = 64 * 1024  # what one send carries
_OVERSIZED_EXTRA = 16 << 20  # at least this much beyond the declared size


@dataclass(frozen=True)
class Fault:
    """How one artifact misbehaves. Build one with the class methods."""

    name: FaultName
    times: int = 0  # late: how many GETs get 404 first
    url: str | None = None  # redirect_to: the Location
    bytes_per_s: int = 0  # slow: the throttle
    extra_bytes: int | None = None  # oversized: served beyond the declared size (None: max(size, 16 MiB))

    @classmethod
    def oversized(cls, extra_bytes: int | None = None) -> Fault:
        """The declared size and checksum are right, but the body goes on far beyond them, in chunks
        without Content-Length."""
        return cls("oversized", extra_bytes=extra_bytes)

    @classmethod
    def wrong_type(cls) -> Fault:
        """The right bytes, served as text/html (a login page's type)."""
        return cls("wrong_type")

    @classmethod
    def truncated(cls) -> Fault:
        """Content-Length of the full body; the connection closes after half of it."""
        return cls("truncated")

    @classmethod
    def bad_checksum(cls) -> Fault:
        """The right bytes, but the declared sha256 is of other bytes."""
        return cls("bad_checksum")

    @classmethod
    def late(cls, times: int) -> Fault:
        """404 for the first `times` GETs (the recording is still being processed), then the artifact."""
        return cls("late", times=times)

    @classmethod
    def redirect_to(cls, url: str) -> Fault:
        """302 to `url`, every time."""
        return cls("redirect_to", url=url)

    @classmethod
    def slow(cls, bytes_per_s: int) -> Fault:
        """The right body, at most `bytes_per_s`: slow enough to kill its reader mid-download."""
        if bytes_per_s <= 0:
            raise ValueError("bytes_per_s must be positive")
        return cls("slow", bytes_per_s=bytes_per_s)


NO_FAULTS: Mapping[str, Fault] = MappingProxyType({})


@dataclass(frozen=True)
class ChatLine:
    at: datetime  # timezone-aware; written in UTC
    participant_ref: str
    role: Role
    name: str
    text: str


# --- content ----------------------------------------------------------------------------------


def _seed(room_id: str, kind: str, purpose: str = "content") -> bytes:
    return hashlib.sha256(f"glv-meetingsim\0{purpose}\0{room_id}\0{kind}".encode()).digest()


def plaintext_marker(room_id: str, kind: ArtifactKind) -> bytes:
    """32 ASCII bytes that the artifact's plaintext holds many times and nothing else holds: video and
    audio every 4 KiB, the default chat in every message. A test greps storage for it to show that
    only ciphertext was written."""
    return b"GLVSIM-" + _seed(room_id, kind, "marker").hex()[:25].encode()


class _Content(Protocol):
    @property
    def size(self) -> int: ...

    def chunks(self, start: int, end: int, chunk_size: int = _CHUNK) -> Iterator[memoryview]: ...


@functools.lru_cache(maxsize=4)
def _block(seed: bytes, magic: bytes, marker: bytes) -> bytes:
    data = bytearray(hashlib.shake_256(seed).digest(_BLOCK))
    data[: len(magic)] = magic
    if marker:
        for at in range(_MARKER_AT, _BLOCK - len(marker), _RECORD):
            data[at : at + len(marker)] = marker
    return bytes(data)


@dataclass(frozen=True)
class _Generated:
    """`size` bytes of one pseudo-random 1 MiB block, repeated: made as they are read."""

    seed: bytes
    size: int
    magic: bytes = b""
    marker: bytes = b""

    def chunks(self, start: int, end: int, chunk_size: int = _CHUNK) -> Iterator[memoryview]:
        block = memoryview(_block(self.seed, self.magic, self.marker))
        position, end = start, min(end, self.size)
        while position < end:
            offset = position % _BLOCK
            n = min(chunk_size, _BLOCK - offset, end - position)
            yield block[offset : offset + n]
            position += n


@dataclass(frozen=True)
class _Fixed:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def chunks(self, start: int, end: int, chunk_size: int = _CHUNK) -> Iterator[memoryview]:
        view = memoryview(self.data)
        for at in range(start, min(end, self.size), chunk_size):
            yield view[at : min(at + chunk_size, end)]


def _recording_of(room_id: str, kind: ArtifactKind, size: int) -> _Generated:
    return _Generated(_seed(room_id, kind), size, _MAGIC[kind], plaintext_marker(room_id, kind))


def _sha256(content: _Content) -> str:
    # Streamed over whole blocks: about 1 s for 500 MB, in a few MiB of memory.
    digest = hashlib.sha256()
    for chunk in content.chunks(0, content.size, _BLOCK):
        digest.update(chunk)
    return digest.hexdigest()


def default_chat(room_id: str, started_at: datetime) -> list[ChatLine]:
    """A few lines in Indonesian, one of them with HTML that a viewer must escape; each carries
    `plaintext_marker(room_id, "chat")`."""
    tag = plaintext_marker(room_id, "chat").decode()
    lines: list[tuple[int, Role, str, str]] = [
        (1, "officer", "Rina Wulandari", "Selamat pagi, Bapak. Saya petugas KPKNL yang menangani permohonan Anda."),
        (2, "stakeholder", "Budi Santoso", "Selamat pagi, Bu. Saya ingin menanyakan jadwal lelang aset saya."),
        (4, "officer", "Rina Wulandari", "Dokumen persyaratan sudah kami terima dan sedang diverifikasi."),
        (5, "guest", "Sari Dewi", "Saya mendampingi Pak Budi sebagai kuasa hukumnya."),
        (7, "stakeholder", "Budi Santoso", "<b>Terima kasih</b> <script>alert(1)</script> — dokumen asli dibawa?"),
        (9, "officer", "Rina Wulandari", "Ya, mohon dibawa saat pelaksanaan. Sesi ini kami akhiri, terima kasih."),
    ]
    return [
        ChatLine(started_at + timedelta(minutes=minute), f"{role}-1", role, name, f"{text} [{tag}]")
        for minute, role, name, text in lines
    ]


def chat_document(room_id: str, lines: list[ChatLine]) -> bytes:
    """The chat log as the platform serves it."""
    messages = []
    for line in lines:
        if line.at.utcoffset() is None:
            raise ValueError("chat times must be timezone-aware")
        messages.append(
            {
                "at": line.at.astimezone(UTC).isoformat(),
                "participant_ref": line.participant_ref,
                "role": line.role,
                "name": line.name,
                "text": line.text,
            }
        )
    return json.dumps({"room_id": room_id, "messages": messages}, ensure_ascii=False).encode()


# --- serving ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recording:
    room_id: str
    kind: ArtifactKind
    content: _Content
    fault: Fault | None


@dataclass(frozen=True)
class _Session:
    token: str
    recordings: dict[str, _Recording]  # by file name: "video.mp4", ...


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _Unsatisfiable(Exception):
    pass


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single byte range, or None for the whole body: a malformed header or several
    ranges may be ignored (RFC 9110 § 14.2). `_Unsatisfiable` when it lies beyond the body."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # a suffix: the last N bytes
        if int(last) == 0:
            raise _Unsatisfiable
        return max(0, size - int(last)), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _Unsatisfiable
    return start, (min(size, int(last) + 1) if last else size)


class _CutShort(StreamingResponse):
    """Ends without the body's last message: uvicorn then closes the connection, short of the
    Content-Length it sent (and logs "ASGI callable returned without completing response")."""

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


class MeetingPlatform(LocalHttpServer):
    """The platform. `async with` (or `start()`/`stop()`) runs it on the caller's event loop."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sessions: dict[str, _Session] = {}  # by room id
        self._rooms: dict[str, str] = {}  # token -> room id
        self._gets: Counter[tuple[str, str]] = Counter()  # (room id, kind)
        self._bytes: Counter[tuple[str, str]] = Counter()
        app = Starlette(routes=[Route("/recordings/{token}/{name}", self._recording, methods=["GET", "HEAD"])])
        # A throttled download would otherwise hold the shutdown for as long as it lasts.
        super().__init__(app, name="meetingsim", host=host, port=port, graceful_s=2)

    # --- sessions -----------------------------------------------------------------------------

    def add_session(
        self,
        room_id: str,
        *,
        video_bytes: int,
        audio_bytes: int,
        chat: list[ChatLine] | None = None,
        faults: Mapping[str, Fault] = NO_FAULTS,
        started_at: datetime | None = None,
    ) -> list[Artifact]:
        """Register a session's video, audio and chat; the artifacts as the platform declares them.

        `chat=None` is `default_chat(room_id, started_at)`, `started_at` defaulting to half an hour
        ago. Checksums are computed here, in about a second per 500 MB, blocking the loop."""
        if self.port == 0:
            raise RuntimeError("start the platform first: the artifacts' URLs need its port")
        if not room_id:
            raise ValueError("room_id must not be empty")
        if room_id in self._sessions:
            raise ValueError(f"room {room_id!r} already has a session")
        if video_bytes < 0 or audio_bytes < 0:
            raise ValueError("sizes must not be negative")
        if unknown := set(faults) - set(KINDS):
            raise ValueError(f"faults for unknown kinds: {sorted(unknown)}")
        if chat is None:
            start = started_at or datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
            chat = default_chat(room_id, start)
        contents: dict[ArtifactKind, _Content] = {
            "video": _recording_of(room_id, "video", video_bytes),
            "audio": _recording_of(room_id, "audio", audio_bytes),
            "chat": _Fixed(chat_document(room_id, chat)),
        }
        token = secrets.token_urlsafe(32)
        recordings: dict[str, _Recording] = {}
        artifacts: list[Artifact] = []
        for kind, content in contents.items():
            content_type, extension = _FORMATS[kind]
            fault = faults.get(kind)
            checksum = _sha256(content)
            if fault is not None and fault.name == "bad_checksum":
                checksum = hashlib.sha256(_seed(room_id, kind, "bad checksum")).hexdigest()
            name = f"{kind}.{extension}"
            recordings[name] = _Recording(room_id, kind, content, fault)
            artifacts.append(
                Artifact(
                    kind=kind,
                    url=f"{self.base_url}/recordings/{token}/{name}",
                    content_type=content_type,
                    size_bytes=content.size,
                    sha256=checksum,
                )
            )
        self._sessions[room_id] = _Session(token, recordings)
        self._rooms[token] = room_id
        return artifacts

    def remove_session(self, room_id: str) -> None:
        """The platform deletes the recordings: their URLs answer 404 from now on."""
        session = self._sessions.pop(room_id)
        del self._rooms[session.token]

    def gets(self, kind: ArtifactKind, room_id: str) -> int:
        """How many GETs the artifact had, whatever the answer (404s of `late` and redirects too)."""
        return self._gets[room_id, kind]

    def bytes_served(self, kind: ArtifactKind, room_id: str) -> int:
        """Body bytes handed to the server for the artifact, over all its GETs."""
        return self._bytes[room_id, kind]

    # --- the route ----------------------------------------------------------------------------

    async def _recording(self, request: Request) -> Response:
        room_id = self._rooms.get(request.path_params["token"])
        session = self._sessions.get(room_id) if room_id is not None else None
        recording = session.recordings.get(request.path_params["name"]) if session is not None else None
        if recording is None:
            return PlainTextResponse("Not Found", status_code=404)
        head = request.method == "HEAD"
        key = (recording.room_id, recording.kind)
        if not head:
            self._gets[key] += 1
        fault, content = recording.fault, recording.content
        # A HEAD answers as the next GET would, without using one up.
        upcoming = self._gets[key] + (1 if head else 0)
        if fault is not None and fault.name == "late" and upcoming <= fault.times:
            return PlainTextResponse("Recording is being processed", status_code=404)
        if fault is not None and fault.name == "redirect_to":
            assert fault.url is not None
            return RedirectResponse(fault.url, status_code=302)
        content_type = "text/html; charset=utf-8" if fault is not None and fault.name == "wrong_type" else None
        content_type = content_type or _FORMATS[recording.kind][0]

        if fault is not None and fault.name == "oversized":
            # Chunked, no Content-Length: only counting what arrives can stop the reader.
            extra = fault.extra_bytes if fault.extra_bytes is not None else max(content.size, _OVERSIZED_EXTRA)
            filler = _Generated(_seed(recording.room_id, recording.kind, "oversized"), extra)
            headers = {"Content-Type": content_type}
            if head:
                return StreamingResponse(iter(()), headers=headers)
            chunks = _chained(content.chunks(0, content.size), filler.chunks(0, extra))
            return StreamingResponse(self._body(key, chunks), headers=headers)

        headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
        try:
            requested = _byte_range(request.headers.get("range"), content.size)
        except _Unsatisfiable:
            headers["Content-Range"] = f"bytes */{content.size}"
            return Response(status_code=416, headers=headers)
        status, (start, end) = (200, (0, content.size)) if requested is None else (206, requested)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{content.size}"
        headers["Content-Length"] = str(end - start)
        if head:
            return Response(status_code=status, headers=headers)
        if fault is not None and fault.name == "truncated":
            half = content.chunks(start, start + (end - start) // 2)
            return _CutShort(self._body(key, half), status_code=status, headers=headers)
        rate = fault.bytes_per_s if fault is not None and fault.name == "slow" else None
        chunk_size = min(_CHUNK, max(1, rate // 8)) if rate else _CHUNK
        body = self._body(key, content.chunks(start, end, chunk_size), rate)
        return StreamingResponse(body, status_code=status, headers=headers)

    async def _body(
        self, key: tuple[str, str], chunks: Iterator[memoryview], bytes_per_s: int | None = None
    ) -> AsyncIterator[bytes]:
        # Starlette stops iterating when the reader disconnects: nothing is made for nobody.
        began, sent = time.monotonic(), 0
        for chunk in chunks:
            if bytes_per_s:
                await asyncio.sleep(max(0.0, began + (sent + len(chunk)) / bytes_per_s - time.monotonic()))
            sent += len(chunk)
            self._bytes[key] += len(chunk)
            yield bytes(chunk)


def _chained(*parts: Iterator[memoryview]) -> Iterator[memoryview]:
    for part in parts:
        yield from part


# --- reporting --------------------------------------------------------------------------------


async def report_meeting(
    scheduler_url: str,
    secret: bytes,
    *,
    room_id: str,
    started_at: datetime,
    ended_at: datetime,
    attendance: list[Attendance],
    artifacts: list[Artifact],
    delivery_id: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> int:
    """POST the signed MeetingEnded webhook to the scheduler (its base URL, or the webhook's full
    URL); the answer's status code. A new delivery id unless given: repeat one to send a duplicate."""
    report = MeetingEnded(
        delivery_id=delivery_id or f"meetingsim-{uuid.uuid4().hex}",
        room_id=room_id,
        started_at=started_at,
        ended_at=ended_at,
        attendance=attendance,
        artifacts=artifacts,
    )
    body = report.model_dump_json().encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    url = scheduler_url if scheduler_url.endswith(WEBHOOK_PATH) else scheduler_url.rstrip("/") + WEBHOOK_PATH
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        response = await client.post(url, content=body, headers=headers)
    return response.status_code


# --- command line -----------------------------------------------------------------------------


async def _serve_until_stopped(platform: MeetingPlatform, rooms: list[str], video_bytes: int) -> None:
    await platform.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, platform.request_stop)
    print(f"meetingsim: {platform.base_url}", file=sys.stderr, flush=True)
    for room_id in rooms:
        for artifact in platform.add_session(room_id, video_bytes=video_bytes, audio_bytes=video_bytes // 8):
            print(json.dumps({"room_id": room_id, **artifact.model_dump(mode="json")}), flush=True)
    await platform.wait_stopped()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glv_devtools.meetingsim", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098, help="0 picks a free port")
    parser.add_argument(
        "--session", metavar="ROOM_ID", action="append", default=[], help="serve a session; its artifacts go to stdout"
    )
    parser.add_argument("--video-bytes", type=int, default=8 << 20, help="each session's video size (audio: 1/8)")
    args = parser.parse_args(argv)
    platform = MeetingPlatform(host=args.host, port=args.port)
    asyncio.run(_serve_until_stopped(platform, args.session, args.video_bytes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
