"""Officers' agenda and calendar feed: tokens issued and revoked through the CLI, the
routes of a real scheduler process, its real PostgreSQL, and its log."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from icalendar import Calendar

from glv_devtools.portal import accepted_for, ticket
from glv_runtime.unit_of_work import Database
from glv_scheduler import officer_tokens
from glv_scheduler.__main__ import issue_officer_token, main, revoke_officer_tokens
from glv_scheduler.agenda import event_uid
from glv_scheduler.settings import SchedulerSettings
from tests.integration.conftest import tiny_catalog
from tests.integration.processes import LOGS, ServiceProcess
from tests.integration.scheduler_use_case import apply, scheduler_database, use_case_at


@dataclass
class Officers:
    settings: SchedulerSettings
    db: Database
    client: httpx.AsyncClient
    log_file: Path
    now: datetime
    process: ServiceProcess

    async def slots(self, officer_id: str) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch(
            "SELECT s.slot_id, s.starts_at, s.ends_at, s.meeting ->> 'room_id' AS room_id FROM booking b"
            " JOIN slot s USING (slot_id) WHERE b.live AND s.live AND b.officer_id = $1 ORDER BY s.starts_at",
            officer_id,
        )
        return [dict(r) for r in rows]

    async def agenda(self, token: str | None, **params: str) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return await self.client.get("/v1/officers/me/agenda", headers=headers, params=params)

    async def feed(self, token_or_url: str) -> httpx.Response:
        """GET a feed by its token, or by the URL `officer-token issue` printed."""
        base = self.settings.public_base_url
        path = (
            token_or_url.removeprefix(base)
            if token_or_url.startswith(base)
            else f"/v1/officers/feed/{token_or_url}.ics"
        )
        return await self.client.get(path)


def _accepted(n: int, rng: random.Random, now: datetime) -> Any:
    filed = ticket(rng, portal_id="sim-portal", office_code="TNY", service_code="lelang", now=now)
    return accepted_for(filed.model_copy(update={"preferred_windows": []}), f"TNY-261201-{n:04d}")


@pytest.fixture
async def officers(
    scheduler_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Officers]:
    for name, value in scheduler_env.items():
        monkeypatch.setenv(name, value)
    settings = SchedulerSettings()
    now = datetime.now(UTC)
    catalog = tiny_catalog(tmp_path / "tiny.yaml", officers=2, horizon_days=5, hours="08:00-16:00")
    rng = random.Random(31)
    async with scheduler_database(settings.dsn(), catalog) as db:
        # Sessions two days ago (over by now), then sessions from now on; two officers share them.
        await apply(db, use_case_at(lambda: now - timedelta(days=2)), *[_accepted(n, rng, now) for n in range(1, 5)])
        await apply(db, use_case_at(lambda: now), *[_accepted(n, rng, now) for n in range(5, 11)])
        name = f"scheduler-officers-{uuid.uuid4().hex[:8]}"
        process = ServiceProcess("glv_scheduler", {**scheduler_env, "GLV_SCHEDULER_LOG_LEVEL": "DEBUG"}, name)
        await process.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client:
                yield Officers(settings, db, client, LOGS / f"{name}.log", now, process)
        finally:
            process.kill()


async def test_an_officer_sees_their_own_sessions_only(officers: Officers) -> None:
    mine, theirs = await officers.slots("TNY-01"), await officers.slots("TNY-02")
    assert mine and theirs, "both officers should hold sessions"
    token, _ = await issue_officer_token(officers.settings, "TNY-01", "agenda")
    assert token.startswith("glvoa_")

    upcoming = await officers.agenda(token)
    assert upcoming.status_code == 200
    assert upcoming.headers["cache-control"] == "private, no-store"
    body = upcoming.json()
    assert body["officer_id"] == "TNY-01"
    sessions = body["sessions"]
    assert [s["slot_id"] for s in sessions] == [str(s["slot_id"]) for s in mine if s["ends_at"] > officers.now]
    assert not {s["slot_id"] for s in sessions} & {str(s["slot_id"]) for s in theirs}
    first, slot = sessions[0], next(s for s in mine if str(s["slot_id"]) == sessions[0]["slot_id"])
    assert datetime.fromisoformat(first["starts_at"]) == slot["starts_at"]
    assert first["starts_at"].endswith("Z")
    assert first["local"]["zone"] == "Asia/Makassar"
    assert first["local"]["starts_at"].endswith("+08:00")
    assert datetime.fromisoformat(first["local"]["starts_at"]) == slot["starts_at"]
    assert first["office"]["code"] == "TNY" and first["service"]["code"] == "lelang"
    assert len(first["ticket_codes"]) == 1 and first["ticket_codes"][0].startswith("TNY-261201-")
    assert first["moderator_link"].startswith(f"https://meet.glv.example.go.id/{slot['room_id']}?jwt=")

    recent = (await officers.agenda(token, recent_days="3")).json()["sessions"]
    assert [s["slot_id"] for s in recent] == [str(s["slot_id"]) for s in mine]
    assert len(recent) > len(sessions), "the sessions of two days ago are recent"
    assert (await officers.agenda(token, recent_days="8")).status_code == 400
    assert (await officers.agenda(token, recent_days="-1")).status_code == 400


async def test_the_agenda_refuses_anything_but_a_live_agenda_token(officers: Officers) -> None:
    agenda, _ = await issue_officer_token(officers.settings, "TNY-01", "agenda")
    feed_url, _ = await issue_officer_token(officers.settings, "TNY-01", "feed")
    feed = feed_url.rsplit("/", 1)[1].removesuffix(".ics")
    refused = [
        await officers.client.get("/v1/officers/me/agenda"),
        await officers.client.get("/v1/officers/me/agenda", headers={"Authorization": "Bearer"}),
        await officers.client.get("/v1/officers/me/agenda", headers={"Authorization": f"Basic {agenda}"}),
        await officers.agenda("glvoa_" + "A" * 43),
        await officers.agenda(feed),  # a feed token is not an agenda token
        await officers.agenda(agenda + "x"),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused)
    assert all(r.headers["www-authenticate"].startswith("Bearer") for r in refused)
    assert (await officers.agenda(agenda)).status_code == 200

    # Issuing again replaces the token; revoking ends it.
    replacement, _ = await issue_officer_token(officers.settings, "TNY-01", "agenda")
    assert (await officers.agenda(agenda)).status_code == 401
    assert (await officers.agenda(replacement)).status_code == 200
    assert "1 agenda token(s)" in await revoke_officer_tokens(officers.settings, "TNY-01", "agenda")
    assert (await officers.agenda(replacement)).status_code == 401
    assert (await officers.feed(feed)).status_code == 200  # the feed token was not touched

    # An officer the catalog no longer lists is refused too.
    other, _ = await issue_officer_token(officers.settings, "TNY-02", "agenda")
    assert (await officers.agenda(other)).status_code == 200
    await officers.db.pool.execute("UPDATE officer SET active = false WHERE officer_id = 'TNY-02'")
    assert (await officers.agenda(other)).status_code == 401
    with pytest.raises(officer_tokens.UnknownOfficer):
        await issue_officer_token(officers.settings, "TNY-02", "agenda")
    with pytest.raises(officer_tokens.UnknownOfficer):
        await issue_officer_token(officers.settings, "NOPE-01", "feed")


async def test_the_feed_parses_back_with_the_officers_sessions_at_the_right_times(officers: Officers) -> None:
    mine = await officers.slots("TNY-01")
    url, _ = await issue_officer_token(officers.settings, "TNY-01", "feed")
    assert url.startswith(f"{officers.settings.public_base_url}/v1/officers/feed/glvof_") and url.endswith(".ics")

    answer = await officers.feed(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/calendar; charset=utf-8"
    assert answer.headers["cache-control"] == "private, no-store"
    events = Calendar.from_ical(answer.content).walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [event_uid(s["slot_id"]) for s in mine]
    for event, slot in zip(events, mine, strict=True):
        assert event.decoded("DTSTART") == slot["starts_at"]
        assert event.decoded("DTEND") == slot["ends_at"]
        assert event.decoded("DTSTART").utcoffset() == timedelta(0)
        assert str(event["SUMMARY"]).startswith("Lelang — TNY-261201-")
        assert str(event["URL"]).startswith(f"https://meet.glv.example.go.id/{slot['room_id']}?jwt=")
        assert str(event["LOCATION"]) == str(event["URL"])
        assert int(event["SEQUENCE"]) == 0
    # A second fetch names the same events.
    again = Calendar.from_ical((await officers.feed(url)).content)
    assert [e["UID"] for e in again.walk("VEVENT")] == [e["UID"] for e in events]


async def test_an_unknown_or_revoked_feed_token_gets_the_same_404(officers: Officers) -> None:
    agenda, _ = await issue_officer_token(officers.settings, "TNY-01", "agenda")
    old_url, _ = await issue_officer_token(officers.settings, "TNY-01", "feed")
    new_url, _ = await issue_officer_token(officers.settings, "TNY-01", "feed")  # replaces the old one
    unknown = await officers.feed("glvof_" + "B" * 43)
    revoked = await officers.feed(old_url)
    assert (await officers.feed(new_url)).status_code == 200
    await revoke_officer_tokens(officers.settings, "TNY-01", None)
    revoked_too = await officers.feed(new_url)
    wrong_purpose = await officers.feed(agenda)
    no_such_route = await officers.client.get("/v1/officers/feed/x/y.ics")
    answers = [unknown, revoked, revoked_too, wrong_purpose, no_such_route]
    assert [r.status_code for r in answers] == [404] * 5
    assert len({(r.text, r.headers["content-type"]) for r in answers}) == 1


async def test_tokens_never_reach_the_log_nor_the_list(officers: Officers, capsys: pytest.CaptureFixture[str]) -> None:
    agenda, _ = await issue_officer_token(officers.settings, "TNY-01", "agenda")
    url, _ = await issue_officer_token(officers.settings, "TNY-01", "feed")
    feed = url.rsplit("/", 1)[1].removesuffix(".ics")
    await officers.agenda(agenda)
    await officers.agenda(feed)
    await officers.feed(feed)
    await officers.feed(agenda)
    await officers.client.get(f"/v1/officers/feed/{feed}.ics?x=1", headers={"Authorization": f"Bearer {agenda}"})
    # Stopped, the process has written every log line of those requests.
    assert await officers.process.terminate() == 0

    # The CLI prints a new token once, on stdout alone, and lists none.
    assert await asyncio.to_thread(main, ["officer-token", "issue", "TNY-02", "--purpose", "agenda"]) == 0
    issued = capsys.readouterr()
    printed = issued.out.strip()
    assert printed.startswith("glvoa_") and "\n" not in printed
    assert "shown this once" in issued.err
    assert await asyncio.to_thread(main, ["officer-token", "list", "--all"]) == 0
    listing = capsys.readouterr().out
    assert "TNY-01" in listing and "TNY-02" in listing and "feed" in listing

    log = officers.log_file.read_text(encoding="utf-8")
    assert log, "the scheduler wrote no log at all"
    for token in (agenda, feed, printed):
        assert token not in log
        assert token not in listing
        assert token[6:20] not in log  # not even a part of it
    assert "/v1/officers/feed/" not in log
    assert await asyncio.to_thread(main, ["officer-token", "revoke", "TNY-02"]) == 0
    assert "1 agenda and feed token(s) of officer TNY-02 revoked" in capsys.readouterr().out
