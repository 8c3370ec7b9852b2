"""The archive's part of `make demo`: a meeting platform on 127.0.0.1 holds a few sessions, the
scheduler hears of them by its signed webhook, the archive fetches and encrypts their recordings;
then one signed link is issued and downloaded, and the storage folder is searched for plaintext."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from glv_archive.__main__ import issue_link
from glv_archive.app import parts
from glv_archive.keys import new_kek
from glv_archive.settings import ArchiveSettings
from glv_devtools.meetingsim import KINDS, MeetingPlatform, plaintext_marker, report_meeting
from glv_devtools.probe import EventProbe, Seen
from glv_schemas.events import Artifact, Attendance, SlotAssigned, TicketFiled
from glv_schemas.topics import ARCHIVE_EVENTS

MIB = 1 << 20
SESSIONS = 6
VIDEO_BYTES = 8 * MIB
AUDIO_BYTES = 2 * MIB
RECORDINGS = f"{VIDEO_BYTES // MIB} MiB video, {AUDIO_BYTES // MIB} MiB audio and a chat"
OUTCOME_TIMEOUT_S = 180.0
ARCHIVED = "glv.RecordingArchived.v1"
FAILED = ("glv.ArchiveFailed.v1", "glv.ArchiveFailed.v2")
# Who the demo's download link is for and who issues it: the audit names both.
RECIPIENT = "officer-demo"
ISSUER = "demo"
LINK_TTL_S = 3600


def store_folder(run: str) -> Path:
    """The run's own storage folder, beside the demo's mail folder."""
    return Path(os.environ.get("GLV_STATE_DIR", "/var/tmp/glv")) / "demo-archive" / run


def remove_store(folder: Path) -> None:
    """The run's folder, and the folder of all runs' folders once no other run has one."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


def archive_environment(folder: Path) -> dict[str, str]:
    """The archive's settings for this run: a fresh key-encryption key and link secret, its own
    folder, and fetching over plain http from the simulator on loopback (development only)."""
    key_id, key = new_kek()
    loopback = json.dumps(["127.0.0.1"])
    port = os.environ.get("GLV_ARCHIVE_HTTP_PORT", "8084")
    return {
        "GLV_ARCHIVE_STORE_URL": folder.as_uri(),
        "GLV_ARCHIVE_KEYS": json.dumps({key_id: key}),
        "GLV_ARCHIVE_ACTIVE_KEY_ID": key_id,
        "GLV_ARCHIVE_LINK_SECRET": secrets.token_urlsafe(32),
        "GLV_ARCHIVE_FETCH_ALLOWED_HOSTS": loopback,
        "GLV_ARCHIVE_FETCH_HTTP_HOSTS": loopback,
        "GLV_ARCHIVE_FETCH_PRIVATE_HOSTS": loopback,
        "GLV_ARCHIVE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }


def archive_topic(prefix: str) -> str:
    return prefix + ARCHIVE_EVENTS.name


@dataclass(frozen=True)
class Held:
    """A session the platform held and reported, with the artifacts it declared."""

    slot: SlotAssigned
    started_at: datetime
    ended_at: datetime
    artifacts: list[Artifact]

    @property
    def ticket_id(self) -> str:
        return str(self.slot.ticket_id)

    @property
    def room_id(self) -> str:
        return self.slot.meeting.room_id


def sessions_to_hold(seen: list[Seen], excluded: set[str], count: int = SESSIONS) -> list[SlotAssigned]:
    """`count` slots of tickets still live, one per office while offices last, each the only
    ticket in its slot (so one report is one session)."""
    slots = [s.event for s in seen if s.type == "glv.SlotAssigned.v1"]
    released = {s.event.slot_id for s in seen if s.type == "glv.SlotReleased.v1"}
    per_slot: dict[uuid.UUID, int] = {}
    for slot in slots:
        per_slot[slot.slot_id] = per_slot.get(slot.slot_id, 0) + 1
    candidates = [
        s for s in slots if str(s.ticket_id) not in excluded and s.slot_id not in released and per_slot[s.slot_id] == 1
    ]
    chosen: list[SlotAssigned] = []
    offices: set[str] = set()
    for pass_ in (0, 1):  # first one per office, then any
        for slot in candidates:
            if len(chosen) == count:
                return chosen
            if slot in chosen or (pass_ == 0 and slot.office_code in offices):
                continue
            chosen.append(slot)
            offices.add(slot.office_code)
    return chosen


async def hold_sessions(
    platform: MeetingPlatform,
    scheduler_url: str,
    secret: bytes,
    slots: list[SlotAssigned],
    filed: dict[str, TicketFiled],
) -> list[Held]:
    """Each meeting held half an hour up to now and reported by the platform's signed webhook."""
    held = []
    async with httpx.AsyncClient(timeout=10) as client:
        for slot in slots:
            ended = datetime.now(UTC).replace(microsecond=0)
            started = ended - timedelta(minutes=30)
            artifacts = platform.add_session(
                slot.meeting.room_id, video_bytes=VIDEO_BYTES, audio_bytes=AUDIO_BYTES, started_at=started
            )
            attendance = [
                Attendance(role="officer", participant_ref=slot.officer_id, joined_at=started),
                Attendance(
                    role="stakeholder",
                    participant_ref=filed[str(slot.ticket_id)].stakeholder.stakeholder_ref,
                    joined_at=started,
                ),
            ]
            status = await report_meeting(
                scheduler_url,
                secret,
                room_id=slot.meeting.room_id,
                started_at=started,
                ended_at=ended,
                attendance=attendance,
                artifacts=artifacts,
                client=client,
            )
            if status != 200:
                raise SystemExit(f"the scheduler's webhook answered {status} to the platform's report")
            held.append(Held(slot, started, ended, artifacts))
    return held


async def wait_outcomes(probe: EventProbe, topic: str, held: list[Held], timeout_s: float) -> dict[str, Seen]:
    """Each held session's outcome on the archive's topic, by ticket id (RecordingArchived, or
    ArchiveFailed: a retryable one is tried again only after GLV_ARCHIVE_LATE_RECHECK_S, far
    beyond the demo); what came by the deadline."""
    wanted = {h.ticket_id for h in held}

    def outcomes() -> dict[str, Seen]:
        found: dict[str, Seen] = {}
        for s in probe.seen:
            if s.topic == topic and s.event is not None and s.type in (ARCHIVED, *FAILED):
                ticket_id = str(s.event.ticket_id)
                # An ArchiveFailed (retrying) may be followed by the session's RecordingArchived.
                if ticket_id in wanted and (ticket_id not in found or s.type == ARCHIVED):
                    found[ticket_id] = s
        return found

    def settled(_: list[Seen]) -> bool:
        return len(outcomes()) == len(wanted)

    # A timeout is reported by the summary, which says what is missing.
    with contextlib.suppress(TimeoutError):
        await probe.wait_for(settled, timeout_s)
    return outcomes()


@dataclass(frozen=True)
class ArchiveRun:
    held: list[Held]
    outcomes: dict[str, Seen]
    seconds: float
    ticket_codes: dict[str, str]

    def told(self) -> list[tuple[str, str]]:
        """The notifier's messages these sessions lead to: (ticket id, purpose)."""
        return [(h.ticket_id, "held") for h in self.held] + [
            (t, "archived") for t, s in self.outcomes.items() if s.type == ARCHIVED
        ]


async def print_archive(settings: ArchiveSettings, result: ArchiveRun) -> bool:
    """What the archive did, one session's objects, one signed link downloaded and checked, and
    the storage searched for plaintext; whether all of it held up. The archive must be running."""
    held, outcomes = result.held, result.outcomes
    folder = Path(unquote(urlsplit(settings.store_url).path))
    archived = [s for s in outcomes.values() if s.type == ARCHIVED]
    failed = [s for s in outcomes.values() if s.type in FAILED]
    missing = len(held) - len(outcomes)
    plain_bytes = sum(item.size_bytes for s in archived for item in s.event.items)
    conn = await asyncpg.connect(settings.dsn())
    try:
        objects = await conn.fetch(
            "SELECT object_id, session_id, kind, object_key, storage_uri, size_bytes, stored_bytes, sha256"
            " FROM archive_object WHERE shredded_at IS NULL ORDER BY created_at"
        )
        sample = archived[0].event if archived else None
        session = (
            await conn.fetchrow("SELECT * FROM archive_session WHERE session_id = $1", sample.session_id)
            if sample is not None
            else None
        )
    finally:
        await conn.close()
    width = 44
    print()
    print(f"{'what the archive did':<{width}} {'count':>6}")
    print("-" * (width + 7))
    print(f"{'sessions held and reported by the platform':<{width}} {len(held):>6}")
    print(f"{'archived (RecordingArchived)':<{width}} {len(archived):>6}")
    print(f"{'failed (ArchiveFailed)':<{width}} {len(failed):>6}")
    print(f"{f'no outcome within {OUTCOME_TIMEOUT_S:.0f} s':<{width}} {missing:>6}")
    for s in failed:
        problems = ", ".join(f"{p.kind}: {p.reason}" for p in getattr(s.event, "problems", [])) or s.event.reason
        print(f"  failed: session {s.event.session_id} ({problems})")
    print(f"bytes archived (video, audio, chat): {plain_bytes:,} ({plain_bytes / MIB:.1f} MiB)")
    stored = sum(r["stored_bytes"] for r in objects)
    print(f"stored encrypted: {len(objects)} objects (session records included), {stored:,} bytes")
    print(f"reported -> every session's outcome from the archive: {result.seconds:.2f} s")
    print(f"storage: {folder} (kept until the demo ends, then removed with its databases)")
    ok = not failed and not missing and bool(held)
    if sample is None or session is None:
        print("no session was archived: no link to issue")
        return False

    mine = [r for r in objects if r["session_id"] == sample.session_id]
    slot = next(h.slot for h in held if h.ticket_id == str(sample.ticket_id))
    zone = ZoneInfo(slot.office_zone)
    video = next(r for r in mine if r["kind"] == "video")
    print(f"one object's storage_uri: {video['storage_uri']}")
    print()
    code = result.ticket_codes.get(str(sample.ticket_id), "-")
    print(
        f"session {sample.session_id}: {session['status']}, ticket {code}, office {session['office_code']},"
        f" officer {slot.officer_id}"
    )
    started, ended = session["started_at"].astimezone(zone), session["ended_at"].astimezone(zone)
    print(
        f"  held {started:%a %d %b %H:%M}-{ended:%H:%M %Z} (office time);"
        f" kept until {session['retain_until']:%Y-%m-%d}; attendance: "
        + ", ".join(f"{a['role']} {a['participant_ref']}" for a in json.loads(session["attendance"]))
    )
    print(f"  {'kind':<8}{'bytes':>10}  {'sha256':<18}object id")
    for r in mine:
        print(f"  {r['kind']:<8}{r['size_bytes']:>10}  {r['sha256'][:16]}  {r['object_id']}")

    # The CLI's own logic (`glv-archive link OBJECT --to officer-demo --ttl 3600`): audited.
    url = await issue_link(parts(settings), video["object_id"], RECIPIENT, LINK_TTL_S, ISSUER)
    print()
    print(f"glv-archive link {video['object_id']} --to {RECIPIENT} --ttl {LINK_TTL_S}")
    print(f"  {url}")
    ok = await check_download(url, video, slot, held) and ok

    conn = await asyncpg.connect(settings.dsn())
    try:
        audit = await conn.fetch(
            "SELECT action, outcome, actor FROM archive_audit WHERE object_id = $1 ORDER BY audit_id",
            video["object_id"],
        )
    finally:
        await conn.close()
    print("audit of the object: " + "; ".join(f"{a['action']} {a['outcome']} ({a['actor']})" for a in audit))

    markers = [plaintext_marker(h.room_id, kind) for h in held for kind in KINDS]
    scanned, found = await asyncio.to_thread(files_holding, folder, markers)
    print(
        f"plaintext found in storage: {len(found)} files (of {scanned}, searched for the"
        f" {len(markers)} plaintext markers of the {len(held)} sessions' video, audio and chat)"
    )
    for path in found:
        print(f"  plaintext in {path}")
    return ok and not found and scanned > 0


async def check_download(url: str, video: Any, slot: SlotAssigned, held: list[Held]) -> bool:
    """GET the link as its recipient would; the body must be the platform's recording."""
    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.get(url)
    body = answer.content
    digest = hashlib.sha256(body).hexdigest()
    declared = next(a for h in held if h.slot is slot for a in h.artifacts if a.kind == "video")
    ok = (
        answer.status_code == 200
        and len(body) == video["size_bytes"] == declared.size_bytes
        and digest == video["sha256"] == declared.sha256
        and plaintext_marker(slot.meeting.room_id, "video") in body
    )
    matches = "matches" if digest == video["sha256"] else f"differs ({digest} != {video['sha256']})"
    print(f"download checked: {answer.status_code}, {len(body)} bytes, sha256 {matches}", end="")
    print(" (the platform's recording: its declared size and sha256, its plaintext marker)" if ok else " -- FAILED")
    return ok


def files_holding(root: Path, needles: list[bytes]) -> tuple[int, list[Path]]:
    """(files scanned, files holding any of the needles), each read in 1 MiB steps with an
    overlap so that a needle across two reads is found."""
    pattern = re.compile(b"|".join(re.escape(n) for n in needles))
    overlap = max(map(len, needles)) - 1
    scanned, found = 0, []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        scanned += 1
        with path.open("rb") as f:
            tail = b""
            while chunk := f.read(MIB):
                if pattern.search(tail + chunk):
                    found.append(path)
                    break
                tail = chunk[-overlap:]
    return scanned, found
