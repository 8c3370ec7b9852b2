"""The archive as a real OS process: a recording of a few hundred MB streams through with
bounded memory (peak RSS read from /proc), and a SIGKILL mid-download loses nothing,
archives each session exactly once and leaves nothing half-written behind."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from glv_devtools.meetingsim import Fault, MeetingPlatform
from tests.infra import Infra
from tests.integration.archive_world import (
    archive_database,
    archive_settings,
    file_and_place,
    files_under,
    hold,
    outcomes,
    settings_env,
    wait_outcomes,
)
from tests.integration.conftest import Glv
from tests.integration.notifier_world import until
from tests.integration.processes import ServiceProcess

MIB = 1 << 20


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def test_a_recording_of_hundreds_of_megabytes_streams_through_with_bounded_memory(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    size = 400 * MIB
    async with archive_database(infra) as url, MeetingPlatform() as platform:
        settings = archive_settings(infra, url, glv.ticketing.prefix, tmp_path / "store", log_level="INFO")
        process = ServiceProcess("glv_archive", settings_env(settings), f"archive-large-{glv.ticketing.prefix}")
        await process.start()
        try:
            assert process.process is not None
            pid = process.process.pid
            before = memory_kib(pid)
            [(filed, slot)] = await file_and_place(glv, 1, seed=31)
            declared = {a.kind: a for a in await hold(glv, platform, slot, video_bytes=size)}
            outcome = (await wait_outcomes(glv, {filed.ticket_id}, timeout_s=600))[filed.ticket_id]
            after = memory_kib(pid)
        finally:
            process.kill()
        assert outcome.type == "glv.RecordingArchived.v1", outcome.event
        [video] = [i for i in outcome.event.items if i.kind == "video"]
        assert (video.size_bytes, video.sha256) == (size, declared["video"].sha256)
        grown_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
        print(
            f"\narchive process: RSS {before['VmRSS'] / 1024:.0f} MiB before, peak {after['VmHWM'] / 1024:.0f} MiB"
            f" while a {size // MIB} MiB recording streamed through (+{grown_mib:.0f} MiB)"
        )
        # Streaming holds a few buffers (download chunk, Tink segment, upload part), not the file.
        assert grown_mib < 128, grown_mib
        stored = sum(files_under(tmp_path / "store").values())
        assert stored > size  # ciphertext: the recording plus Tink's per-segment tags


async def test_an_archive_killed_mid_download_archives_each_session_once_and_leaves_nothing_behind(
    glv: Glv, infra: Infra, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    async with archive_database(infra) as url, MeetingPlatform() as platform:
        settings = archive_settings(infra, url, glv.ticketing.prefix, root, fetch_lease_s=2.0, log_level="INFO")
        process = ServiceProcess("glv_archive", settings_env(settings), f"archive-kill-{glv.ticketing.prefix}")
        await process.start()
        kills = 0
        try:
            placed = await file_and_place(glv, 2, seed=37)
            rooms = []
            for _, slot in placed:
                # Slow enough to be cut off in the middle: 40 MiB at 8 MiB/s.
                await hold(glv, platform, slot, video_bytes=40 * MIB, faults={"video": Fault.slow(8 * MIB)})
                rooms.append(slot.meeting.room_id)
            for threshold in (6 * MIB, 20 * MIB):
                await until(
                    lambda t=threshold: any(platform.bytes_served("video", r) > t for r in rooms), 60, "no download"
                )
                process.kill()
                kills += 1
                await process.start()
            ids = {f.ticket_id for f, _ in placed}
            seen = await wait_outcomes(glv, ids, timeout_s=240)
        finally:
            process.kill()
        assert {s.type for s in seen.values()} == {"glv.RecordingArchived.v1"}
        # Each session told once, though transfers were cut and done again.
        assert len(outcomes(glv, ids, "RecordingArchived", "ArchiveFailed")) == len(ids)
        assert sum(platform.gets("video", r) for r in rooms) > len(rooms)  # the kills cut transfers short

        # In storage: exactly the objects the database knows, no staging files of the killed writes.
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            rows = await conn.fetch("SELECT object_key, stored_bytes, kind, session_id FROM archive_object")
            per_artifact = await conn.fetchval(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM archive_object WHERE kind <> 'record'"
                " GROUP BY session_id, kind) c"
            )
        finally:
            await conn.close()
        assert per_artifact == 1
        assert files_under(root) == {r["object_key"]: r["stored_bytes"] for r in rows}
        for seen_event in seen.values():
            [video] = [i for i in seen_event.event.items if i.kind == "video"]
            assert video.size_bytes == 40 * MIB
        assert kills == 2
