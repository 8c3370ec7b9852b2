"""The archive on the real stack, with the meeting-platform simulator on 127.0.0.1 playing
the platform: helpers to hold sessions for real (a ticket filed, a slot assigned by the
scheduler, the platform's signed webhook) and to read what the archive stored."""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from glv_archive.app import build_spec
from glv_archive.keys import new_kek
from glv_archive.settings import ArchiveSettings
from glv_devtools.meetingsim import Fault, MeetingPlatform, report_meeting
from glv_devtools.portal import PortalClient, ticket
from glv_devtools.probe import Seen
from glv_runtime.service import RunningService
from glv_schemas.events import Attendance, SlotAssigned, TicketFiled
from tests.conftest import create_database, drop_database, free_port
from tests.infra import Infra
from tests.integration.conftest import Glv

LINK_SECRET = "archive-link-key-for-tests-0123456789abcdef"


def kek_setting(*pairs: tuple[str, str]) -> str:
    return json.dumps(dict(pairs))


def archive_settings(infra: Infra, database_url: str, prefix: str, root: Path, **more: Any) -> ArchiveSettings:
    key_id, key = new_kek()
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "consumer_group": f"{prefix}archive",
        "http_port": free_port(),
        "store_url": f"file://{root}",
        "keys": kek_setting((key_id, key)),
        "active_key_id": key_id,
        "link_secret": LINK_SECRET,
        "fetch_allowed_hosts": ["127.0.0.1"],
        "fetch_http_hosts": ["127.0.0.1"],
        "fetch_private_hosts": ["127.0.0.1"],
        "fetch_lease_s": 3.0,
        "fetch_backoff_s": 0.2,
        "fetch_max_attempts": 2,
        "late_recheck_s": 3600.0,
        "retry_backoff_s": 0.05,
        "relay_poll_interval_s": 0.2,
        "job_poll_interval_s": 0.2,
        "log_level": "WARNING",
    }
    return ArchiveSettings(**(values | more))


def settings_env(settings: ArchiveSettings) -> dict[str, str]:
    """The same settings as a process's environment (for a service run as a real process)."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "GLV_ENVIRONMENT": "development",
    }
    for name, dumped in settings.model_dump(mode="json").items():
        if name in {"kafka_bootstrap_servers", "environment"} or dumped is None:
            continue
        secret = getattr(settings, name)
        value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else dumped
        env[f"GLV_ARCHIVE_{name.upper()}"] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


@dataclass
class Archive:
    settings: ArchiveSettings
    service: RunningService | None

    @property
    def root(self) -> Path:
        return Path(self.settings.store_url.removeprefix("file://"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    async def connect(self) -> asyncpg.Connection[Any]:
        return await asyncpg.connect(self.settings.database_url.get_secret_value())

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        conn = await self.connect()
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def archive_database(infra: Infra) -> AsyncIterator[str]:
    url = await create_database(infra)
    try:
        yield url
    finally:
        await drop_database(infra, url)


@contextlib.asynccontextmanager
async def running_archive(glv: Glv, infra: Infra, tmp_path: Path, **more: Any) -> AsyncIterator[Archive]:
    """One archive service in this process, its own database and storage folder."""
    async with archive_database(infra) as url:
        root = tmp_path / "archive-store"
        settings = archive_settings(infra, url, glv.ticketing.prefix, root, **more)
        service = RunningService(build_spec(settings))
        await service.start()
        archive = Archive(settings, service)
        try:
            yield archive
        finally:
            if archive.service is not None:  # a test may have stopped it (service = None)
                await archive.service.stop()


def files_under(root: Path) -> dict[str, int]:
    """Every file under the storage root (staging files included), with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def holds(root: Path, needle: bytes) -> list[str]:
    """The files under root whose bytes contain `needle` (read in overlapping 1 MiB windows)."""
    found = []
    for path in (p for p in root.rglob("*") if p.is_file()):
        with path.open("rb") as f:
            tail = b""
            while chunk := f.read(1 << 20):
                if needle in tail + chunk:
                    found.append(str(path))
                    break
                tail = chunk[-len(needle) :]
    return found


async def file_and_place(glv: Glv, count: int, seed: int = 5) -> list[tuple[TicketFiled, SlotAssigned]]:
    """File tickets as a portal does and wait for the scheduler's slots."""
    rng = random.Random(seed)
    tickets = [ticket(rng, portal_id="sim-portal", office_code="JKT", service_code="lelang") for _ in range(count)]
    async with PortalClient(glv.ticketing.settings.kafka_bootstrap_servers, glv.ticketing.prefix) as portal:
        await portal.file(tickets)
    ids = {t.ticket_id for t in tickets}
    await glv.probe.wait_for(
        lambda seen: ids <= {s.event.ticket_id for s in seen if s.type == "glv.SlotAssigned.v1"}, 90
    )
    slots = {s.event.ticket_id: s.event for s in glv.probe.of_type("SlotAssigned") if s.event.ticket_id in ids}
    return [(t, slots[t.ticket_id]) for t in tickets]


async def hold(
    glv: Glv,
    platform: MeetingPlatform,
    slot: SlotAssigned,
    *,
    video_bytes: int = 3 << 20,
    audio_bytes: int = 1 << 20,
    faults: Mapping[str, Fault] | None = None,
) -> list[Any]:
    """The meeting is held on the platform, which reports it with its recordings."""
    ended = datetime.now(UTC).replace(microsecond=0)
    started = ended - timedelta(minutes=30)
    artifacts = platform.add_session(
        slot.meeting.room_id, video_bytes=video_bytes, audio_bytes=audio_bytes, faults=faults or {}, started_at=started
    )
    secret = glv.scheduler_settings.webhook_secrets[0].get_secret_value().encode()
    attendance = [
        Attendance(role="officer", participant_ref=slot.officer_id, joined_at=started),
        Attendance(role="stakeholder", participant_ref="stakeholder-1", joined_at=started),
    ]
    status = await report_meeting(
        glv.webhook_url,
        secret,
        room_id=slot.meeting.room_id,
        started_at=started,
        ended_at=ended,
        attendance=attendance,
        artifacts=artifacts,
    )
    assert status == 200, status
    return artifacts


def outcomes(glv: Glv, ticket_ids: set[uuid.UUID], *names: str) -> list[Seen]:
    return [
        s
        for s in glv.probe.seen
        if s.type and s.type.split(".")[1] in names and s.event.ticket_id in ticket_ids and "archive" in s.topic
    ]


async def wait_outcomes(glv: Glv, ticket_ids: set[uuid.UUID], timeout_s: float = 120) -> dict[uuid.UUID, Seen]:
    """Each ticket's first RecordingArchived or ArchiveFailed."""
    await glv.probe.wait_for(
        lambda _: (
            {s.event.ticket_id for s in outcomes(glv, ticket_ids, "RecordingArchived", "ArchiveFailed")} >= ticket_ids
        ),
        timeout_s,
    )
    first: dict[uuid.UUID, Seen] = {}
    for s in outcomes(glv, ticket_ids, "RecordingArchived", "ArchiveFailed"):
        first.setdefault(s.event.ticket_id, s)
    return first
