"""The archive on the real Kafka and PostgreSQL, the meeting-platform simulator serving real
HTTP on 127.0.0.1: sessions held through the scheduler's signed webhook are fetched,
encrypted, stored, recorded, told, served through signed links, audited and erased."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from glv_archive import links
from glv_archive.__main__ import erase, rewrap
from glv_archive.access import download_url
from glv_archive.app import build_spec, parts
from glv_archive.keys import DecryptionFailed, KeyUnavailable, WrappedKey, new_kek
from glv_archive.retention import purge_due
from glv_devtools.meetingsim import Fault, MeetingPlatform, plaintext_marker
from glv_devtools.portal import PortalClient, record_for
from glv_runtime.service import RunningService
from glv_schemas.events import ErasureRequested
from glv_schemas.topics import PORTAL_UPDATES
from tests.infra import Infra
from tests.integration.archive_world import (
    LINK_SECRET,
    Archive,
    file_and_place,
    files_under,
    hold,
    holds,
    kek_setting,
    outcomes,
    running_archive,
    wait_outcomes,
)
from tests.integration.conftest import Glv
from tests.integration.notifier_world import until_async


def link(archive: Archive, object_id: uuid.UUID, *, expires_in_s: int = 300, to: str = "officer-7") -> str:
    signed = links.sign(LINK_SECRET.encode(), object_id, datetime.now(UTC) + timedelta(seconds=expires_in_s), to)
    return download_url(archive.base_url, signed)


async def objects_of(archive: Archive, session_id: uuid.UUID) -> dict[str, asyncpg.Record]:
    rows = await archive.fetch("SELECT * FROM archive_object WHERE session_id = $1 AND shredded_at IS NULL", session_id)
    return {r["kind"]: r for r in rows}


async def test_a_held_session_is_archived_encrypted_recorded_and_served_through_signed_links(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    async with MeetingPlatform() as platform, running_archive(glv, infra, tmp_path) as archive:
        [(filed, slot)] = await file_and_place(glv, 1)
        declared = {a.kind: a for a in await hold(glv, platform, slot)}
        outcome = (await wait_outcomes(glv, {filed.ticket_id}))[filed.ticket_id]
        assert outcome.type == "glv.RecordingArchived.v1", outcome.event
        archived = outcome.event
        assert {i.kind: (i.size_bytes, i.sha256) for i in archived.items} == {
            k: (a.size_bytes, a.sha256) for k, a in declared.items()
        }
        assert archived.retention_until > datetime.now(UTC) + timedelta(days=365)

        # Only ciphertext under the storage root: no fixture marker in any file.
        room = slot.meeting.room_id
        for kind in ("video", "audio", "chat"):
            assert holds(archive.root, plaintext_marker(room, kind)) == [], kind
        assert not [name for name in files_under(archive.root) if "#" in name]

        objects = await objects_of(archive, archived.session_id)
        assert set(objects) == {"video", "audio", "chat", "record"}
        async with httpx.AsyncClient(timeout=30) as client:
            video = objects["video"]["object_id"]
            got = await client.get(link(archive, video))
            assert got.status_code == 200
            assert hashlib.sha256(got.content).hexdigest() == declared["video"].sha256
            assert got.headers["content-disposition"].startswith("attachment")

            # The readable record: who, when, office, service, officer; the chat escaped.
            record = await client.get(link(archive, objects["record"]["object_id"]))
            assert record.status_code == 200 and record.headers["content-type"].startswith("text/html")
            html = record.text
            assert slot.officer_id in html and "Lelang" in html and "KPKNL" in html
            assert "<script>" not in html and "&lt;script&gt;" in html

            # Refused: expired, tampered object, tampered expiry, no signature.
            expired = await client.get(link(archive, video, expires_in_s=-5))
            other = objects["audio"]["object_id"]
            tampered_object = await client.get(link(archive, video).replace(str(video), str(other)))
            valid = link(archive, video)
            exp = valid.split("exp=")[1].split("&")[0]
            tampered_expiry = await client.get(valid.replace(f"exp={exp}", f"exp={int(exp) + 3600}"))
            unsigned = await client.get(f"{archive.base_url}/v1/archive/objects/{video}")
            assert [r.status_code for r in (expired, tampered_object, tampered_expiry, unsigned)] == [403] * 4
            assert [r.json()["error"] for r in (expired, tampered_object, tampered_expiry, unsigned)] == [
                "expired",
                "bad_signature",
                "bad_signature",
                "malformed",
            ]

        audit = await archive.fetch("SELECT action, outcome, reason, object_id FROM archive_audit ORDER BY audit_id")
        downloads = [(r["outcome"], r["reason"], r["object_id"]) for r in audit if r["action"] == "download"]
        assert downloads == [
            ("allowed", None, video),
            ("allowed", None, objects["record"]["object_id"]),
            ("refused", "expired", video),
            ("refused", "bad_signature", other),
            ("refused", "bad_signature", video),
            ("refused", "malformed", video),
        ]

        # The audit is append-only, for the service's own database role too.
        conn = await archive.connect()
        try:
            with pytest.raises(asyncpg.PostgresError, match=r"append-only|permission denied"):
                await conn.execute("UPDATE archive_audit SET outcome = 'allowed'")
            with pytest.raises(asyncpg.PostgresError, match=r"append-only|permission denied"):
                await conn.execute("DELETE FROM archive_audit")
            with pytest.raises(asyncpg.PostgresError, match=r"append-only|permission denied"):
                await conn.execute("TRUNCATE archive_audit")
        finally:
            await conn.close()

        # A flipped byte in the stored video: the download stops short of its length.
        stored = archive.root / objects["video"]["object_key"]
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 1
        stored.write_bytes(bytes(data))
        async with httpx.AsyncClient(timeout=30) as client:
            with pytest.raises(httpx.HTTPError):
                broken = await client.get(link(archive, video))
                assert len(broken.content) < declared["video"].size_bytes

        # The portal sees the outcome on its own updates topic (forwarded by ticketing).
        updates = glv.ticketing.prefix + PORTAL_UPDATES.for_portal("sim-portal")
        assert updates  # forwarding is ticketing's, covered in test_lifecycle


async def test_bad_artifacts_end_in_archive_failed_with_a_reason_and_nothing_half_written(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    faults = {
        "oversized": {"video": Fault.oversized()},
        "wrong_content_type": {"audio": Fault.wrong_type()},
        "truncated": {"video": Fault.truncated()},
        "checksum_mismatch": {"audio": Fault.bad_checksum()},
        "forbidden_host": {"chat": Fault.redirect_to("http://169.254.169.254/latest/meta-data/")},
    }
    hosts = ["127.0.0.1", "localhost"]
    async with (
        MeetingPlatform() as platform,
        # localhost is an allowed host, but not one allowed to resolve to a private address.
        running_archive(
            glv, infra, tmp_path, fetch_max_bytes=8 << 20, fetch_allowed_hosts=hosts, fetch_http_hosts=hosts
        ) as archive,
    ):
        faults["forbidden_address"] = {"video": Fault.redirect_to(f"http://localhost:{platform.port}/recordings/x/v")}
        placed = await file_and_place(glv, len(faults), seed=9)
        expected: dict[uuid.UUID, tuple[str, str]] = {}
        for (filed, slot), (reason, fault) in zip(placed, faults.items(), strict=True):
            await hold(glv, platform, slot, faults=fault)
            expected[filed.ticket_id] = (next(iter(fault)), reason)
        seen = await wait_outcomes(glv, set(expected), timeout_s=180)
        for ticket_id, (kind, reason) in expected.items():
            failed = seen[ticket_id]
            assert failed.type == "glv.ArchiveFailed.v2", (reason, failed.event)
            assert [(p.kind, p.reason) for p in failed.event.problems] == [(kind, reason)], failed.event
            # Transfers that may succeed later are retried; a policy refusal is not.
            assert failed.event.retryable == (reason in ("truncated", "checksum_mismatch"))
            assert "?" not in failed.event.problems[0].detail and "/recordings/" not in failed.event.problems[0].detail

        # Stored: exactly the objects the database knows (the artifacts that were fine and the
        # records); nothing half-written, no staging file.
        rows = await archive.fetch("SELECT object_key, stored_bytes FROM archive_object WHERE deleted_at IS NULL")
        await until_async(
            lambda: _settled(archive, {r["object_key"]: r["stored_bytes"] for r in rows}), 30, "storage settles"
        )


async def _settled(archive: Archive, expected: dict[str, int]) -> bool:
    return files_under(archive.root) == expected


async def test_a_late_artifact_completes_the_session_later(glv: Glv, infra: Infra, tmp_path: Path) -> None:
    async with (
        MeetingPlatform() as platform,
        running_archive(glv, infra, tmp_path, late_recheck_s=1.0) as archive,
    ):
        [(filed, slot)] = await file_and_place(glv, 1, seed=13)
        # Two attempts per transfer: the chat answers 404 to both, then to the first re-check.
        await hold(glv, platform, slot, faults={"chat": Fault.late(3)})
        first = (await wait_outcomes(glv, {filed.ticket_id}))[filed.ticket_id]
        assert first.type == "glv.ArchiveFailed.v2" and first.event.retryable
        assert [(p.kind, p.reason) for p in first.event.problems] == [("chat", "not_found")]
        await glv.probe.wait_for(lambda _: bool(outcomes(glv, {filed.ticket_id}, "RecordingArchived")), 60)
        [archived] = outcomes(glv, {filed.ticket_id}, "RecordingArchived")
        assert {i.kind for i in archived.event.items} == {"video", "audio", "chat"}
        # The record was written again with the chat; only the newest is kept.
        records = await archive.fetch(
            "SELECT count(*) FILTER (WHERE shredded_at IS NULL) AS live, count(*) AS all_ FROM archive_object"
            " WHERE kind = 'record'"
        )
        assert records[0]["live"] == 1 and records[0]["all_"] == 2
        assert len(outcomes(glv, {filed.ticket_id}, "ArchiveFailed")) == 1


async def test_erasure_by_portal_request_and_by_command_and_the_retention_purge(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:

    async with MeetingPlatform() as platform, running_archive(glv, infra, tmp_path) as archive:
        placed = await file_and_place(glv, 3, seed=21)
        for _, slot in placed:
            await hold(glv, platform, slot, video_bytes=1 << 20, audio_bytes=1 << 20)
        ids = {f.ticket_id for f, _ in placed}
        seen = await wait_outcomes(glv, ids)
        assert {s.type for s in seen.values()} == {"glv.RecordingArchived.v1"}
        (by_event, _), (by_command, _), (by_purge, _) = placed

        # A copy of one blob taken before the erasure (a backup, say).
        victim = (await objects_of(archive, seen[by_event.ticket_id].event.session_id))["video"]
        copy = (archive.root / victim["object_key"]).read_bytes()

        # 1. The portal asks, on its own topic; ticketing approves; the archive erases.
        request = ErasureRequested(
            request_id=uuid.uuid4(),
            portal_id="sim-portal",
            stakeholder_ref=by_event.stakeholder.stakeholder_ref,
            requested_at=datetime.now(UTC),
        )
        async with PortalClient(infra.bootstrap, glv.ticketing.prefix) as portal:
            await portal.send([record_for(request, source="/portal/sim")])
        await glv.probe.wait_for(lambda _: bool(outcomes(glv, {by_event.ticket_id}, "ArchiveErased")), 60)
        [erased] = outcomes(glv, {by_event.ticket_id}, "ArchiveErased")
        assert (erased.event.cause, erased.event.request_id, erased.event.objects) == (
            "erasure_request",
            request.request_id,
            4,
        )

        # The copy is unreadable: its data key is gone, and no other object's key opens it.
        keyring = parts(archive.settings).keyring
        [gone_row] = await archive.fetch(
            "SELECT wrapped_key FROM archive_object WHERE object_id = $1", victim["object_id"]
        )
        assert gone_row["wrapped_key"] is None
        with pytest.raises(KeyUnavailable):
            keyring.unwrap(victim["object_id"], None)
        other = (await objects_of(archive, seen[by_command.ticket_id].event.session_id))["video"]
        other_key = keyring.unwrap(other["object_id"], WrappedKey(other["key_id"], bytes(other["wrapped_key"])))
        with pytest.raises(DecryptionFailed):
            other_key.open_plaintext(io.BytesIO(copy), victim["object_id"].bytes).read()

        # 2. An operator's command for another stakeholder: a report of what went.
        p = parts(archive.settings)
        report = await erase(p, "sim-portal", by_command.stakeholder.stakeholder_ref, uuid.uuid4())
        assert (report.tickets, len(report.sessions), report.objects) == (1, 1, 4)
        assert report.by_kind == {"video": 1, "audio": 1, "chat": 1, "record": 1}

        # 3. The purge at the end of retention (run now, with the clock past retain-until).
        assert archive.service is not None
        shredded = await purge_due(archive.service.db, datetime.now(UTC) + timedelta(days=366 * 6))
        assert shredded == 4
        await glv.probe.wait_for(lambda _: bool(outcomes(glv, {by_purge.ticket_id}, "ArchiveErased")), 60)

        # Keys destroyed at once, blobs deleted by their jobs; every object refused with 410.
        rows = await archive.fetch("SELECT object_id, wrapped_key, shredded_at, object_key FROM archive_object")
        assert rows and all(r["wrapped_key"] is None and r["shredded_at"] is not None for r in rows)
        await until_async(lambda: _settled(archive, {}), 60, "blobs deleted")
        async with httpx.AsyncClient(timeout=10) as client:
            gone = await client.get(link(archive, rows[0]["object_id"]))
        assert gone.status_code == 410
        audit = await archive.fetch("SELECT action, count(*) AS n FROM archive_audit GROUP BY action")
        counts = {r["action"]: r["n"] for r in audit}
        assert counts["erasure_request"] == 2 + 8  # two requests, eight objects
        assert counts["retention"] == 4
        assert counts["blob_deleted"] == 12


async def test_the_archive_stores_in_an_s3_compatible_server(glv: Glv, infra: Infra, tmp_path: Path) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="glv-test",
            aws_secret_access_key="glv-test-secret",
        )
        s3.create_bucket(Bucket="glv-archive")
        s3_settings = {
            "store_url": "s3://glv-archive/recordings",
            "s3_endpoint": endpoint,
            "s3_access_key_id": "glv-test",
            "s3_secret_access_key": "glv-test-secret",
            "s3_allow_http": True,
        }
        async with MeetingPlatform() as platform, running_archive(glv, infra, tmp_path, **s3_settings) as archive:
            [(filed, slot)] = await file_and_place(glv, 1, seed=41)
            # 24 MiB: the upload goes in several parts (8 MiB each).
            declared = {a.kind: a for a in await hold(glv, platform, slot, video_bytes=24 << 20)}
            outcome = (await wait_outcomes(glv, {filed.ticket_id}))[filed.ticket_id]
            assert outcome.type == "glv.RecordingArchived.v1", outcome.event
            objects = await objects_of(archive, outcome.event.session_id)
            assert objects["video"]["storage_uri"].startswith("s3://glv-archive/recordings/")

            listed = s3.list_objects_v2(Bucket="glv-archive", Prefix="recordings/")["Contents"]
            assert {o["Key"].removeprefix("recordings/") for o in listed} == {r["object_key"] for r in objects.values()}
            marker = plaintext_marker(slot.meeting.room_id, "video")
            for listed_object in listed:
                body = s3.get_object(Bucket="glv-archive", Key=listed_object["Key"])["Body"].read()
                assert marker not in body
            assert not s3.list_multipart_uploads(Bucket="glv-archive").get("Uploads")
            async with httpx.AsyncClient(timeout=30) as client:
                got = await client.get(link(archive, objects["video"]["object_id"]))
            assert hashlib.sha256(got.content).hexdigest() == declared["video"].sha256
    finally:
        server.stop()


async def test_key_rotation_keeps_old_objects_readable_and_rewrap_moves_them(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:

    old_id, old_key = new_kek()
    new_id, new_key = new_kek()
    async with (
        MeetingPlatform() as platform,
        running_archive(glv, infra, tmp_path, keys=kek_setting((old_id, old_key)), active_key_id=old_id) as first,
    ):
        placed = await file_and_place(glv, 2, seed=43)
        await hold(glv, platform, placed[0][1], video_bytes=1 << 20)
        before = (await wait_outcomes(glv, {placed[0][0].ticket_id}))[placed[0][0].ticket_id]
        old_objects = await objects_of(first, before.event.session_id)
        assert {r["key_id"] for r in old_objects.values()} == {old_id}
        assert first.service is not None
        await first.service.stop()
        first.service = None

        # A new key is introduced and made active: old objects stay readable, new ones use it.
        both = first.settings.model_copy(
            update={"keys": SecretStr(kek_setting((old_id, old_key), (new_id, new_key))), "active_key_id": new_id}
        )
        second = RunningService(build_spec(both))
        await second.start()
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                assert (await client.get(link(first, old_objects["video"]["object_id"]))).status_code == 200
            await hold(glv, platform, placed[1][1], video_bytes=1 << 20)
            after = (await wait_outcomes(glv, {placed[1][0].ticket_id}))[placed[1][0].ticket_id]
            assert {r["key_id"] for r in (await objects_of(first, after.event.session_id)).values()} == {new_id}
            moved = await rewrap(parts(both))
            assert moved["rewrapped"] == len(old_objects) and f"objects_under_{old_id}" not in moved
        finally:
            await second.stop()

        # The old key can go: everything is readable with the new one alone.
        only_new = both.model_copy(update={"keys": SecretStr(kek_setting((new_id, new_key)))})
        third = RunningService(build_spec(only_new))
        await third.start()
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                for row in old_objects.values():
                    got = await client.get(link(first, row["object_id"]))
                    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == row["sha256"]
        finally:
            await third.stop()
